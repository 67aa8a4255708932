"""Samplers that fill the variables of undirected factors: block Gibbs sampling of binary
units (CD-k and persistent chains), mean-field inference of the hidden units, and Langevin
dynamics for continuous energies.

Gibbs blocks are whole variables, in a fixed order (the observed variables first, then the
others as the factors name them). The units of one variable share no factor (a factor joins
two distinct variables), so each block is exactly its conditional given the rest; for a
bipartite graph (an RBM's v-h, a DBM's v-h1-h2) a sweep visits every unit once.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field

from unigen.api.kinds import EnergyView, Options, Sampler

from .factors import fields_of


def _order(energy: EnergyView, skip: dict[str, torch.Tensor]) -> list[str]:
    observed = [v for v in energy.variables if v in energy.observed]
    hidden = [v for v in energy.variables if v not in energy.observed]
    return [v for v in observed + hidden if v not in skip]


def _like(energy: EnergyView, *sources: dict[str, torch.Tensor]) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype new chains are made on: those of a floating tensor given,
    else the energy view's own (`device`, `dtype`, where it has them), else the defaults."""
    for src in sources:
        for t in src.values():
            if t.is_floating_point():
                return t.device, t.dtype
    device = getattr(energy, "device", None) or next((t.device for src in sources for t in src.values()), torch.device("cpu"))
    return torch.device(device), getattr(energy, "dtype", None) or torch.get_default_dtype()


def _rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """n rows of x: all of them when it has n, else drawn at random (with replacement when fewer)."""
    if len(x) == n:
        return x
    if len(x) > n:
        return x[torch.randperm(len(x), device=x.device)[:n]]
    return x[torch.randint(len(x), (n,), device=x.device)]


class GibbsOptions(Options):
    steps: int = Field(1, ge=1, description="Gibbs sweeps per training step (k of CD-k, or of PCD-k)")
    persistent: bool = Field(False, description="keep the chains between steps (persistent CD, Tieleman 2008) instead of restarting them at the data")
    init: Literal["data", "noise"] = Field("data", description="where a chain starts: the batch's observed values (hidden units sampled given them), or uniform random units")
    chains: int | None = Field(None, ge=1, description="number of persistent chains (default: the batch size); a step returns the batch size's rows of them")
    sample_steps: int = Field(1000, ge=1, description="sweeps from noise when drawing samples of the model (mode `sample`)")
    mean_last: bool = Field(True, description="give the last variable of the last sweep as its conditional probabilities (the chain keeps samples): the same expected statistics with less variance")


