"""-ELBO = -E_q[log p(x | z)] + beta * KL(q(z | x) || p(z)), derived from the graph's edges.

A partially observed variable (an observed variable with a `mask`, e.g. a label given for some
rows only) with an enumerable inference edge q(y | x) is summed out where a row hides it, as in
Kingma et al. (2014), M2: such a row's bound is sum_y q(y|x) L(x, y) + KL(q(y|x) || p(y)),
where L(x, y) is the bound of the row with y observed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field
from torch.distributions import kl_divergence

from unigen.api.contexts import EdgeInfo, GraphView, ModelView, RegistryView, StepContext
from unigen.api.kinds import Bound, Family, Metric, Options, Site, Term, TermError, merge_defaults
from unigen.training.data import observed_rows
from unigen.training.model import Trace

from .health import scale_monitor


class ELBOOptions(Options):
    beta: float = Field(1.0, ge=0, description="weight of the KL terms (beta-VAE when > 1)")


@dataclass(frozen=True)
class _Plan:
    recon: tuple[EdgeInfo, ...]  # generative edges into observed variables: -log p(x | pa)
    kls: tuple[tuple[str, EdgeInfo, EdgeInfo | None], ...]  # (latent, q edge, p edge or None for the prior)
    priors: tuple[str, ...]  # observed roots with a prior: -log p(y)
    # A partially observed variable: (variable, its inference edge, its generative edge or None
    # for its prior). Its own -log p(y | pa) is kept out of `recon` and `priors`.
    partial: tuple[str, EdgeInfo, EdgeInfo | None] | None = None
    mask: str = ""  # the data field that marks the rows observing the partial variable


def plan_elbo(graph: GraphView, registry: RegistryView) -> _Plan:
    spec = graph.spec
    recon, kls, priors = [], [], []
    partial = [v for v, var in spec.variables.items() if var.observed and var.mask]
    if len(partial) > 1:
        raise TermError(f"{len(partial)} partially observed variables ({', '.join(f'`{v}`' for v in partial)}); the ELBO sums out at most one where a row hides it.", "keep `mask` on one variable.")
    found: tuple[str, EdgeInfo, EdgeInfo | None] | None = None
    for v, var in spec.variables.items():
        gen = graph.into(v, "generative")
        if var.observed and var.mask:
            inf = graph.into(v, "inference")
            if inf is None:
                raise TermError(f"`{v}` is partially observed (`mask: {var.mask}`) but has no inference edge, so rows that hide it cannot infer it.", f"add e.g. `{{inference: x -> {v}, net: classifier, dist: categorical}}`.")
            if not getattr(registry.get("distributions", inf.dist), "enumerable", False):
                raise TermError(f"inference edge `{inf.name}` into the partially observed `{v}` is `{inf.dist}`, whose values cannot be listed, so rows that hide `{v}` cannot sum it out.", "use an enumerable distribution such as `dist: categorical`.")
            if gen is None and not var.prior:
                raise TermError(f"partially observed `{v}` has neither a prior nor a generative edge, so p({v}) is undefined.", f"add `prior: categorical` to `{v}`.")
            if gen is not None and not registry.get("distributions", gen.dist).has_density:
                raise TermError(f"generative edge `{gen.name}` into `{v}` has no density.", "give it `dist: categorical`.")
            found = (v, inf, gen)
            continue
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
    return _Plan(tuple(recon), tuple(kls), tuple(priors), found, spec.variables[found[0]].mask or "" if found else "")


def plan_nets(graph: GraphView, plan: _Plan) -> set[str]:
    """The trainable networks the bound depends on."""
    nets: set[str] = set()
    for e in plan.recon:
        nets |= graph.nets_of(e)
    for _, inf, gen in plan.kls:
        nets |= graph.nets_of(inf) | (graph.nets_of(gen) if gen else set())
    if plan.partial is not None:
        _, inf, gen = plan.partial
        nets |= graph.nets_of(inf) | (graph.nets_of(gen) if gen else set())
    return nets


def kl_to_prior(q: torch.distributions.Distribution, p: torch.distributions.Distribution, value: torch.Tensor | Callable[[], torch.Tensor]) -> torch.Tensor:
    """KL(q || p) per row: in closed form where torch knows it, else the single-sample Monte
    Carlo estimate log q(z) - log p(z) at `value`, a sample of q (or a function giving one, called
    only then, so that a trace samples z only where the estimate needs it)."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        z = value if isinstance(value, torch.Tensor) else value()
        return q.log_prob(z) - p.log_prob(z)


