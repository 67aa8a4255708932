"""MADE, the masked autoencoder for distribution estimation (Germain et al. 2015).

An MLP whose weight matrices are multiplied by binary masks so that output element i (in the
natural order of the child's flattened index, 1-based degrees 1..D) depends only on the input
elements before it. Each hidden unit k has a degree m(k) in 1..D-1; a unit sees the input
elements d <= m(k) (and the previous layer's units of degree <= m(k)), and output i sees the
last hidden layer's units with m(k) < i. The degrees are spread evenly over 1..D-1 (unit k of a
layer gets 1 + k mod (D-1)), which is deterministic, gives every degree about the same number of
units, and keeps each layer's smallest degree at 1 so no unit is cut off.

Parents (the edge's other inputs, if any) enter unmasked: flattened, concatenated and added
through a linear map to the first hidden layer. With parents, the degrees run over 0..D-1
instead: a unit of degree 0 sees the parents only, so that the first element's conditional
depends on them too (the paper's MADE has no parents).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from unigen.api.kinds import Arch, Options

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "softplus": nn.Softplus}


class MADEOptions(Options):
    hidden: list[PositiveInt] = Field([500], min_length=1, description="widths of the masked hidden layers")
    activation: Literal["relu", "tanh", "elu", "gelu", "softplus"] = Field("relu", description="nonlinearity after each hidden layer")


def hidden_degrees(width: int, d: int, conditioned: bool) -> torch.Tensor:
    """Degrees of a hidden layer's units: 1..D-1 in turn (0..D-1 with parents, D = 1 gives 0)."""
    low = 0 if conditioned or d == 1 else 1
    span = d - low  # the number of degrees low..D-1
    return low + torch.arange(width) % span


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out_features, in_features)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Called as `net(x, *parents)`: x of the child's shape (n, *shape); returns (n, *output)
    where output holds n_params blocks of D elements (param-major), block p's element i the
    p-th parameter of child element i, computed from x's elements before i."""

    def __init__(self, child: tuple[int, ...], parents: list[tuple[int, ...]], output: tuple[int, ...], o: MADEOptions) -> None:
        super().__init__()
        d = math.prod(child)
        n_out = math.prod(output)
        if n_out % d:
            raise ValueError(f"output {list(output)} is no whole number of copies of the child's {d} elements")
        conditioned = bool(parents)
        degrees = torch.arange(1, d + 1)  # the inputs' degrees: element d has degree d
        layers: list[nn.Module] = []
        for width in o.hidden:
            m = hidden_degrees(width, d, conditioned)
            layers.append(MaskedLinear((m[:, None] >= degrees[None, :]).float()))
            degrees = m
        self.hidden = nn.ModuleList(layers)
        out_degrees = torch.arange(n_out) % d + 1  # output o is parameter o // D of element o % D
        self.out = MaskedLinear((out_degrees[:, None] > degrees[None, :]).float())
        n_cond = sum(math.prod(s) for s in parents)
        self.cond = nn.Linear(n_cond, o.hidden[0]) if n_cond else None
        self.act = ACTIVATIONS[o.activation]()
        self.output = output

    def forward(self, x: torch.Tensor, *parents: torch.Tensor) -> torch.Tensor:
        h = self.hidden[0](x.flatten(1))
        if self.cond is not None:
            h = h + self.cond(torch.cat([p.flatten(1) for p in parents], 1))
        h = self.act(h)
        for layer in self.hidden[1:]:
            h = self.act(layer(h))
        return self.out(h).view(-1, *self.output)


class MADEArch(Arch):
    Options = MADEOptions
    causal = True
    doc = "MADE (Germain et al. 2015): a masked MLP whose output at each element sees only the elements before it (natural order); parents enter unmasked"

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: MADEOptions) -> list[str]:
        if not inputs:
            return ["`made` evaluates a variable's own value: it needs the child's shape as its first input (use it under an autoregressive density)."]
        if math.prod(output) % math.prod(inputs[0]):
            return [f"output {list(output)} is no whole number of copies of the child {list(inputs[0])}."]
        return []

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: MADEOptions) -> nn.Module:
        return MADE(tuple(inputs[0]), [tuple(s) for s in inputs[1:]], tuple(output), options)
