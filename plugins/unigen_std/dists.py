"""Output distributions of edges, and the priors of latent roots."""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical, Uniform

from unigen.kinds import Delta, Dist


class NormalDist(Dist):
    n_params = 2  # mean and log-variance
    can_be_prior = True
    doc = "diagonal Gaussian; the network outputs mean and log-variance; prior N(0, I)"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        mean, logvar = out.chunk(2, dim=1)
        return Independent(Normal(mean, torch.exp(0.5 * logvar), validate_args=False), event_dims, validate_args=False)

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        zeros = torch.zeros((n, *shape), device=device)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), len(shape), validate_args=False)


class BernoulliDist(Dist):
    reparam = False
    can_be_prior = True
    doc = "independent Bernoulli pixels; the network outputs logits; prior Bernoulli(1/2)"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        return Independent(Bernoulli(logits=out, validate_args=False), event_dims, validate_args=False)

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        return Independent(Bernoulli(logits=torch.zeros((n, *shape), device=device), validate_args=False), len(shape), validate_args=False)


class DeterministicDist(Dist):
    has_density = False
    doc = "a deterministic map (implicit density): the value is the network's output"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        return Delta(out, event_dims)


class CategoricalDist(Dist):
    reparam = False
    can_be_prior = True
    doc = "one-hot categorical over shape [K]; the network outputs logits; prior uniform"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        return OneHotCategorical(logits=out, validate_args=False)

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        return OneHotCategorical(logits=torch.zeros((n, *shape), device=device), validate_args=False)

    def check(self, shape: tuple[int, ...]) -> list[str]:
        return [] if len(shape) == 1 else [f"a one-hot categorical needs a shape [K], not {list(shape)}."]


class UniformDist(Dist):
    can_be_prior = True
    doc = "prior only: uniform on [-1, 1] in every coordinate"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        raise TypeError("`uniform` is a prior only; use `normal` or `deterministic` on an edge")

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        lo = torch.full((n, *shape), -1.0, device=device)
        return Independent(Uniform(lo, -lo, validate_args=False), len(shape), validate_args=False)