class Gibbs(Sampler):
    """Block Gibbs sampling of binary units: unit u ~ Bernoulli(sigmoid(field(u))) given the others.

    In mode "sample" the chains start from noise and run `sample_steps` sweeps; the observed
    variables are returned as their conditional probabilities given the last state (the means
    of the last sweep's conditionals, which draw better than binary samples), the others as samples."""

    Options = GibbsOptions
    doc = "block Gibbs sampling of binary units: CD-k from the data, or persistent chains (PCD)"
    traces = frozenset({"m"})

    def fill(self, energy: EnergyView, given: dict[str, torch.Tensor], data: dict[str, torch.Tensor], n: int, options: Any, state: dict[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
        o: GibbsOptions = options or GibbsOptions()
        order = _order(energy, given)
        device, dtype = _like(energy, given, data, state)
        given = {k: v.detach() for k, v in given.items()}
        if mode == "sample":
            x = {**given, **{v: self.noise(energy, v, n, device, dtype) for v in order}}
            x, _ = self.sweeps(energy, x, order, o.sample_steps)
            observed = [v for v in order if v in energy.observed]
            for v, f in fields_of(energy, observed, x).items():
                x[v] = torch.sigmoid(f)
            return {v: x[v] for v in order}
        if o.persistent:
            chains = o.chains or n
            if not all(v in state and len(state[v]) == chains for v in order):
                state.clear()
                state.update(self.start(energy, given, data, chains, o.init, order, device, dtype))
            x = {**{k: _rows(t, chains) for k, t in given.items()}, **{v: state[v].to(device=device, dtype=dtype) for v in order}}
        else:
            chains = n
            x = {**given, **self.start(energy, given, data, n, o.init, order, device, dtype)}
        x, chain = self.sweeps(energy, x, order, o.steps, mean_last=o.mean_last)
        if not o.persistent:
            return {v: x[v] for v in order}
        state.update({v: chain[v].detach() for v in order})
        keep = torch.arange(chains, device=device) if chains == n else _rows(torch.arange(chains, device=device), n)
        return {v: x[v][keep] for v in order}

    @staticmethod
    def noise(energy: EnergyView, var: str, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.bernoulli(torch.full((n, *energy.variables[var]), 0.5, device=device, dtype=dtype))

    def start(self, energy: EnergyView, given: dict[str, torch.Tensor], data: dict[str, torch.Tensor], n: int, init: str, order: list[str], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Initial chains: from noise, or the data's observed values with the other variables
        sampled once in order given them (the others not yet sampled at 0)."""
        if init == "noise" or not any(v in data for v in order):
            return {v: self.noise(energy, v, n, device, dtype) for v in order}
        pick = _rows(torch.arange(len(next(v for k, v in data.items() if k in order)), device=device), n)
        x = {**{k: _rows(t, n) for k, t in given.items()}}
        for v in order:
            x[v] = data[v][pick].to(device=device, dtype=dtype) if v in data else torch.zeros((n, *energy.variables[v]), device=device, dtype=dtype)
        for v in order:
            if v not in data:
                x[v] = torch.bernoulli(torch.sigmoid(energy.field(v, x)))
        return {v: x[v] for v in order}

    @staticmethod
    def sweeps(energy: EnergyView, x: dict[str, torch.Tensor], order: list[str], steps: int, mean_last: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """`steps` sweeps over `order`, each variable sampled given the current others: the
        values to return (the last variable as its probabilities when `mean_last`) and the
        chain's state (samples only)."""
        chain = dict(x)
        p = None
        for _ in range(steps):
            for v in order:
                p = torch.sigmoid(energy.field(v, chain))
                chain[v] = torch.bernoulli(p)
        out = dict(chain)
        if mean_last and p is not None:
            out[order[-1]] = p
        return out, chain


class MeanFieldOptions(Options):
    iterations: int = Field(10, ge=1, description="most sweeps of the fixed-point updates (for an RBM one is exact)")
    tolerance: float = Field(1e-6, ge=0, description="stop when no mean moves by more than this in a sweep")


class MeanField(Sampler):
    """Mean-field inference of the hidden binary units given the observed ones: each hidden
    variable's means mu_u = sigmoid(field(u)) at the current means of the others, updated in
    turn (coordinate ascent on the mean-field free energy) from mu = 0. The means are returned,
    detached; for an RBM the first sweep gives the exact p(h = 1 | v)."""

    Options = MeanFieldOptions
    doc = "mean-field means of the hidden units given the observed ones (exact for an RBM)"
    traces = frozenset({"q"})

    def fill(self, energy: EnergyView, given: dict[str, torch.Tensor], data: dict[str, torch.Tensor], n: int, options: Any, state: dict[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
        o: MeanFieldOptions = options or MeanFieldOptions()
        fixed = {k: v.detach() for k, v in given.items()}
        for v in energy.observed:
            if v not in fixed and v in data:
                fixed[v] = data[v].detach()
        free = [v for v in energy.variables if v not in fixed]
        device, dtype = _like(energy, fixed, data)
        mu = {**fixed, **{v: torch.zeros((n, *energy.variables[v]), device=device, dtype=dtype) for v in free}}
        for _ in range(o.iterations):
            moved = 0.0
            for v in free:
                new = torch.sigmoid(energy.field(v, mu))
                moved = max(moved, float((new - mu[v]).abs().max())) if new.numel() else moved
                mu[v] = new
            if moved <= o.tolerance:
                break
        return {v: mu[v].detach() for v in free}


class LangevinOptions(Options):
    steps: int = Field(10, ge=1, description="Langevin steps per training step")
    step_size: float = Field(0.01, gt=0, description="eps in x <- x - (eps/2) dE/dx + sqrt(eps) noise")
    persistent: bool = Field(False, description="keep the chains between steps instead of restarting them")
    init: Literal["data", "noise"] = Field("data", description="start from the batch's observed values (the others from N(0, I)), or from N(0, I)")
    sample_steps: int = Field(1000, ge=1, description="steps from noise when drawing samples of the model (mode `sample`)")


class Langevin(Sampler):
    """Unadjusted Langevin dynamics on a continuous energy, all free variables moved at once:
    x <- x - (eps/2) dE/dx + sqrt(eps) * N(0, I). Its stationary law approaches exp(-E) / Z as
    eps -> 0 (for E = x^2 / 2 sigma^2 the variance is sigma^2 / (1 - eps / 4 sigma^2))."""

    Options = LangevinOptions
    doc = "Langevin dynamics on a continuous energy (no Metropolis correction)"
    traces = frozenset({"m"})

    def fill(self, energy: EnergyView, given: dict[str, torch.Tensor], data: dict[str, torch.Tensor], n: int, options: Any, state: dict[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
        o: LangevinOptions = options or LangevinOptions()
        order = _order(energy, given)
        device, dtype = _like(energy, given, data, state)
        given = {k: v.detach() for k, v in given.items()}
        steps = o.sample_steps if mode == "sample" else o.steps

        def noise(v: str, rows: int) -> torch.Tensor:
            return torch.randn((rows, *energy.variables[v]), device=device, dtype=dtype)

        if mode != "sample" and o.persistent and all(v in state and len(state[v]) == n for v in order):
            x = {**given, **{v: state[v].to(device=device, dtype=dtype) for v in order}}
        elif mode != "sample" and o.init == "data":
            x = {**given, **{v: data[v].detach().to(dtype) if v in data else noise(v, n) for v in order}}
        else:
            x = {**given, **{v: noise(v, n) for v in order}}
        half, root = o.step_size / 2, math.sqrt(o.step_size)
        for _ in range(steps):
            f = fields_of(energy, order, x)
            x = {**x, **{v: x[v] + half * f[v] + root * noise(v, n) for v in order}}
        if mode != "sample" and o.persistent:
            state.update({v: x[v].detach() for v in order})
        return {v: x[v].detach() for v in order}
