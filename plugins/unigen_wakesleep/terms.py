"""`wake`: -log p(child | parents) on the q-trace; `sleep`: -log q(child | parents) on the
p-trace. The other side's values are detached, so each term trains one network."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from unigen.api.contexts import EdgeInfo, GraphView, StepContext
from unigen.api.kinds import Bound, Family, Options, Site, Term, TermError, merge_defaults
from unigen.api.registry import Registry
from unigen.training.model import Trace


def _check(graph: GraphView, registry: Registry, e: EdgeInfo, trace: str) -> None:
    assert e.child is not None
    if not registry.get("distributions", e.dist or "").has_density:
        raise TermError(
            f"{e.kind} edge `{e.name}` is `{e.dist}` and has no density, so log {'p' if e.kind == 'generative' else 'q'}({e.child}|{','.join(e.parents)}) is undefined.",
            "give the edge a density, e.g. `dist: bernoulli`, `normal` or `categorical`.",
        )
    for v in e.parents + (e.child,):
        source = graph.p_source(v) if trace == "p" else graph.q_source(v)
        if source == "none":
            how = "a generative edge into it or a prior" if trace == "p" else "an inference edge into it"
            raise TermError(f"`{v}` has no value in the {trace}-trace, which this term samples.", f"add {how}.")


def _log_density(trace: Trace, e: EdgeInfo, detach: bool) -> torch.Tensor:
    """log density of the edge at the trace's values of its child and parents; `detach` cuts
    the gradient to whatever produced those values, so only the edge's own network learns."""
    assert e.child is not None
    if not detach:
        return trace.cond(e).log_prob(trace[e.child])
    kind, options, event_dims = trace.model.edge_dist[e.name]
    out = trace.model.call(e)(*[trace[p].detach() for p in e.parents])
    return kind.make(out, event_dims, options).log_prob(trace[e.child].detach())


class Wake(Term):
    target = "generative"
    doc = "wake phase: -E_q[log p(x|z)] with the q-trace's values detached (only the generative network learns)"

    def bind(self, site: Site) -> Bound:
        e = site.edge
        assert e is not None and e.child is not None
        _check(site.graph, site.registry, e, "q")

        def loss(ctx: StepContext) -> torch.Tensor:
            return -_log_density(ctx.q, e, detach=True).mean()

        formula = f"-E_q[log p({e.child}|{','.join(e.parents)})], q-trace values detached"
        return Bound(loss, formula, frozenset("q"), frozenset(site.graph.nets_of(e)))


class SleepOptions(Options):
    detach: bool = Field(True, description="detach the p-trace's values so only the inference network learns (the Helmholtz sleep phase); false lets the gradient also reach the generative networks behind them (InfoGAN's mutual-information term)")


class Sleep(Term):
    target = "inference"
    Options = SleepOptions
    doc = "sleep phase: -E_p[log q(z|x)] on the p-trace (dreams), values detached (only the inference network learns)"

    def bind(self, site: Site) -> Bound:
        e = site.edge
        assert e is not None and e.child is not None
        _check(site.graph, site.registry, e, "p")
        detach = site.options.detach

        def loss(ctx: StepContext) -> torch.Tensor:
            return -_log_density(ctx.p, e, detach=detach).mean()

        base = f"-E_p[log q({e.child}|{','.join(e.parents)})]"
        reaches = site.graph.nets_of(e)
        if detach:
            formula = base + ", p-trace values detached"
        else:
            moved = [v for v in e.parents + (e.child,) if site.graph.nets_behind(v, "p")]
            for v in moved:
                reaches |= site.graph.nets_behind(v, "p")
            formula = base + (", gradient also through " + ", ".join(f"p.{v}" for v in moved) + " (mutual information)" if moved else "")
        return Bound(loss, formula, frozenset("p"), frozenset(reaches))


class HelmholtzFamily(Family):
    doc = "Helmholtz machine on binarised digits: z ~ Bernoulli(1/2), x ~ Bernoulli(decoder(z)), q(z|x) Bernoulli, trained by wake-sleep"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "data": {"source": "digits", "binarize": True},
            "variables": {"x": {"observed": True, "shape": [64]}, "z": {"prior": "bernoulli", "shape": [32]}},
            "networks": {
                "encoder": {"arch": "mlp", "hidden": [256]},
                "decoder": {"arch": "mlp", "hidden": [256]},
            },
            "edges": [
                {"generative": "z -> x", "net": "decoder", "dist": "bernoulli"},
                {"inference": "x -> z", "net": "encoder", "dist": "bernoulli"},
            ],
            "phases": [
                {"name": "wake", "update": ["decoder"], "terms": ["wake"]},
                {"name": "sleep", "update": ["encoder"], "terms": ["sleep"]},
            ],
        }
        return merge_defaults(defaults, doc)
