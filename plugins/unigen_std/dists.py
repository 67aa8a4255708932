"""Output distributions of edges, and the priors of latent roots."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from torch.distributions import Distribution, Independent, OneHotCategorical, Uniform, register_kl

from unigen.api.kinds import Delta, Dist, Options

_HALF_LOG_2PI = 0.9189385332046727


def _sum_event(x: torch.Tensor, event_dims: int) -> torch.Tensor:
    return x.flatten(x.dim() - event_dims).sum(-1) if event_dims else x


class DiagNormal(Distribution):
    """A diagonal Gaussian whose last `event_dims` dimensions form one event.

    Equivalent to `Independent(Normal(mean, std), event_dims)`, in fewer operations: these
    sit on every training step of every model with a Gaussian edge or prior.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, event_dims: int, logvar: torch.Tensor | None = None, standard: bool = False) -> None:
        self.loc, self.scale, self.event_dims, self.standard = mean, std, event_dims, standard
        self._log_scale = 0.5 * logvar if logvar is not None else None
        split = mean.dim() - event_dims
        super().__init__(mean.shape[:split], mean.shape[split:], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def log_scale(self) -> torch.Tensor:
        return self._log_scale if self._log_scale is not None else self.scale.log()

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return noise if self.standard else self.loc + self.scale * noise  # N(0, I): 0 + 1 * e is e

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z = (value - self.loc) / self.scale
        return _sum_event(-0.5 * z * z - self.log_scale - _HALF_LOG_2PI, self.event_dims)


@register_kl(DiagNormal, DiagNormal)
def _kl_diag_normal(q: DiagNormal, p: DiagNormal) -> torch.Tensor:
    if p.standard:  # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1)/2 - log s
        return _sum_event(0.5 * (q.loc.pow(2) + q.scale.pow(2) - 1) - q.log_scale, q.event_dims)
    var_ratio = (q.scale / p.scale).pow(2)
    t = ((q.loc - p.loc) / p.scale).pow(2)
    return _sum_event(0.5 * (var_ratio + t - 1) - (q.log_scale - p.log_scale), q.event_dims)


class BernoulliLogits(Distribution):
    """Independent Bernoulli variables given by logits, summed over the event dimensions."""

    arg_constraints: dict = {}

    def __init__(self, logits: torch.Tensor, event_dims: int) -> None:
        self.logits, self.event_dims = logits, event_dims
        split = logits.dim() - event_dims
        super().__init__(logits.shape[:split], logits.shape[split:], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            probs = torch.sigmoid(self.logits).expand(torch.Size(sample_shape) + self.logits.shape)
            return torch.bernoulli(probs)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -_sum_event(F.binary_cross_entropy_with_logits(self.logits, value, reduction="none"), self.event_dims)


class NormalOptions(Options):
    variance: Literal["learned", "fixed"] = Field("learned", description="`learned`: the network outputs the mean and the log-variance of each element; `fixed`: the network outputs the mean only, and the standard deviation is `scale`")
    scale: float = Field(1.0, gt=0, description="the standard deviation of every element under `variance: fixed`")
    min_scale: float = Field(0.0, ge=0, description="a smooth floor on the learned standard deviation: the variance is exp(log-variance) + min_scale^2, so the standard deviation stays above `min_scale` and keeps its gradient (0: no floor)")

    # Each runs only where the spec gives the option (a default is not validated), after `variance`.
    @field_validator("scale")
    @classmethod
    def _scale_is_fixed(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("variance") == "learned":  # absent: `variance` itself failed, and is reported
            raise PydanticCustomError("normal_scale", "`scale` is the standard deviation of `variance: fixed`, and the variance here is learned; "
                                      "expected `variance: fixed` beside `scale`, or `min_scale` to floor the learned standard deviation")
        return value

    @field_validator("min_scale")
    @classmethod
    def _min_scale_is_learned(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("variance") == "fixed":
            raise PydanticCustomError("normal_min_scale", "`min_scale` floors a learned standard deviation, and the variance here is fixed; "
                                      "expected `variance: learned` beside `min_scale`, or `scale` alone for the fixed one")
        return value


class NormalDist(Dist):
    n_params = 2  # mean and log-variance (with the default `variance: learned`)
    can_be_prior = True
    Options = NormalOptions
    doc = ("diagonal Gaussian; the network outputs mean and log-variance (`variance: fixed, scale: s`: the mean only, standard deviation s; "
           "`min_scale: m`: a smooth floor, variance exp(log-variance) + m^2); prior N(0, I)")

    def n_params_for(self, options: Any) -> int:
        return 1 if getattr(options, "variance", "learned") == "fixed" else 2

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        if options is not None and options.variance == "fixed":
            log_scale = math.log(options.scale)
            return DiagNormal(out, out.new_full((), options.scale).expand_as(out), event_dims, logvar=out.new_full((), 2 * log_scale).expand_as(out))
        mean, logvar = out.chunk(2, dim=1)
        if options is not None and options.min_scale > 0:
            # A smooth floor: var = exp(logvar) + m^2, so std >= m and the gradient never stops.
            logvar = torch.logaddexp(logvar, logvar.new_full((), 2 * math.log(options.min_scale)))
        return DiagNormal(mean, torch.exp(0.5 * logvar), event_dims, logvar=logvar)

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        zeros = torch.zeros((n, *shape), device=device)
        return DiagNormal(zeros, torch.ones_like(zeros), len(shape), logvar=zeros, standard=True)


class BernoulliDist(Dist):
    reparam = False
    can_be_prior = True
    doc = "independent Bernoulli pixels; the network outputs logits; prior Bernoulli(1/2)"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        return BernoulliLogits(out, event_dims)

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        return BernoulliLogits(torch.zeros((n, *shape), device=device), len(shape))


class DeterministicDist(Dist):
    has_density = False
    doc = "a deterministic map (implicit density): the value is the network's output"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        return Delta(out, event_dims)


class CategoricalDist(Dist):
    reparam = False
    can_be_prior = True
    enumerable = True
    doc = "one-hot categorical over shape [K]; the network outputs logits; prior uniform"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        return OneHotCategorical(logits=out, validate_args=False)

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        return OneHotCategorical(logits=torch.zeros((n, *shape), device=device), validate_args=False)

    def check(self, shape: tuple[int, ...]) -> list[str]:
        return [] if len(shape) == 1 else [f"a one-hot categorical needs a shape [K], not {list(shape)}."]


class UniformDist(Dist):
    can_be_prior = True
    can_be_edge = False
    doc = "prior only: uniform on [-1, 1] in every coordinate"

    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        raise TypeError("`uniform` is a prior only; use `normal` or `deterministic` on an edge")

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        lo = torch.full((n, *shape), -1.0, device=device)
        return Independent(Uniform(lo, -lo, validate_args=False), len(shape), validate_args=False)
