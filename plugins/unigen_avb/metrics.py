"""`nll_quadrature`: -log p(x) = -log \\int p(x | z) p(z) dz on a grid, for a latent of <= 2 dimensions;
`avb_nelbo`: AVB's own bound on the test split, its KL term read from the adversary."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from unigen_vae.ais import decoder_plan

from unigen.api.contexts import ModelView
from unigen.api.kinds import Metric, Options, TermError

from .terms import AVBPlan, avb_loss, plan_avb


class QuadratureOptions(Options):
    points: int = Field(201, ge=11, le=2001, description="grid points along each latent dimension")
    span: float = Field(6.0, gt=0, description="the grid covers [-span, span] in each dimension (standard-normal prior: 6 leaves out < 1e-8)")
    examples: int | None = Field(None, ge=1, description="test examples scored (the first ones of the split); default: all")


def _plan(model: ModelView) -> tuple[str, list[str]] | None:
    """(z, observed) when the p-trace is z ~ normal with shape [d <= 2] and every observed variable
    has a generative edge with density from z alone; None otherwise."""
    plan = decoder_plan(model)
    if plan is None:
        return None
    z, edges = plan
    shape = model.program.graph.variables[z].shape
    if len(shape) != 1 or shape[0] > 2:
        return None
    return z, [e.child for e in edges]  # type: ignore[misc]


class QuadratureNLL(Metric):
    Options = QuadratureOptions
    doc = "exact held-out -log p(x) in nats per example, by quadrature over a latent of at most 2 dimensions with a standard-normal prior (lower is better)"
    higher_is_better = False

    def applies(self, model: ModelView) -> bool:
        return _plan(model) is not None and bool(model.dataset.test)

    def compute(self, model: ModelView) -> dict[str, float]:
        plan = _plan(model)
        assert plan is not None
        z_name, observed = plan
        o = self.options or QuadratureOptions()
        d = model.program.variables[z_name].shape[0]
        axis = torch.linspace(-o.span, o.span, o.points, device=model.device)
        step = float(axis[1] - axis[0])
        grid = torch.cartesian_prod(*([axis] * d)).reshape(-1, d)
        # log p(z) + log(cell volume): a Riemann sum of p(x | z) p(z) over the grid
        log_w = (-0.5 * grid.pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi) + d * math.log(step)).double()
        test = model.observed_batch(model.dataset.test)
        n = min(len(next(iter(test.values()))), o.examples or math.inf)  # type: ignore[type-var]
        total = 0.0
        for start in range(0, n, 64):
            rows = {k: v[start : min(start + 64, n)] for k, v in test.items()}
            m = len(next(iter(rows.values())))
            log_px_z = torch.zeros(m, len(grid), dtype=torch.float64, device=model.device)
            for chunk in range(0, len(grid), 4096):
                zs = grid[chunk : chunk + 4096]
                trace = model.trace("p", None, len(zs))
                trace.values[z_name] = zs
                for v in observed:
                    dist = trace.cond(model.program.graph.into(v, "generative"))
                    for i, x in enumerate(rows[v]):  # each test row under every grid point
                        log_px_z[i, chunk : chunk + len(zs)] += dist.log_prob(x.expand(len(zs), *x.shape)).double()
            total += float(-(log_px_z + log_w).logsumexp(1).sum())
        return {"test_nll_quadrature": total / n}


def _avb_plan(model: ModelView) -> AVBPlan | None:
    """The plan of the first adversarial link the `avb` bound accepts (None: no such link)."""
    graph = model.program.graph
    for link in graph.of_kind("adversarial"):
        try:
            return plan_avb(graph, model.program.kinds, link)
        except TermError:
            continue
    return None


class HeldOutAVB(Metric):
    doc = "AVB's approximate negative ELBO on the test split, -E_q[log p(x|z)] + E_q[T(x,z)] with the adversary's T for the KL term (nats; an estimate, not a bound, unless T is optimal)"
    higher_is_better = False

    def applies(self, model: ModelView) -> bool:
        return _avb_plan(model) is not None and bool(model.dataset.test)

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        plan = _avb_plan(model)
        if plan is None:
            raise ValueError("avb_nelbo does not apply: no adversarial link judges q's pairs against the prior's")
        test = model.observed_batch(model.dataset.test)
        n = len(next(iter(test.values())))
        total = rec_total = 0.0
        for start in range(0, n, 1000):
            batch = {k: v[start : start + 1000] for k, v in test.items()}
            ctx = model.context(batch, len(next(iter(batch.values()))))
            total += float(avb_loss(ctx, plan).sum())
            rec_total += float(sum(-ctx.q.cond(e).log_prob(ctx.q[e.child]) for e in plan.recon).sum())  # type: ignore[index, union-attr]
        return {"test_avb_nelbo": total / n, "test_avb_recon": rec_total / n, "test_avb_kl": (total - rec_total) / n}
