"""`supervised`: -E_q[log q(y | h)] for an inference edge into an observed variable (a label);
`target_accuracy`: the label edge's accuracy on the target domain of a shifted dataset."""

from __future__ import annotations

import torch

from unigen.api.contexts import EdgeInfo, GraphView, ModelView, StepContext
from unigen.api.kinds import Bound, Metric, Site, Term, TermError


class Supervised(Term):
    target = "inference"
    doc = "supervised fit of an inference edge into an observed variable: -E_q[log q(y|pa)] with y from the data, gradient through the parents (a classifier on learnt features)"

    def bind(self, site: Site) -> Bound:
        graph, e = site.graph, site.edge
        assert e is not None and e.child is not None
        y = e.child
        if not graph.variables[y].observed:
            raise TermError(f"`{y}` is latent: the q-trace samples it from this edge, so there is no data to fit it to.", "attach `supervised` to an inference edge into an observed variable (a label), or use `sleep` for a latent code.")
        if not site.registry.get("distributions", e.dist or "").has_density:
            raise TermError(f"inference edge `{e.name}` is `{e.dist}` and has no density, so log q({y}|{','.join(e.parents)}) is undefined.", "give it a density, e.g. `dist: categorical` for a one-hot label.")
        for p in e.parents:
            if graph.q_source(p) == "none":
                raise TermError(f"`{p}` has no value in the q-trace.", f"add an inference edge into `{p}`.")

        def loss(ctx: StepContext) -> torch.Tensor:
            q = ctx.q
            return -q.cond(e).log_prob(q[y]).mean()

        reaches = graph.nets_of(e)
        for p in e.parents:
            reaches |= graph.nets_behind(p, "q")
        return Bound(loss, f"-E_q[log q({y}|{','.join(e.parents)})], {y} from the data", frozenset("q"), frozenset(reaches))


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
