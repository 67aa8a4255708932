"""The undirected part of a model as a list of factors: its total energy, the fields -dE/dx of
its variables (by autograd), and the split of its variables into two colour classes.

`Factors` implements the core's `EnergyView` protocol; the metrics build one over float64
copies of a trained model's networks, and the tests over hand-made energies.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Factor:
    """One undirected factor: a module called as `module(*values of variables)` -> (n, 1)."""

    module: nn.Module
    variables: tuple[str, ...]


class Factors:
    """An energy E(x) = sum of factor energies over named variables (an `EnergyView`)."""

    def __init__(self, factors: Sequence[Factor], shapes: dict[str, tuple[int, ...]], observed: Iterable[str] = ()) -> None:
        self.factors = list(factors)
        order = [v for f in self.factors for v in f.variables]
        self.variables = {v: tuple(shapes[v]) for v in dict.fromkeys(order)}
        self.observed = tuple(v for v in self.variables if v in set(observed))

    @property
    def device(self) -> torch.device | None:
        return next((p.device for f in self.factors for p in f.module.parameters()), None)

    @property
    def dtype(self) -> torch.dtype | None:
        return next((p.dtype for f in self.factors for p in f.module.parameters() if p.is_floating_point()), None)

    def energy(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """(n,): the sum of the factors' energies at `values`."""
        total: torch.Tensor | None = None
        for f in self.factors:
            e = f.module(*[values[v] for v in f.variables]).reshape(-1)
            total = e if total is None else total + e
        assert total is not None, "an energy needs at least one factor"
        return total

    def fields(self, names: Sequence[str], values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-dE/dx for each variable of `names` at `values`, detached (one backward pass)."""
        with torch.enable_grad():
            leaves = {v: values[v].detach().requires_grad_(True) for v in names}
            e = self.energy({**values, **leaves}).sum()
            grads = torch.autograd.grad(e, list(leaves.values()), allow_unused=True)
        return {v: (-g if g is not None else torch.zeros_like(leaves[v])).detach() for v, g in zip(leaves, grads)}

    def field(self, var: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """-dE/d var at `values`, detached: the logits of binary units given the others."""
        return self.fields([var], values)[var]

    def neighbours(self) -> dict[str, set[str]]:
        """Variable -> the variables it shares a factor with."""
        out: dict[str, set[str]] = {v: set() for v in self.variables}
        for f in self.factors:
            for a in f.variables:
                out[a] |= {b for b in f.variables if b != a}
        return out


def fields_of(energy: object, names: Sequence[str], values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fields of several variables: in one pass where the view offers it, else one by one."""
    many = getattr(energy, "fields", None)
    if callable(many):
        return many(names, values)  # type: ignore[no-any-return]
    return {v: energy.field(v, values) for v in names}  # type: ignore[attr-defined]


def colour_classes(energy: Factors) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The two classes of a 2-colouring of the variables (no factor joins two variables of one
    class), the first holding the first variable; ValueError if the factor graph has an odd
    cycle or a factor joins a variable to itself or more than two variables."""
    for f in energy.factors:
        if len(set(f.variables)) != len(f.variables) or len(f.variables) != 2:
            raise ValueError(f"factor over {', '.join(f.variables)}: the exact and AIS estimates need pairwise factors between distinct variables")
    nb = energy.neighbours()
    colour: dict[str, int] = {}
    for start in energy.variables:
        if start in colour:
            continue
        colour[start] = 0
        stack = [start]
        while stack:
            a = stack.pop()
            for b in nb[a]:
                if b not in colour:
                    colour[b] = 1 - colour[a]
                    stack.append(b)
                elif colour[b] == colour[a]:
                    raise ValueError(f"the undirected factors join `{a}` and `{b}` inside one colour class: the graph is not bipartite")
    return tuple(v for v in energy.variables if colour[v] == 0), tuple(v for v in energy.variables if colour[v] == 1)


def units(energy: object, names: Iterable[str]) -> int:
    """The number of scalar units in the variables `names`."""
    shapes = energy.variables  # type: ignore[attr-defined]
    return sum(math.prod(shapes[v]) for v in names)


def undirected_factors(model: object, dtype: torch.dtype = torch.float64) -> Factors:
    """A `Factors` over copies of a model's undirected networks in `dtype` (evaluation mode,
    no gradient to the model's own parameters), with the variables' shapes and which are observed."""
    graph = model.program.graph  # type: ignore[attr-defined]
    edges = graph.of_kind("undirected")
    factors = []
    for e in edges:
        net = copy.deepcopy(model.nets[e.net.split(".")[0]]).to(dtype).eval()  # type: ignore[attr-defined]
        for p in net.parameters():
            p.requires_grad_(False)
        factors.append(Factor(net, tuple(e.variables)))
    names = {v for e in edges for v in e.variables}
    shapes = {v: tuple(graph.shape(v)) for v in names}
    observed = [v for v in names if graph.variables[v].observed]
    return Factors(factors, shapes, observed)
