"""`label_nll` on an inference edge into an observed label (also the domain plugin's
`supervised`, on learnt features), and its test accuracy."""

from __future__ import annotations

from typing import Any

import torch

from unigen.api.contexts import EdgeInfo, GraphView, ModelView, StepContext
from unigen.api.kinds import Bound, Metric, Site, Term, TermError
from unigen.training.data import observed_rows

CLASSIFIER_HINT = "attach `{name}` to an inference edge from observed variables into an observed label, e.g. `{{inference: x -> y, net: classifier, dist: categorical}}`."


def check_label_edge(graph: GraphView, kinds: Any, e: EdgeInfo, name: str = "label_nll", features: bool = False) -> tuple[str, str] | None:
    """What keeps `e` from being fit to an observed label, as (message, hint); None: nothing.
    Without `features`, `e` must be a classifier q(y | x) of observed variables; with it, its
    parents may be latent features, each with a value in the q-trace (see `LabelNLL`). `kinds`
    looks up its distribution: a term's `site.registry` or a metric's `model.program.kinds`."""
    y = e.child
    assert y is not None
    hint = CLASSIFIER_HINT.format(name=name)
    if not graph.variables[y].observed:
        if features:
            return f"`{y}` is latent: the q-trace samples it from this edge, so there is no data to fit it to.", f"attach `{name}` to an inference edge into an observed variable (a label), or use `sleep` for a latent code."
        return f"inference edge `{e.name}` infers the latent `{y}`, which no row observes, so there is no label to fit.", hint
    latent = [p for p in e.parents if not graph.variables[p].observed]
    if latent and not features:
        return f"inference edge `{e.name}` reads the latent {', '.join(f'`{p}`' for p in latent)}; a classifier reads observed variables only.", hint
    if not kinds.get("distributions", e.dist or "").has_density:
        return f"inference edge `{e.name}` is `{e.dist}` and has no density, so log q({y}|{','.join(e.parents)}) is undefined.", "give it a density, e.g. `dist: categorical` for a one-hot label." if features else hint
    for p in e.parents:  # an observed parent comes from the data; a latent one needs an inference edge
        if graph.q_source(p) == "none":
            return f"`{p}` has no value in the q-trace.", f"add an inference edge into `{p}`."
    return None


class LabelNLL(Term):
    """-E_q[log q(y | pa)] on an inference edge into an observed label y, y from the data: the mean
    over the rows that observe y (a `mask:`'s rows, or all rows), with a gradient into the edge's
    network and into the networks that infer its latent parents. Registered twice:

    - `LabelNLL("label_nll", features=False)` (this plugin): a classifier q(y | x) of observed
      variables, the alpha term of M2; a latent parent is refused (G014).
    - `LabelNLL("supervised", features=True)` (unigen_domain): q(y | h) on learnt features, such
      as DANN's h; a latent parent is allowed when an inference edge gives it a value, and the
      gradient flows back through that chain. The formula adds ", y from the data", and the G014
      messages speak of the q-trace.
    """

    target = "inference"

    def __init__(self, name: str, features: bool, doc: str) -> None:
        self.name, self.features, self.doc = name, features, doc

    def bind(self, site: Site) -> Bound:
        graph, e = site.graph, site.edge
        assert e is not None and e.child is not None
        problem = check_label_edge(graph, site.registry, e, self.name, self.features)
        if problem:
            raise TermError(*problem)
        y = e.child

        def loss(ctx: StepContext) -> torch.Tensor:
            q = ctx.q
            log_q = q.cond(e).log_prob(q[y])
            seen = observed_rows(ctx.batch or {}, y, ctx.n)
            if seen is None:
                return -log_q.mean()
            # The mean over the rows that observe y; a batch without one contributes 0 (with a graph).
            return -(log_q * seen).sum() / seen.sum().clamp(min=1)

        mask = graph.variables[y].mask
        where = f" over rows where {mask}" if mask else ""
        from_data = f", {y} from the data" if self.features else ""
        # An observed parent has no network behind it in the q-trace (its value is the data).
        reaches = graph.nets_of(e).union(*(graph.nets_behind(p, "q") for p in e.parents))
        return Bound(loss, f"-E_q[log q({y}|{','.join(e.parents)})]{where}{from_data}", frozenset("q"), frozenset(reaches))


class LabelAccuracy(Metric):
    doc = "test accuracy of a classifier q(y|x): the inference edge into an observed one-hot label from observed variables, scored by its most probable class"

    def _edge(self, model: ModelView) -> EdgeInfo | None:
        graph = model.program.graph
        for e in graph.of_kind("inference"):
            if e.child in model.fields and len(graph.shape(e.child)) == 1 and check_label_edge(graph, model.program.kinds, e) is None and getattr(model.program.kinds.get("distributions", e.dist or ""), "enumerable", False):
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
