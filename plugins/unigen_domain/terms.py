"""`target_accuracy`: the label edge's accuracy on the target domain of a shifted dataset.

The plugin's `supervised` term, -E_q[log q(y | h)] on a classifier over learnt features, is the
semi-supervised VAE's `label_nll` with latent parents allowed: `unigen_ssvae.terms.LabelNLL`
with `features=True` (registered in __init__.py)."""

from __future__ import annotations

import torch

from unigen.api.contexts import EdgeInfo, GraphView, ModelView
from unigen.api.kinds import Metric


def label_edge(graph: GraphView, mapping: dict[str, str]) -> EdgeInfo | None:
    """The inference edge into an observed variable whose data field has a target-domain twin."""
    for e in graph.of_kind("inference"):
        assert e.child is not None
        if graph.variables[e.child].observed and graph.data_field(e.child) in mapping:
            return e
    return None


def _accuracy(model: ModelView, e: EdgeInfo, batch: dict[str, torch.Tensor]) -> float:
    assert e.child is not None
    n = len(next(iter(batch.values())))
    right = 0
    for start in range(0, n, 1000):
        part = {k: v[start : start + 1000] for k, v in batch.items()}
        ctx = model.context(part, len(next(iter(part.values()))))
        scores = ctx.q.cond(e).mean
        right += int((scores.argmax(1) == part[e.child].argmax(1)).sum())
    return right / n


class TargetAccuracy(Metric):
    doc = "domain shift: accuracy of the label's inference chain on the target domain's test split (its inputs swapped for the target's, scored against the target's hidden labels), and on the source's"

    def applies(self, model: ModelView) -> bool:
        mapping = model.dataset.info.get("target")
        return isinstance(mapping, dict) and label_edge(model.program.graph, mapping) is not None and bool(model.dataset.test)

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        mapping: dict[str, str] = model.dataset.info["target"]
        e = label_edge(model.program.graph, mapping)
        assert e is not None
        test = model.dataset.test
        was = model.training
        model.eval()
        try:
            source = model.observed_batch(test)
            target = {v: test[mapping.get(f, f)] for v, f in model.fields.items() if mapping.get(f, f) in test}
            return {"target_accuracy": _accuracy(model, e, target), "source_accuracy": _accuracy(model, e, source)}
        finally:
            model.train(was)
