"""The importance-weighted bound (Burda et al. 2016) on the test split:

    log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i | x)],  z_i ~ q(z | x) independently,

a lower bound that is the ELBO at k = 1 and tightens as k grows (to log p(x) as k -> inf). The
metric reports its negative, an upper bound on the test negative log-likelihood in nats.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from unigen.api.contexts import ModelView
from unigen.api.kinds import Metric, Options, TermError

from .terms import _Plan, plan_elbo


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
