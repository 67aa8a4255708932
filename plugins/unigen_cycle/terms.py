"""`consistency`: the mean distance between two values of the traces (CycleGAN's cycle loss
E|F(G(a)) - a|); `translation_error`: a translation network against the true translation."""

from __future__ import annotations

import re
from typing import Literal

import torch
from pydantic import Field, field_validator

from unigen.api.contexts import EdgeInfo, GraphView, ModelView
from unigen.api.kinds import Bound, Metric, Options, Site, Term, TermError

_REF = re.compile(r"^\s*([pq])\.([A-Za-z_][A-Za-z0-9_]*)\s*$")


class ConsistencyOptions(Options):
    pairs: list[tuple[str, str]] = Field(min_length=1, description="(value, target) pairs as `trace.variable`, e.g. `[[p.aba, p.a], [p.bab, p.b]]`: each value is pulled towards its target")
    norm: Literal["l1", "l2"] = Field("l1", description="l1: mean absolute difference per element; l2: mean squared difference per element")

    @field_validator("pairs")
    @classmethod
    def _refs(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        bad = [ref for pair in pairs for ref in pair if not _REF.match(ref)]
        if bad:
            raise ValueError(", ".join(f"`{r}`" for r in bad) + " " + ("is not" if len(bad) == 1 else "are not") + " `p.<variable>` or `q.<variable>`")
        return [(a.strip(), b.strip()) for a, b in pairs]


def _parse(ref: str) -> tuple[str, str]:
    m = _REF.match(ref)
    assert m is not None
    return m.group(1), m.group(2)


class Consistency(Term):
    Options = ConsistencyOptions
    doc = "consistency between pairs of trace values, e.g. CycleGAN's cycle loss: sum over pairs of the mean over elements of |value - target| (l1) or (value - target)^2 (l2)"

    def bind(self, site: Site) -> Bound:
        graph, o = site.graph, site.options
        pairs = [(_parse(a), _parse(b)) for a, b in o.pairs]
        reaches: set[str] = set()
        for (tv, v), (tt, t) in pairs:
            for trace, var in ((tv, v), (tt, t)):
                if var not in graph.variables:
                    raise TermError(f"`{trace}.{var}` names no variable.", "name one of: " + ", ".join(f"`{n}`" for n in graph.variables) + ".")
                source = graph.p_source(var) if trace == "p" else graph.q_source(var)
                if source == "none":
                    raise TermError(f"`{var}` has no value in the {trace}-trace.", f"add {'a generative' if trace == 'p' else 'an inference'} edge into `{var}`.")
            if graph.shape(v) != graph.shape(t):
                raise TermError(f"`{tv}.{v}` has shape {list(graph.shape(v))} but `{tt}.{t}` has {list(graph.shape(t))}.", "compare values of the same shape.")
            reaches |= graph.nets_behind(v, tv) | graph.nets_behind(t, tt)
        if not reaches:
            raise TermError("no trainable network stands behind any of the compared values, so the term trains nothing.", "compare a value a network computes.")
        l1 = o.norm == "l1"

        def loss(ctx) -> torch.Tensor:  # type: ignore[no-untyped-def]
            total = None
            for (tv, v), (tt, t) in pairs:
                diff = ctx.trace(tv)[v] - ctx.trace(tt)[t]
                part = diff.abs().mean() if l1 else diff.pow(2).mean()
                total = part if total is None else total + part
            return total

        shown = [f"mean |{tv}.{v} - {tt}.{t}|" if l1 else f"mean ({tv}.{v} - {tt}.{t})^2" for (tv, v), (tt, t) in pairs]
        return Bound(loss, " + ".join(shown) + " (means over elements)", frozenset(tr for pair in pairs for tr, _ in pair), frozenset(reaches))


def translations(graph: GraphView, paired: dict[str, str]) -> list[tuple[str, str, EdgeInfo]]:
    """(source variable, target variable, edge) for each generative edge from one observed
    variable into a latent that an adversarial link judges against another observed variable
    whose data the dataset pairs row by row with the source's."""
    out = []
    for link in graph.of_kind("adversarial"):
        for (_, fake), (_, real) in zip(link.fake, link.real):
            e = graph.into(fake, "generative")
            if e is None or len(e.parents) != 1 or graph.variables[fake].observed:
                continue
            src = e.parents[0]
            if not (graph.variables[src].observed and graph.variables[real].observed):
                continue
            if paired.get(graph.data_field(src)) == graph.data_field(real):
                out.append((src, real, e))
    return out


class TranslationError(Metric):
    doc = "unpaired translation on the test split: mean absolute error per element between a translation network's output and the true translation the dataset pairs with it (`translation_mae`, lower is better), the fraction of outputs nearest to their own true translation among all of them (`translation_match`, chance 1/n), and the error of always answering the target domain's mean training image (`translation_mae_mean_image`, a reference)"
    higher_is_better = False

    def applies(self, model: ModelView) -> bool:
        paired = model.dataset.info.get("paired")
        return isinstance(paired, dict) and bool(translations(model.program.graph, paired)) and bool(model.dataset.test)

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        graph = model.program.graph
        test = model.dataset.test
        per: dict[tuple[str, str, str], float] = {}
        out: dict[str, float] = {}
        was = model.training
        model.eval()
        try:
            for src, dst, e in translations(graph, model.dataset.info["paired"]):
                x, truth = test[graph.data_field(src)], test[graph.data_field(dst)]
                pred = model.nets[e.net](x)
                per[("mae", src, dst)] = float((pred - truth).abs().mean())
                per[("match", src, dst)] = matched(pred, truth)
                # the error of always answering the target domain's mean training image
                per[("mae_mean_image", src, dst)] = float((model.dataset.train[graph.data_field(dst)].mean(0) - truth).abs().mean())
        finally:
            model.train(was)
        for kind in ("mae", "match", "mae_mean_image"):
            values = {f"translation_{kind}_{src}_to_{dst}": v for (k, src, dst), v in per.items() if k == kind}
            out |= values
            if values:
                out[f"translation_{kind}"] = sum(values.values()) / len(values)
        return out


def matched(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """The fraction of rows whose translation lies nearer (mean absolute difference) to its own
    true translation than to any other row's: whether the mapping pairs each input with its
    own counterpart, not merely with some plausible image of the other domain (chance 1/n)."""
    dist = torch.cdist(pred.flatten(1), truth.flatten(1), p=1)
    return float((dist.argmin(1) == torch.arange(len(pred))).double().mean())
