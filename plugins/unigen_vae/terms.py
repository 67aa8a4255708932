"""-ELBO = -E_q[log p(x | z)] + beta * KL(q(z | x) || p(z)), derived from the graph's edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field
from torch.distributions import kl_divergence

from unigen.graph import EdgeInfo, ModelGraph
from unigen.kinds import Bound, Family, Metric, Options, Site, Term, TermError, merge_defaults
from unigen.registry import Registry
from unigen.runtime import Model, StepContext


class ELBOOptions(Options):
    beta: float = Field(1.0, ge=0, description="weight of the KL terms (beta-VAE when > 1)")


@dataclass(frozen=True)
class _Plan:
    recon: tuple[EdgeInfo, ...]  # generative edges into observed variables: -log p(x | pa)
    kls: tuple[tuple[str, EdgeInfo, EdgeInfo | None], ...]  # (latent, q edge, p edge or None for the prior)
    priors: tuple[str, ...]  # observed roots with a prior: -log p(y)


def plan_elbo(graph: ModelGraph, registry: Registry) -> _Plan:
    spec = graph.spec
    recon, kls, priors = [], [], []
    for v, var in spec.variables.items():
        gen = graph.into(v, "generative")
        if var.observed:
            if gen is not None:
                if not registry.get("distributions", gen.dist).has_density:
                    raise TermError(f"generative edge `{gen.name}` is `{gen.dist}` and has no density, so log p({v} | {', '.join(gen.parents)}) is undefined.", f"give `{gen.name}` a density, e.g. `dist: bernoulli` or `dist: normal`.")
                recon.append(gen)
            elif var.prior:
                priors.append(v)
            continue
        inf = graph.into(v, "inference")
        if inf is None:
            raise TermError(f"latent `{v}` has no inference edge, so the q-trace cannot supply it.", f"add `{{inference: <observed> -> {v}, net: encoder, dist: normal}}`.")
        if not registry.get("distributions", inf.dist).has_density:
            raise TermError(f"inference edge `{inf.name}` is `{inf.dist}` and has no density, so the KL term is undefined.", "use `dist: normal` (a VAE) or an adversarial link on the latent (an AAE).")
        if gen is not None and not registry.get("distributions", gen.dist).has_density:
            raise TermError(f"generative edge `{gen.name}` into latent `{v}` has no density.", "give it `dist: normal`.")
        kls.append((v, inf, gen))
    if not recon:
        raise TermError("no generative edge with a density leads into an observed variable, so there is nothing to reconstruct.", "add e.g. `{generative: z -> x, net: decoder, dist: bernoulli}`.")
    return _Plan(tuple(recon), tuple(kls), tuple(priors))


def _kl(q: torch.distributions.Distribution, p: torch.distributions.Distribution, value: torch.Tensor) -> torch.Tensor:
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(value) - p.log_prob(value)  # single-sample Monte Carlo estimate


def negative_elbo(ctx: StepContext, plan: _Plan, beta: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-example reconstruction and KL parts of -ELBO, in nats (KL None without latents)."""
    q = ctx.q
    rec: torch.Tensor | None = None
    for e in plan.recon:
        assert e.child is not None
        nll = -q.cond(e).log_prob(q[e.child])
        rec = nll if rec is None else rec + nll
    for v in plan.priors:
        nll = -q.prior(v).log_prob(q[v])
        rec = nll if rec is None else rec + nll
    assert rec is not None, "plan_elbo guarantees a reconstruction term"
    kl: torch.Tensor | None = None
    for v, inf, gen in plan.kls:
        p = q.prior(v) if gen is None else q.cond(gen)
        term = _kl(q.cond(inf), p, q[v])
        kl = term if kl is None else kl + term
    return rec, kl


def _formula(plan: _Plan, beta: float) -> str:
    rec = " + ".join(f"-E_q[log p({e.child}|{','.join(e.parents)})]" for e in plan.recon)
    kls = " + ".join(f"KL(q({v}|{','.join(inf.parents)}) || p({v}{'|' + ','.join(gen.parents) if gen else ''}))" for v, inf, gen in plan.kls)
    b = "" if beta == 1 else f"{beta:g} * "
    return rec + (f" + {b}{kls}" if kls else "")


class ELBO(Term):
    Options = ELBOOptions
    doc = "negative evidence lower bound over every generative and inference edge (wake phase, reparameterised)"

    def bind(self, site: Site) -> Bound:
        plan = plan_elbo(site.graph, site.registry)
        beta = site.options.beta

        def loss(ctx: StepContext) -> torch.Tensor:
            rec, kl = negative_elbo(ctx, plan, beta)
            if kl is None:
                return rec.mean()
            return (rec + (kl if beta == 1 else beta * kl)).mean()

        nets = set()
        for e in plan.recon:
            nets |= site.graph.nets_of(e)
        for _, inf, gen in plan.kls:
            nets |= site.graph.nets_of(inf) | (site.graph.nets_of(gen) if gen else set())
        return Bound(loss, _formula(plan, beta), frozenset("q"), frozenset(nets))


class HeldOutELBO(Metric):
    doc = "negative ELBO on the test split, in nats per example (lower is better)"
    higher_is_better = False

    def applies(self, model: Model) -> bool:
        try:
            plan_elbo(model.program.graph, model.registry)
        except TermError:
            return False
        return bool(model.dataset.test)

    def compute(self, model: Model) -> dict[str, float]:
        plan = plan_elbo(model.program.graph, model.registry)
        test = model.observed_batch(model.dataset.test)
        n = len(next(iter(test.values())))
        rec_sum = kl_sum = 0.0
        for start in range(0, n, 1000):
            batch = {k: v[start : start + 1000] for k, v in test.items()}
            ctx = StepContext(model, batch, len(next(iter(batch.values()))))
            rec, kl = negative_elbo(ctx, plan, 1.0)
            rec_sum += float(rec.detach().sum())
            kl_sum += float(kl.detach().sum()) if kl is not None else 0.0
        return {"test_nelbo": (rec_sum + kl_sum) / n, "test_recon": rec_sum / n, "test_kl": kl_sum / n}


class VAEFamily(Family):
    doc = "variational autoencoder on binarised digits: z ~ N(0, I), x ~ Bernoulli(decoder(z)), q(z|x) Gaussian"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "data": {"source": "digits", "binarize": True},
            "variables": {"x": {"observed": True, "shape": [64]}, "z": {"prior": "normal", "shape": [8]}},
            "networks": {
                "encoder": {"arch": "mlp", "hidden": [256, 256]},
                "decoder": {"arch": "mlp", "hidden": [256, 256]},
            },
            "edges": [
                {"generative": "z -> x", "net": "decoder", "dist": "bernoulli"},
                {"inference": "x -> z", "net": "encoder", "dist": "normal"},
            ],
            "phases": [{"name": "elbo", "update": ["encoder", "decoder"], "terms": ["elbo"]}],
        }
        return merge_defaults(defaults, doc)
