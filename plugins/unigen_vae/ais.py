"""`decoder_ais`: the test log-likelihood of a decoder model by annealed importance sampling
(Neal 2001), as Wu, Burda, Salakhutdinov & Grosse (2017) evaluate VAEs and GANs:

    pi_t(z) ∝ p(z) p(x | z)^beta_t,   0 = beta_0 < ... < beta_T = 1,

K chains per test example start from the prior, each move is one Hamiltonian Monte Carlo
transition that leaves pi_t invariant, and the log weights add (beta_t - beta_{t-1}) log p(x | z).
log mean_k exp(log w_k) estimates log p(x) from below in expectation, so the metric's
negative is an estimate of the NLL that is high in expectation; it needs no inference network,
so it scores implicit posteriors (AVB) and VAEs alike. The schedule is sigmoidal (dense at both
ends); each chain's step size adapts towards an acceptance rate of 0.65.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from unigen.api.contexts import EdgeInfo, ModelView
from unigen.api.kinds import Metric, Options


class DecoderAISOptions(Options):
    chains: int = Field(16, ge=1, description="annealing chains per test example")
    betas: int = Field(500, ge=2, description="intermediate distributions (sigmoidal schedule)")
    leapfrog: int = Field(10, ge=1, description="leapfrog steps per HMC transition")
    step_size: float = Field(0.05, gt=0, description="initial leapfrog step size, adapted per chain towards acceptance 0.65")
    examples: int = Field(100, ge=1, description="test examples scored (the first ones of the split)")
    seed: int = Field(0, description="seed of the metric's own random stream")


def decoder_plan(model: ModelView) -> tuple[str, list[EdgeInfo]] | None:
    """(z, the generative edges into the observed variables) when every observed variable has a
    generative edge with a density whose only parent is one root z with a standard-normal prior."""
    graph = model.program.graph
    observed = [v for v, var in graph.variables.items() if var.observed]
    edges = [graph.into(v, "generative") for v in observed]
    if not observed or any(e is None for e in edges):
        return None
    parents = {p for e in edges for p in e.parents}  # type: ignore[union-attr]
    if len(parents) != 1:
        return None
    (z,) = parents
    var = graph.variables[z]
    if var.observed or var.prior_name != "normal" or graph.p_source(z) != "prior":
        return None
    if not all(getattr(model.program.kinds.get("distributions", e.dist), "has_density", False) for e in edges):  # type: ignore[union-attr]
        return None
    return z, edges  # type: ignore[return-value]


def sigmoid_schedule(steps: int, spread: float = 4.0) -> torch.Tensor:
    """steps betas from 0 to 1, dense near both ends (Grosse et al.'s sigmoidal schedule)."""
    s = torch.sigmoid(torch.linspace(-spread, spread, steps, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


class _Target:
    """log p(z) and log p(x | z) of rows z, each row paired with its example's x."""

    def __init__(self, model: ModelView, z: str, edges: list[EdgeInfo], x: dict[str, torch.Tensor]) -> None:
        self.model, self.z, self.edges, self.x = model, z, edges, x

    def parts(self, zs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trace = self.model.trace("p", None, len(zs))
        trace.values[self.z] = zs  # type: ignore[attr-defined]
        log_lik = sum(trace.cond(e).log_prob(self.x[e.child]) for e in self.edges)  # type: ignore[index]
        log_prior = -0.5 * zs.pow(2).flatten(1).sum(1) - 0.5 * zs[0].numel() * math.log(2 * math.pi)
        return log_prior, log_lik  # type: ignore[return-value]

    def grad(self, zs: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi_beta(z), d log pi_beta / dz, log p(x | z)), detached."""
        with torch.enable_grad():
            leaf = zs.detach().requires_grad_(True)
            log_prior, log_lik = self.parts(leaf)
            log_pi = log_prior + beta * log_lik
            (g,) = torch.autograd.grad(log_pi.sum(), leaf)
        return log_pi.detach(), g.detach(), log_lik.detach()


def hmc(target: _Target, z: torch.Tensor, beta: float, eps: torch.Tensor, leapfrog: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One HMC transition per row under pi_beta: (new z, accepted as 0/1 per row)."""
    shape = (-1,) + (1,) * (z.dim() - 1)
    e = eps.view(shape)
    p0 = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    log_pi0, g, _ = target.grad(z, beta)
    zn, p = z, p0 + 0.5 * e * g
    for i in range(leapfrog):
        zn = zn + e * p
        log_pi, g, _ = target.grad(zn, beta)
        p = p + (e if i < leapfrog - 1 else 0.5 * e) * g
    h0 = -log_pi0 + 0.5 * p0.pow(2).flatten(1).sum(1)
    h1 = -log_pi + 0.5 * p.pow(2).flatten(1).sum(1)
    accept = (torch.rand(len(z), generator=generator, device=z.device, dtype=z.dtype).log() < (h0 - h1)).to(z.dtype)
    accept = torch.where(torch.isfinite(h1), accept, torch.zeros_like(accept))
    a = accept.view(shape)
    return a * zn + (1 - a) * z, accept


def anneal(target: _Target, z: torch.Tensor, betas: torch.Tensor, o: DecoderAISOptions, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """The chains' log weights (rows of z) and the mean acceptance rate."""
    logw = torch.zeros(len(z), device=z.device, dtype=torch.float64)
    eps = torch.full((len(z),), o.step_size, device=z.device, dtype=z.dtype)
    _, _, log_lik = target.grad(z, 0.0)
    accepted = 0.0
    for k in range(1, len(betas)):
        logw = logw + (float(betas[k]) - float(betas[k - 1])) * log_lik.double()
        z, acc = hmc(target, z, float(betas[k]), eps, o.leapfrog, generator)
        eps = eps * torch.where(acc > 0, 1.02, 0.965)  # balances at acceptance log(1/0.965) / log(1.02/0.965) = 0.64
        accepted += float(acc.mean())
        _, _, log_lik = target.grad(z, float(betas[k]))
    return logw, accepted / (len(betas) - 1)


class DecoderAIS(Metric):
    doc = "test NLL of a decoder model p(z) p(x|z) by annealed importance sampling with HMC (Wu et al. 2017); high in expectation, no inference network needed; nats"
    higher_is_better = False
    during_training = False
    Options = DecoderAISOptions

    def applies(self, model: ModelView) -> bool:
        return decoder_plan(model) is not None and bool(model.dataset.test)

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        plan = decoder_plan(model)
        if plan is None:
            raise ValueError("decoder_ais does not apply: it needs observed variables generated from one root latent with a standard-normal prior, each with a density")
        z_name, edges = plan
        o = self.options or DecoderAISOptions()
        test = model.observed_batch(model.dataset.test)
        n = min(o.examples, len(next(iter(test.values()))))
        shape = tuple(model.program.variables[z_name].shape)
        generator = torch.Generator(model.device).manual_seed(o.seed)
        x = {k: v[:n].repeat_interleave(o.chains, 0) for k, v in test.items()}  # rows ordered (example, chain)
        z = torch.randn((n * o.chains, *shape), generator=generator, device=model.device)
        logw, rate = anneal(_Target(model, z_name, edges, x), z, sigmoid_schedule(o.betas), o, generator)
        logw = logw.view(n, o.chains)
        log_px = torch.logsumexp(logw, 1) - math.log(o.chains)
        return {"test_nll_decoder_ais": float(-log_px.mean()), "decoder_ais_accept": rate, "decoder_ais_examples": float(n)}
