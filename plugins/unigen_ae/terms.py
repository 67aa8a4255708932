"""Reconstruction (with an optional corruption of the encoder's input), a sparsity penalty on
the code, the held-out reconstruction error and the `ae` family's defaults."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from unigen.api.contexts import EdgeInfo, GraphView, ModelView, StepContext
from unigen.api.kinds import Bound, Family, Metric, Options, Site, Term, TermError, merge_defaults

# ------------------------------------------------------------------- helpers


def q_ancestors(graph: GraphView, var: str) -> set[str]:
    """Variables the q-trace computes `var` from (through inference edges), `var` included."""
    out: set[str] = set()
    stack = [var]
    while stack:
        cur = stack.pop()
        if cur in out:
            continue
        out.add(cur)
        e = graph.into(cur, "inference") if graph.q_source(cur) == "edge" else None
        if e is not None:
            stack.extend(e.parents)
    return out


def _per_example(t: torch.Tensor) -> torch.Tensor:
    """Sum over everything but the batch dimension."""
    return t.flatten(1).sum(1) if t.dim() > 1 else t


# -------------------------------------------------------------- corruption


class CorruptOptions(Options):
    kind: Literal["masking", "gaussian", "salt_pepper"] = Field(description="masking: each element set to 0 with probability `level`; gaussian: add N(0, level^2) noise; salt_pepper: each element set to 0 or 1 (half each) with probability `level`")
    level: float = Field(gt=0, description="masking/salt_pepper: the fraction of elements corrupted; gaussian: the noise's standard deviation")

    @model_validator(mode="after")
    def _fraction(self) -> CorruptOptions:
        if self.kind != "gaussian" and self.level >= 1:
            raise ValueError(f"`level` of `{self.kind}` is a probability and must be below 1, not {self.level:g}")
        return self

    def show(self, var: str) -> str:
        return f"{self.kind}({var}, {self.level:g})"


def corrupt(x: torch.Tensor, o: CorruptOptions) -> torch.Tensor:
    """The corruption process q_D(x~ | x) of a denoising autoencoder (Vincent et al. 2008, 2010)."""
    if o.kind == "masking":
        return x * (torch.rand_like(x) >= o.level).to(x.dtype)
    if o.kind == "gaussian":
        return x + o.level * torch.randn_like(x)
    hit = torch.rand_like(x) < o.level
    salt = (torch.rand_like(x) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


# ----------------------------------------------------------------- recon


class ReconOptions(Options):
    loss: Literal["nll", "mse", "bce"] = Field("nll", description="nll: -log p(x|z) of the edge's distribution; mse: squared error between x and the conditional's mean; bce: binary cross-entropy of x against the mean (a probability, e.g. a sigmoid output)")
    corrupt: CorruptOptions | None = Field(None, description="denoising: the q-trace infers the parents from a corrupted copy of the child; the target stays clean")


def _cond_name(e: EdgeInfo) -> str:
    return f"{e.child}|{','.join(e.parents)}"


class Recon(Term):
    target = "generative"
    Options = ReconOptions
    doc = "reconstruction -E_q[log p(x|z)] of a generative edge on the q-trace (or squared error / cross-entropy on its mean); optionally denoising"

    def bind(self, site: Site) -> Bound:
        graph, e, o = site.graph, site.edge, site.options
        assert e is not None and e.child is not None
        child = e.child
        for v in e.parents + (child,):
            if graph.q_source(v) == "none":
                raise TermError(
                    f"`{v}` is latent and no inference edge infers it, so the q-trace has no value of it to reconstruct from.",
                    f"add an inference edge into `{v}`, e.g. `{{inference: x -> {v}, net: encoder, dist: deterministic}}`.",
                )
        if o.loss == "nll" and not site.registry.get("distributions", e.dist or "").has_density:
            raise TermError(
                f"generative edge `{e.name}` is `{e.dist}` and has no density, so log p({_cond_name(e)}) is undefined.",
                f"write `{{term: recon, options: {{loss: mse}}}}` (squared error on `{e.net}`'s output) or give `{e.name}` a density, e.g. `dist: bernoulli`.",
            )
        if o.corrupt is not None:
            if not graph.variables[child].observed:
                raise TermError(f"`corrupt` corrupts the data, but `{child}` is latent.", "drop `corrupt`, or reconstruct an observed variable.")
            if not any(child in q_ancestors(graph, p) for p in e.parents if p != child):
                raise TermError(
                    f"corrupting `{child}` changes nothing: no parent of `{e.name}` ({', '.join(e.parents)}) is inferred from `{child}` in the q-trace.",
                    f"add an inference edge from `{child}`, e.g. `{{inference: {child} -> z, net: encoder}}`, or drop `corrupt`.",
                )
        loss_kind, noise = o.loss, o.corrupt

        def loss(ctx: StepContext) -> torch.Tensor:
            q = ctx.q
            x = q[child]
            src = q
            if noise is not None:
                batch = dict(ctx.batch or {})
                batch[child] = corrupt(x, noise)
                src = ctx.model.trace("q", batch, ctx.n)
            cond = src.cond(e)
            if loss_kind == "nll":
                per = -cond.log_prob(x)
            elif loss_kind == "mse":
                per = _per_example((cond.mean - x).pow(2))
            else:
                per = _per_example(F.binary_cross_entropy(cond.mean.clamp(0, 1), x, reduction="none"))
            return per.mean()

        pa = ",".join(e.parents)
        mean = f"{e.net}({pa})" if e.dist == "deterministic" else f"mean({_cond_name(e)})"
        formula = {
            "nll": f"-E_q[log p({_cond_name(e)})]",
            "mse": f"E_q||{child} - {mean}||^2",
            "bce": f"E_q[BCE({child}, {mean})]",
        }[loss_kind]
        if noise is not None:
            moved = [p for p in e.parents if p != child and child in q_ancestors(graph, p)]
            given = moved[0] if len(moved) == 1 else "."
            formula += f", {', '.join(moved)} ~ q({given}|{child}~), {child}~ = {noise.show(child)}"
        reaches = graph.nets_of(e)
        for v in e.parents + (child,):
            reaches |= graph.nets_behind(v, "q")
        return Bound(loss, formula, frozenset("q"), frozenset(reaches))


# -------------------------------------------------------------- sparsity


class SparsityOptions(Options):
    rho: float = Field(0.05, gt=0, lt=1, description="target mean activation of each code unit")
    activation: Literal["sigmoid", "identity"] = Field("sigmoid", description="squashes the code into (0, 1) before averaging; `identity` for codes already in (0, 1)")


_EPS = 1e-6


class Sparsity(Term):
    target = "inference"
    Options = SparsityOptions
    doc = "sparse-autoencoder penalty: sum_j KL(rho || rho_j), rho_j the batch mean of sigmoid(code_j) on the q-trace"

    def bind(self, site: Site) -> Bound:
        graph, e, o = site.graph, site.edge, site.options
        assert e is not None and e.child is not None
        code = e.child
        if not getattr(site.registry.get("distributions", e.dist or ""), "reparam", True):
            raise TermError(
                f"inference edge `{e.name}` is `{e.dist}`: its samples carry no gradient, so a penalty on them cannot train `{e.net}`.",
                "use `dist: deterministic` (or `normal`) on the code's edge.",
            )
        rho, squash = o.rho, o.activation == "sigmoid"

        def loss(ctx: StepContext) -> torch.Tensor:
            h = ctx.q[code].flatten(1)
            a = torch.sigmoid(h) if squash else h
            rho_hat = a.mean(0).clamp(_EPS, 1 - _EPS)
            kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
            return kl.sum()

        act = f"sigmoid({code}_j)" if squash else f"{code}_j"
        formula = f"sum_j KL({rho:g} || rho_j), rho_j = batch mean of {act} on the q-trace"
        return Bound(loss, formula, frozenset("q"), frozenset(graph.nets_behind(code, "q")))


# ---------------------------------------------------------------- metric


def recon_edges(graph: GraphView) -> list[EdgeInfo]:
    """Generative edges into observed variables whose parents the q-trace supplies, at least
    one of them inferred: the edges an encode-decode round trip runs through."""
    out = []
    for e in graph.of_kind("generative"):
        assert e.child is not None
        if not graph.variables[e.child].observed:
            continue
        sources = [graph.q_source(p) for p in e.parents]
        if "none" not in sources and "edge" in sources:
            out.append(e)
    return out


class ReconError(Metric):
    doc = "held-out reconstruction error: mean squared error per element between x and the decoder's mean given the q-trace's code (lower is better)"
    higher_is_better = False

    def applies(self, model: ModelView) -> bool:
        return bool(recon_edges(model.program.graph)) and bool(model.dataset.test)

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        edges = recon_edges(model.program.graph)
        test = model.observed_batch(model.dataset.test)
        n = len(next(iter(test.values())))
        sq = dict.fromkeys((e.name for e in edges), 0.0)
        no_mean: set[str] = set()  # conditionals without a mean: no error to report
        for start in range(0, n, 1000):
            batch = {k: v[start : start + 1000] for k, v in test.items()}
            ctx = model.context(batch, len(next(iter(batch.values()))))
            for e in edges:
                assert e.child is not None
                try:
                    mean = ctx.q.cond(e).mean
                except NotImplementedError:
                    no_mean.add(e.name)
                    continue
                sq[e.name] += float((mean - ctx.q[e.child]).pow(2).sum())
        graph = model.program.graph
        errors = {e.child: sq[e.name] / (n * math.prod(graph.shape(e.child))) for e in edges if e.name not in no_mean}
        if len(edges) == 1:
            return {"recon_error": next(iter(errors.values()))} if errors else {}
        return {f"recon_error_{k}": v for k, v in errors.items()}


# ---------------------------------------------------------------- family


class AEFamily(Family):
    doc = "autoencoder on 8x8 digits: z = encoder(x) (deterministic), x ~ Bernoulli(decoder(z)), trained by reconstruction"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "data": {"source": "digits"},
            "variables": {"x": {"observed": True, "shape": [64]}, "z": {"prior": "normal", "shape": [8]}},
            "networks": {
                "encoder": {"arch": "mlp", "hidden": [256]},
                "decoder": {"arch": "mlp", "hidden": [256]},
            },
            "edges": [
                {"generative": "z -> x", "net": "decoder", "dist": "bernoulli"},
                {"inference": "x -> z", "net": "encoder", "dist": "deterministic"},
            ],
            "phases": [{"name": "recon", "update": ["encoder", "decoder"], "terms": ["recon"]}],
        }
        return merge_defaults(defaults, doc)
