"""The `flow` distribution: a density by change of variables through an invertible network.

`log p(x | parents) = log N(u; 0, I) + log|det du/dx|`, where `(u, logdet) = net(x, *parents)`;
a sample is `module.inverse(u, *parents)` with `u ~ N(0, I)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.distributions import Distribution

from unigen.api.kinds import Dist, Options

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class FlowOptions(Options):
    base: Literal["normal"] = Field("normal", description="the base density of u: a standard normal N(0, I)")


class FlowDensity(Distribution):
    """n rows of a variable of `shape`, each the inverse image of standard normal noise."""

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, net: Callable[..., Any], module: nn.Module, parents: list[torch.Tensor], shape: tuple[int, ...], n: int) -> None:
        self.net, self.module, self.parents = net, module, list(parents)
        super().__init__(torch.Size([n]), torch.Size(shape), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        u, logdet = self.net(value, *self.parents)
        return (-0.5 * u.flatten(1).pow(2) - _HALF_LOG_2PI).sum(1) + logdet

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        m = math.prod(sample_shape)
        n = self.batch_shape[0]
        like = self.parents[0] if self.parents else next(self.module.parameters())
        u = torch.randn((m * n, *self.event_shape), dtype=like.dtype, device=like.device)
        parents = [p.repeat(m, *([1] * (p.dim() - 1))) for p in self.parents]  # sample-major, as u
        return self.module.inverse(u, *parents).view(sample_shape + self.batch_shape + self.event_shape)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError("a flow's mean has no closed form; estimate it from samples")


class FlowDist(Dist):
    Options = FlowOptions
    evaluates = True
    needs = "invertible"
    reparam = True
    has_density = True
    n_params = 1
    can_be_prior = False
    doc = "normalising flow: an invertible network maps the value to standard normal noise; exact log-density by change of variables"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> Distribution:
        raise TypeError("`flow` evaluates its own value: the core calls `density(net, module, parents, shape, n, options)`, not `make`")

    def density(self, net: Callable[..., Any], module: nn.Module, parents: list[torch.Tensor], shape: tuple[int, ...], n: int, options: Any) -> Distribution:
        return FlowDensity(net, module, parents, tuple(shape), n)
