"""The importance-weighted bound (Burda et al. 2016) on the test split:

    log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i | x)],  z_i ~ q(z | x) independently,

a lower bound that is the ELBO at k = 1 and tightens as k grows (to log p(x) as k -> inf). The
`iwae` metric reports its negative on the test split, an upper bound on the test negative
log-likelihood in nats; the `iwae` term trains on it (the IWAE of Burda et al.: k reparameterised
draws per training example, the gradient of the log of their mean weight).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from unigen.api.contexts import ModelView, StepContext
from unigen.api.kinds import Bound, Metric, Options, Site, Term, TermError

from .terms import _Plan, plan_elbo, plan_nets


class IWAEOptions(Options):
    k: int = Field(100, ge=1, description="importance samples per test example")
    examples: int = Field(500, ge=1, description="test examples scored (the first ones of the split)")
    rows: int = Field(50_000, ge=1, description="rows evaluated at once (examples x samples), to bound memory")


def log_weights(model: ModelView, plan: _Plan, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """log p(x, z) - log q(z | x) for k draws of z per example: shape (k, n)."""
    n = len(next(iter(batch.values())))
    rep = {name: v.repeat(k, *([1] * (v.dim() - 1))) for name, v in batch.items()}  # rows ordered (sample, example)
    q = model.context(rep, n * k).q
    logw = torch.zeros(n * k, device=model.device)
    for e in plan.recon:
        assert e.child is not None
        logw = logw + q.cond(e).log_prob(q[e.child])
    for v in plan.priors:
        logw = logw + q.prior(v).log_prob(q[v])
    for v, inf, gen in plan.kls:
        p = q.prior(v) if gen is None else q.cond(gen)
        logw = logw + p.log_prob(q[v]) - q.cond(inf).log_prob(q[v])
    return logw.reshape(k, n)


class IWAEBound(Metric):
    doc = "importance-weighted bound on the test negative log-likelihood (k samples per example; nats, lower is better)"
    higher_is_better = False
    during_training = False
    Options = IWAEOptions

    def applies(self, model: ModelView) -> bool:
        try:
            plan_elbo(model.program.graph, model.program.kinds)
        except TermError:
            return False
        return bool(model.dataset.test)

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        o = self.options or IWAEOptions()
        plan = plan_elbo(model.program.graph, model.program.kinds)
        test = model.observed_batch(model.dataset.test)
        n = min(o.examples, len(next(iter(test.values()))))
        per = max(1, o.rows // o.k)
        bound = single = 0.0
        for start in range(0, n, per):
            batch = {name: v[start : min(start + per, n)] for name, v in test.items()}
            logw = log_weights(model, plan, batch, o.k).double()
            bound += float((torch.logsumexp(logw, 0) - math.log(o.k)).sum())
            single += float(logw.mean(0).sum())
        return {"iwae_nll": -bound / n, "iwae_nelbo": -single / n, "iwae_k": float(o.k), "iwae_examples": float(n)}


class IWAETermOptions(Options):
    k: int = Field(5, ge=1, le=10_000, description="importance samples per training example (k = 1 is the ELBO with one sample, no closed-form KL)")


class IWAETerm(Term):
    Options = IWAETermOptions
    doc = "importance-weighted bound (Burda et al. 2016): -log (1/k) sum_i p(x, z_i) / q(z_i | x) over k reparameterised draws per example"

    def bind(self, site: Site) -> Bound:
        plan = plan_elbo(site.graph, site.registry)
        if plan.partial is not None:
            raise TermError(f"`{plan.partial[0]}` is partially observed (`mask: {plan.mask}`); the importance-weighted bound here does not sum it out.", "use the `elbo` term for a semi-supervised model.")
        if not plan.kls:
            raise TermError("the model has no latent variable, so there is nothing to importance-sample.", "use the `elbo` term, or add a latent with an inference edge.")
        k = site.options.k

        def loss(ctx: StepContext) -> torch.Tensor:
            batch = ctx.batch or {}
            rows = {name: v for name, v in batch.items() if name in ctx.model.fields}
            logw = log_weights(ctx.model, plan, rows, k)
            return -(torch.logsumexp(logw, 0) - math.log(k)).mean()

        recon = ", ".join(e.child for e in plan.recon if e.child)
        latents = ", ".join(v for v, _, _ in plan.kls)
        formula = f"-log (1/{k}) sum_i p({recon}, {latents}_i) / q({latents}_i | {recon}), {latents}_i ~ q  (k = {k})"
        return Bound(loss, formula, frozenset("q"), frozenset(plan_nets(site.graph, plan)))