def _bound(q: Trace, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row reconstruction and KL parts of -ELBO on one q-trace, every variable observed."""
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
        term = kl_to_prior(q.cond(inf), p, q[v])
        kl = term if kl is None else kl + term
    return rec, kl


def _log_p_partial(q: Trace, plan: _Plan) -> torch.Tensor:
    v, _, gen = plan.partial  # type: ignore[misc]
    return (q.prior(v) if gen is None else q.cond(gen)).log_prob(q[v])


def negative_elbo(ctx: StepContext, plan: _Plan, beta: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-example reconstruction and KL parts of -ELBO, in nats (KL None without latents).

    With a partially observed variable y, a row that observes it gets -log p(y) in its
    reconstruction part; a row that hides it is computed once for each value k of y (in one
    batch: the observing rows first, then each hiding row repeated for k = 1..K) and gets
    sum_k q(k|x) rec_k as its reconstruction part and sum_k q(k|x) KL_k + KL(q(y|x) || p(y)) as
    its KL part.
    """
    if plan.partial is None:
        return _bound(ctx.q, plan)
    y, inf, _ = plan.partial
    batch = ctx.batch or {}
    seen = observed_rows(batch, y, ctx.n)
    if seen is None or bool(seen.all()):
        rec, kl = _bound(ctx.q, plan)
        return rec - _log_p_partial(ctx.q, plan), kl
    hidden_q = ctx.q.cond(inf)
    support = hidden_q.enumerate_support()  # (K, n, *shape): each value of y, for every row
    log_q = hidden_q.log_prob(support).transpose(0, 1)  # (n, K)
    n_k = support.shape[0]
    on, off = seen.nonzero().flatten(), (~seen).nonzero().flatten()
    n_on, n_off = len(on), len(off)
    values = {k: t for k, t in batch.items() if k in ctx.model.fields}
    expanded = {k: torch.cat([t[on], t[off].repeat_interleave(n_k, 0)]) for k, t in values.items()}
    expanded[y] = torch.cat([values[y][on], support[:, off].transpose(0, 1).reshape(n_off * n_k, *support.shape[2:]).to(values[y].dtype)])
    inner = ctx.model.context(expanded, n_on + n_off * n_k)
    rec_all, kl_all = _bound(inner.q, plan)
    log_p = _log_p_partial(inner.q, plan)
    weights = log_q[off].exp()  # (n_off, K)
    rec_on = rec_all[:n_on] - log_p[:n_on]
    rec_off = (weights * rec_all[n_on:].view(n_off, n_k)).sum(1)
    kl_y = (weights * (log_q[off] - log_p[n_on:].view(n_off, n_k))).sum(1)  # KL(q(y|x) || p(y))
    order = torch.argsort(torch.cat([on, off]))  # back to the batch's row order
    rec = torch.cat([rec_on, rec_off])[order]
    if kl_all is None:
        kl = torch.cat([torch.zeros_like(rec_on), kl_y])[order]
    else:
        kl = torch.cat([kl_all[:n_on], (weights * kl_all[n_on:].view(n_off, n_k)).sum(1) + kl_y])[order]
    return rec, kl


def _formula(plan: _Plan, beta: float) -> str:
    rec = " + ".join(f"-E_q[log p({e.child}" + (f"|{','.join(e.parents)}" if e.parents else "") + ")]" for e in plan.recon)
    kls = " + ".join(f"KL(q({v}|{','.join(inf.parents)}) || p({v}{'|' + ','.join(gen.parents) if gen else ''}))" for v, inf, gen in plan.kls)
    b = "" if beta == 1 else f"{beta:g} * "
    text = rec + (f" + {b}{kls}" if kls else "")
    if plan.partial is not None:
        y, inf, gen = plan.partial
        p_y = f"p({y}|{','.join(gen.parents)})" if gen else f"p({y})"
        mask, given = plan.mask, ",".join(inf.parents)
        text = f"L = {text}; rows where {mask}: L - log {p_y}; other rows sum {y} out: E_q({y}|{given})[L] + {b}KL(q({y}|{given}) || {p_y})"
    return text


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

        def held_out(ctx: StepContext) -> torch.Tensor:  # -ELBO per example (beta 1), for the health monitor
            rec, kl = negative_elbo(ctx, plan, 1.0)
            return (rec if kl is None else rec + kl).mean()

        monitor = scale_monitor(plan.recon, site.registry, held_out)
        return Bound(loss, _formula(plan, beta), frozenset("q"), frozenset(plan_nets(site.graph, plan)), monitor=monitor)


class HeldOutELBO(Metric):
    doc = "negative ELBO on the test split, in nats per example (lower is better)"
    higher_is_better = False

    def applies(self, model: ModelView) -> bool:
        try:
            plan_elbo(model.program.graph, model.program.kinds)
        except TermError:
            return False
        return bool(model.dataset.test)

    def compute(self, model: ModelView) -> dict[str, float]:
        plan = plan_elbo(model.program.graph, model.program.kinds)
        test = model.observed_batch(model.dataset.test)
        n = len(next(iter(test.values())))
        rec_sum = kl_sum = 0.0
        for start in range(0, n, 1000):
            batch = {k: v[start : start + 1000] for k, v in test.items()}
            ctx = model.context(batch, len(next(iter(batch.values()))))
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
