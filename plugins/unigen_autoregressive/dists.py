"""The autoregressive density p(x | pa) = prod_i p(x_i | x_<i, pa), in raster order (the order of
x's flattened index), each conditional computed by a causal network evaluated on x itself.

Scoring a value is one teacher-forced pass: the network sees the whole of x, and its output at
element i depends only on x_<i (the G021 rule checks that), so the pass gives every
conditional at once. Sampling is sequential: D passes, filling element i from the network's
output at i once the elements before it are drawn.

The per-element conditional is a small table entry (`CONDITIONALS`), so that other ones (a
Gaussian, a categorical) can be added by giving their parameter count, log-density and sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unigen.api.kinds import Dist, Options


@dataclass(frozen=True)
class Conditional:
    """One element's distribution given the network's parameters for it."""

    n_params: int  # network outputs per element
    log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (params (n, n_params, D), x (n, D)) -> (n, D)
    sample: Callable[[torch.Tensor], torch.Tensor]  # params (n, n_params) of one element -> its values (n,)


def _bernoulli_log_prob(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # x log sigmoid(l) + (1 - x) log sigmoid(-l), in its stable form
    return -F.binary_cross_entropy_with_logits(params[:, 0], x, reduction="none")


def _bernoulli_sample(params: torch.Tensor) -> torch.Tensor:
    return torch.bernoulli(torch.sigmoid(params[:, 0]))


CONDITIONALS: dict[str, Conditional] = {"bernoulli": Conditional(1, _bernoulli_log_prob, _bernoulli_sample)}


class AutoregressiveOptions(Options):
    of: Literal["bernoulli"] = Field("bernoulli", description="the conditional of each element given those before it: `bernoulli` (binary data; the network gives one logit per element)")


class Autoregressive(torch.distributions.Distribution):
    """n rows of `shape`, scored by one teacher-forced pass of `net` and sampled by D passes of
    `module` (the same network, plain)."""

    arg_constraints: dict[str, Any] = {}
    has_rsample = False

    def __init__(self, net: Callable[..., torch.Tensor], module: nn.Module, parents: list[torch.Tensor], shape: tuple[int, ...], n: int, conditional: Conditional) -> None:
        self.net, self.module, self.parents, self.conditional = net, module, list(parents), conditional
        self.elements = math.prod(shape)
        super().__init__(torch.Size([n]), torch.Size(shape), validate_args=False)

    def _params(self, out: torch.Tensor) -> torch.Tensor:
        """The network's output (n, *output) as (n, n_params, D): block p is parameter p."""
        return out.reshape(out.shape[0], self.conditional.n_params, self.elements)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        n = value.shape[0]
        params = self._params(self.net(value, *self.parents))
        return self.conditional.log_prob(params, value.reshape(n, self.elements)).sum(1)

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError("the mean of an autoregressive density has no closed form; draw samples instead")

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        if len(sample_shape):
            raise NotImplementedError("an autoregressive density draws its n rows (batch_shape); sample_shape is not supported")
        n = self.batch_shape[0]
        ref = next(iter(self.module.parameters()), None)
        dtype, device = (ref.dtype, ref.device) if ref is not None else (torch.get_default_dtype(), None)
        x = torch.zeros((n, self.elements), dtype=dtype, device=device)
        with torch.no_grad():
            parents = [p.detach() for p in self.parents]
            for i in range(self.elements):
                params = self._params(self.module(x.view(n, *self.event_shape), *parents))
                x[:, i] = self.conditional.sample(params[:, :, i]).to(dtype)
        return x.view(n, *self.event_shape)


class AutoregressiveDist(Dist):
    n_params = 1  # a logit per element (bernoulli, the only conditional so far)
    has_density = True
    reparam = False
    can_be_prior = False  # given as `prior: {dist: autoregressive, net: ...}`: a parentless edge
    evaluates = True
    needs = "causal"
    Options = AutoregressiveOptions
    doc = "autoregressive density prod_i p(x_i | x_<i, parents) in raster order; its network (causal: `made`, `pixelcnn`) is evaluated on x, one pass to score, D passes to sample"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        raise TypeError("`autoregressive` evaluates its own value: the core calls `density`, not `make`")

    def density(self, net: Callable[..., Any], module: nn.Module, parents: list[torch.Tensor], shape: tuple[int, ...], n: int, options: Any) -> torch.distributions.Distribution:
        of = options.of if options is not None else "bernoulli"
        return Autoregressive(net, module, parents, tuple(shape), n, CONDITIONALS[of])
