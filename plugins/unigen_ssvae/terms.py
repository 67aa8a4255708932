"""`label_nll` on an inference edge into an observed label, and its test accuracy."""

from __future__ import annotations

import torch

from unigen.api.contexts import EdgeInfo, GraphView, ModelView, StepContext
from unigen.api.kinds import Bound, Metric, Site, Term, TermError
from unigen.api.registry import Registry
from unigen.train.data import observed_rows


def check_label_edge(graph: GraphView, registry: Registry, e: EdgeInfo) -> str | None:
    """What keeps `e` from being a classifier q(y | x) of observed variables (None: nothing)."""
    assert e.child is not None
    if not graph.variables[e.child].observed:
        return f"inference edge `{e.name}` infers the latent `{e.child}`, which no row observes, so there is no label to fit."
    latent = [p for p in e.parents if not graph.variables[p].observed]
    if latent:
        return f"inference edge `{e.name}` reads the latent {', '.join(f'`{p}`' for p in latent)}; a classifier reads observed variables only."
    if not registry.get("distributions", e.dist or "").has_density:
        return f"inference edge `{e.name}` is `{e.dist}` and has no density, so log q({e.child}|{','.join(e.parents)}) is undefined."
    return None


class LabelNLL(Term):
    target = "inference"
    doc = "supervised fit of q(y|x) to observed labels: -E[log q(y|x)] over the rows that observe y (a mask's rows, or all)"

    def bind(self, site: Site) -> Bound:
        e = site.edge
        assert e is not None and e.child is not None
        problem = check_label_edge(site.graph, site.registry, e)
        if problem:
            raise TermError(problem, "attach `label_nll` to an inference edge from observed variables into an observed label, e.g. `{inference: x -> y, net: classifier, dist: categorical}`.")
        y = e.child

        def loss(ctx: StepContext) -> torch.Tensor:
            q = ctx.q
            log_q = q.cond(e).log_prob(q[y])
            seen = observed_rows(ctx.batch or {}, y, ctx.n)
            if seen is None:
                return -log_q.mean()
            # The mean over the rows that observe y; a batch without one contributes 0 (with a graph).
            return -(log_q * seen).sum() / seen.sum().clamp(min=1)

        mask = site.graph.variables[y].mask
        where = f" over rows where {mask}" if mask else ""
        return Bound(loss, f"-E_q[log q({y}|{','.join(e.parents)})]{where}", frozenset("q"), frozenset(site.graph.nets_of(e)))


class LabelAccuracy(Metric):
    doc = "test accuracy of a classifier q(y|x): the inference edge into an observed one-hot label from observed variables, scored by its most probable class"

    def _edge(self, model: ModelView) -> EdgeInfo | None:
        graph = model.program.graph
        for e in graph.of_kind("inference"):
            if e.child in model.fields and len(graph.shape(e.child)) == 1 and check_label_edge(graph, model.registry, e) is None and getattr(model.registry.get("distributions", e.dist or ""), "enumerable", False):
                return e
        return None

    def applies(self, model: ModelView) -> bool:
        return self._edge(model) is not None and bool(model.dataset.test)

    def compute(self, model: ModelView) -> dict[str, float]:
        e = self._edge(model)
        assert e is not None and e.child is not None
        test = model.observed_batch(model.dataset.test)
        y = test[e.child]
        n = len(y)
        seen = observed_rows(test, e.child, n)
        kind, options, event_dims = model.edge_dist[e.name]
        hits = total = 0.0
        for start in range(0, n, 1000):
            rows = slice(start, start + 1000)
            dist = kind.make(model.nets[e.net](*[test[p][rows] for p in e.parents]), event_dims, options)
            right = (dist.mean.argmax(1) == y[rows].argmax(1)).float()
            keep = torch.ones_like(right) if seen is None else seen[rows].float()
            hits += float((right * keep).sum())
            total += float(keep.sum())
        return {"test_accuracy": hits / max(total, 1.0)}
