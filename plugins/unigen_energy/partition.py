"""The partition function of a bipartite binary energy model: exactly, by enumerating the
smaller colour class, and estimated by annealed importance sampling (forward and reverse).

For an energy that is affine in each unit, with no factor inside a class, the sum over a class
R given the other class S is analytic:

    log sum_R exp(-E(S, R)) = -E(S, R=0) + sum_u softplus(f_u(S)),   f_R = -dE/dR at R = 0,

so log Z = logsumexp_S of that, over the 2^|S| states of S (Salakhutdinov & Murray 2008 use the
same sum for an RBM's exact Z with few hidden units). The unnormalised log p*(v) of a data row
is the same sum with v clamped: over the smaller remaining class, the other summed analytically.

AIS (Neal 2001; Salakhutdinov & Murray 2008) anneals E_b = b E + (1 - b) E_0 from independent
Bernoulli units E_0 (log Z_0 known) to the model, the state on one class S and the other summed
analytically; its estimate of log Z is low in expectation (Jensen). Reverse AIS starts from
(approximate) model samples and anneals back to E_0: its estimate is high in expectation when
the samples are exact, so the two bracket log Z.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .factors import fields_of, units


def configurations(k: int, start: int, stop: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The binary states start .. stop-1 of k units, one row each: shape (stop - start, k)."""
    idx = torch.arange(start, stop, device=device, dtype=torch.int64)
    return ((idx.unsqueeze(1) >> torch.arange(k, device=device, dtype=torch.int64)) & 1).to(dtype)


