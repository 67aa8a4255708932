"""RealNVP (Dinh, Sohl-Dickstein and Bengio 2017, "Density estimation using Real NVP"): a stack of
affine coupling layers on the flattened variable.

Each coupling keeps one half of the coordinates (a checkerboard over the variable's index: the
parity of the sum of its multi-index; for a vector, the even or the odd positions; for 2-D data,
one coordinate) and maps the other half as `u_B = x_B * exp(s) + t`, where `s` and `t` come from
an MLP of the kept half and of the edge's parents. Successive couplings swap the halves. The
log-scale goes through a soft clamp, `s = c * tanh(s_raw / c)`, and the MLPs' last layers start
at zero, so a new flow is the identity: training starts from the base density, stably.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from unigen.api.kinds import Arch, Options

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "softplus": nn.Softplus}


class RealNVPOptions(Options):
    couplings: int = Field(8, ge=1, description="affine coupling layers; successive ones transform alternate halves")
    hidden: list[PositiveInt] = Field([64, 64], description="hidden widths of each coupling's MLP (scale and shift)")
    activation: Literal["relu", "leaky_relu", "tanh", "elu", "gelu", "softplus"] = Field("relu", description="nonlinearity of the coupling MLPs")
    scale_clamp: float = Field(3.0, gt=0, description="bound c of each coupling's log-scale: s = c * tanh(s_raw / c)")


def checkerboard(shape: tuple[int, ...]) -> torch.Tensor:
    """1.0 where the sum of an element's multi-index is even, 0.0 elsewhere, flattened."""
    grids = torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij")
    return (sum(grids) % 2 == 0).to(torch.get_default_dtype()).flatten()


class Coupling(nn.Module):
    """One affine coupling: coordinates where `keep` is 1 pass through and condition the map of
    the others, `u = keep * x + (1 - keep) * (x * exp(s) + t)`."""

    def __init__(self, keep: torch.Tensor, n_cond: int, o: RealNVPOptions) -> None:
        super().__init__()
        d = len(keep)
        self.register_buffer("keep", keep.clone())
        layers: list[nn.Module] = []
        width = d + n_cond
        for h in o.hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[o.activation]()]
            width = h
        last = nn.Linear(width, 2 * d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.clamp = o.scale_clamp

    def _scale_shift(self, kept: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(kept if cond is None else torch.cat([kept, cond], 1))
        s, t = h.chunk(2, dim=1)
        moved = 1 - self.keep
        return self.clamp * torch.tanh(s / self.clamp) * moved, t * moved

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._scale_shift(x * self.keep, cond)
        return x * torch.exp(s) + t, s.sum(1)

    def inverse(self, u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        s, t = self._scale_shift(u * self.keep, cond)  # the kept half is the same in u and x
        return (u - t) * torch.exp(-s)


class RealNVP(nn.Module):
    """x (n, *shape) -> (u, log|det du/dx|) with `forward(x, *parents)`; `inverse(u, *parents)` -> x."""

    def __init__(self, shape: tuple[int, ...], parents: list[tuple[int, ...]], o: RealNVPOptions) -> None:
        super().__init__()
        self.shape = tuple(shape)
        n_cond = sum(math.prod(p) for p in parents)
        board = checkerboard(self.shape)
        # Coupling k keeps one half of the board and moves the other; k + 1 swaps them.
        self.couplings = nn.ModuleList(Coupling(board if k % 2 == 0 else 1 - board, n_cond, o) for k in range(o.couplings))

    @staticmethod
    def _cond(parents: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        return torch.cat([p.flatten(1) for p in parents], 1) if parents else None

    def forward(self, x: torch.Tensor, *parents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cond = self._cond(parents)
        h = x.flatten(1)
        logdet = h.new_zeros(len(h))
        for layer in self.couplings:
            h, ld = layer(h, cond)
            logdet = logdet + ld
        return h.view(x.shape), logdet

    def inverse(self, u: torch.Tensor, *parents: torch.Tensor) -> torch.Tensor:
        cond = self._cond(parents)
        h = u.flatten(1)
        for layer in reversed(self.couplings):
            h = layer.inverse(h, cond)
        return h.view(u.shape)


class RealNVPArch(Arch):
    Options = RealNVPOptions
    invertible = True
    doc = "RealNVP flow (Dinh et al. 2017): affine couplings over alternating checkerboard halves, conditioned on the parents; maps x to (u, log|det du/dx|) and back"

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: RealNVPOptions) -> list[str]:
        if not inputs or tuple(output) != tuple(inputs[0]):
            first = list(inputs[0]) if inputs else "nothing"
            return [f"a flow maps a variable onto itself: its output shape {list(output)} differs from its first input's shape {first}; use `realnvp` under a distribution that evaluates its own value (such as `flow`), whose network takes the variable first and gives its shape back."]
        return []

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: RealNVPOptions) -> nn.Module:
        return RealNVP(tuple(inputs[0]), [tuple(s) for s in inputs[1:]], options)