def split(flat: torch.Tensor, names: Sequence[str], shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Columns of `flat` (rows, units) as the variables `names`, in order."""
    out, at = {}, 0
    for v in names:
        size = math.prod(shapes[v])
        out[v] = flat[:, at : at + size].reshape(len(flat), *shapes[v])
        at += size
    return out


def energy_and_fields(view: object, names: Sequence[str], values: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E(values) (n,) and the fields of `names`, detached."""
    with torch.no_grad():
        e = view.energy(values)  # type: ignore[attr-defined]
    return e.detach(), fields_of(view, names, values) if names else {}


def summed_out(view: object, values: dict[str, torch.Tensor], summed: Sequence[str], rows: int) -> torch.Tensor:
    """log sum over the binary units of `summed` of exp(-E), the other variables at `values` (n,)."""
    shapes = view.variables  # type: ignore[attr-defined]
    like = next(iter(values.values())) if values else torch.zeros(())
    vals = {**values, **{v: torch.zeros((rows, *shapes[v]), dtype=like.dtype, device=like.device) for v in summed}}
    e, f = energy_and_fields(view, list(summed), vals)
    return -e + sum((F.softplus(f[v]).flatten(1).sum(1) for v in summed), torch.zeros_like(e))


def log_sum(view: object, fixed: dict[str, torch.Tensor], n: int, enumerated: Sequence[str], summed: Sequence[str], dtype: torch.dtype, device: torch.device, chunk: int = 65536) -> torch.Tensor:
    """For each of the n rows of `fixed`: log sum over every state of `enumerated` (listed) and
    of `summed` (analytically) of exp(-E). No factor may join two variables of `summed`."""
    shapes = view.variables  # type: ignore[attr-defined]
    k = units(view, enumerated)
    total = 2**k
    per_cfg = min(total, chunk)
    per_row = max(1, chunk // per_cfg)
    out = []
    for r0 in range(0, n, per_row):
        m = min(per_row, n - r0)
        rows = {v: t[r0 : r0 + m] for v, t in fixed.items()}
        acc = torch.full((m,), -math.inf, dtype=dtype, device=device)
        for c0 in range(0, total, per_cfg):
            cfg = configurations(k, c0, min(c0 + per_cfg, total), dtype, device)
            c = len(cfg)
            vals = {v: t.to(dtype).repeat_interleave(c, 0) for v, t in rows.items()}  # row i, state j at i * c + j
            vals.update(split(cfg.repeat(m, 1), enumerated, shapes))
            lp = summed_out(view, vals, summed, m * c).view(m, c)
            acc = torch.logaddexp(acc, torch.logsumexp(lp, 1))
        out.append(acc)
    return torch.cat(out)


def smaller_first(view: object, a: Sequence[str], b: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the class with fewer units, the other)."""
    return (tuple(a), tuple(b)) if units(view, a) <= units(view, b) else (tuple(b), tuple(a))


def exact_log_z(view: object, classes: tuple[Sequence[str], Sequence[str]], dtype: torch.dtype = torch.float64, device: torch.device | None = None, chunk: int = 65536) -> float:
    """log Z, enumerating the smaller colour class and summing the other analytically."""
    enum, summed = smaller_first(view, *classes)
    return float(log_sum(view, {}, 1, enum, summed, dtype, device or torch.device("cpu"), chunk)[0])


def exact_log_unnormalised(view: object, classes: tuple[Sequence[str], Sequence[str]], data: dict[str, torch.Tensor], dtype: torch.dtype = torch.float64, chunk: int = 65536) -> torch.Tensor:
    """log p*(x) = log sum over the unobserved variables of exp(-E) for each row of `data`
    (the observed variables), enumerating the smaller remaining class."""
    observed = set(data)
    a = [v for v in classes[0] if v not in observed]
    b = [v for v in classes[1] if v not in observed]
    enum, summed = smaller_first(view, a, b)
    first = next(iter(data.values()))
    return log_sum(view, data, len(first), enum, summed, dtype, first.device, chunk)


def free_units(view: object, classes: tuple[Sequence[str], Sequence[str]], observed: Sequence[str]) -> tuple[int, int]:
    """The units to enumerate for log Z and for log p*(x) with `observed` clamped."""
    a = [v for v in classes[0] if v not in observed]
    b = [v for v in classes[1] if v not in observed]
    return min(units(view, classes[0]), units(view, classes[1])), min(units(view, a), units(view, b))


@dataclass
class Annealing:
    """AIS between independent Bernoulli units (logits `base`, one flat tensor per variable)
    and the model, the state on the class `state` and the class `summed` summed analytically."""

    view: object
    state: tuple[str, ...]
    summed: tuple[str, ...]
    base: dict[str, torch.Tensor]
    generator: torch.Generator | None = None

    @property
    def log_z0(self) -> float:
        return float(sum(F.softplus(b).sum() for b in self.base.values()))

    def shaped(self, v: str) -> torch.Tensor:
        return self.base[v].reshape(self.view.variables[v])  # type: ignore[attr-defined]

    def sample_base(self, n: int) -> dict[str, torch.Tensor]:
        return {v: torch.bernoulli(torch.sigmoid(self.shaped(v)).expand(n, *self.shaped(v).shape).contiguous(), generator=self.generator) for v in self.state}

    def stats(self, s: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """E(S, R=0), the model's fields f_R(S) and E_0(S, R=0), for the state S."""
        n = len(next(iter(s.values())))
        like = next(iter(s.values()))
        vals = {**s, **{v: torch.zeros((n, *self.view.variables[v]), dtype=like.dtype, device=like.device) for v in self.summed}}  # type: ignore[attr-defined]
        e, f = energy_and_fields(self.view, list(self.summed), vals)
        e0 = -sum(((s[v].flatten(1) @ self.base[v].unsqueeze(1)).squeeze(1) for v in self.state), torch.zeros_like(e))
        return e, f, e0

    def log_marginal(self, beta: float, e: torch.Tensor, f: dict[str, torch.Tensor], e0: torch.Tensor) -> torch.Tensor:
        """log p*_beta(S) = -E_beta(S, R=0) + sum softplus(beta f_R + (1 - beta) b_R)."""
        out = -beta * e - (1 - beta) * e0
        for v in self.summed:
            out = out + F.softplus(beta * f[v] + (1 - beta) * self.shaped(v)).flatten(1).sum(1)
        return out

    def transition(self, beta: float, s: dict[str, torch.Tensor], f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One Gibbs step under E_beta: R given S (its fields f), then S given R."""
        r = {v: torch.bernoulli(torch.sigmoid(beta * f[v] + (1 - beta) * self.shaped(v)), generator=self.generator) for v in self.summed}
        fs = fields_of(self.view, list(self.state), {**s, **r})
        return {v: torch.bernoulli(torch.sigmoid(beta * fs[v] + (1 - beta) * self.shaped(v)), generator=self.generator) for v in self.state}

    def forward(self, chains: int, betas: torch.Tensor) -> tuple[float, torch.Tensor]:
        """AIS from the base to the model: (estimate of log Z, the chains' log weights)."""
        s = self.sample_base(chains)
        e, f, e0 = self.stats(s)
        logw = torch.zeros_like(e)
        b = [float(x) for x in betas]
        for k in range(1, len(b)):
            logw = logw + self.log_marginal(b[k], e, f, e0) - self.log_marginal(b[k - 1], e, f, e0)
            if k < len(b) - 1:
                s = self.transition(b[k], s, f)
                e, f, e0 = self.stats(s)
        return self.log_z0 + float(torch.logsumexp(logw, 0) - math.log(chains)), logw

    def reverse(self, start: dict[str, torch.Tensor], betas: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Reverse AIS from states `start` (model samples) to the base: (estimate of log Z,
        the chains' log weights, whose mean exp estimates Z_0 / Z)."""
        s = start
        e, f, e0 = self.stats(s)
        logw = torch.zeros_like(e)
        b = [float(x) for x in betas]
        for k in range(len(b) - 1, 0, -1):
            logw = logw + self.log_marginal(b[k - 1], e, f, e0) - self.log_marginal(b[k], e, f, e0)
            if k > 1:
                s = self.transition(b[k - 1], s, f)
                e, f, e0 = self.stats(s)
        return self.log_z0 - float(torch.logsumexp(logw, 0) - math.log(len(logw))), logw

    def model_samples(self, start: dict[str, torch.Tensor], steps: int) -> dict[str, torch.Tensor]:
        """States S after `steps` Gibbs steps under the model from `start`."""
        s = start
        for _ in range(steps):
            _, f, _ = self.stats(s)
            s = self.transition(1.0, s, f)
        return s

    def start_from(self, data: dict[str, torch.Tensor], chains: int) -> dict[str, torch.Tensor]:
        """States S for chains started at rows of `data` (the observed variables): the observed
        ones of S taken from the rows, the others of S sampled given them (the rest at 0)."""
        first = next(iter(data.values()))
        pick = torch.randint(len(first), (chains,), generator=self.generator, device=first.device)
        shapes = self.view.variables  # type: ignore[attr-defined]
        vals = {v: (data[v][pick] if v in data else torch.zeros((chains, *shapes[v]), dtype=first.dtype, device=first.device)) for v in shapes}
        free = [v for v in self.state if v not in data]
        if free:
            f = fields_of(self.view, free, vals)
            vals.update({v: torch.bernoulli(torch.sigmoid(f[v]), generator=self.generator) for v in free})
        return {v: vals[v] for v in self.state}


def base_logits(view: object, means: dict[str, torch.Tensor], rows: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The base model's logits, flat per variable: the observed units' data means (smoothed as
    (sum + 1) / (rows + 2), so none is 0 or 1), the others 0."""
    out = {}
    for v, shape in view.variables.items():  # type: ignore[attr-defined]
        if v in means:
            p = (means[v].reshape(-1).to(dtype=dtype, device=device) * rows + 1) / (rows + 2)
            out[v] = torch.log(p) - torch.log1p(-p)
        else:
            out[v] = torch.zeros(math.prod(shape), dtype=dtype, device=device)
    return out
