"""The restricted Boltzmann machine's factor: a bilinear energy between two variables.

    E(a, b) = -a^T W b - c^T a - d^T b      (a, b flattened)

It is multilinear, with no interaction inside `a` or inside `b`: given one side, the units of
the other are independent, which the Gibbs sampler, the exact partition function and AIS use.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from unigen.api.kinds import Arch, Options


class RBMOptions(Options):
    init_std: float = Field(0.01, gt=0, description="standard deviation of the initial weights W (biases start at 0)")
    bias: Literal["both", "first", "second", "none"] = Field("both", description="which sides get a bias: in a deep Boltzmann machine a middle layer shared by two factors needs only one")
    init_bias: Literal["zero", "data"] = Field("zero", description="`data`: an observed side's biases start at the log-odds of its training means, clipped to [0.001, 0.999] (Hinton's practical guide; PyDeep's default); `zero`: at 0")


class Bilinear(nn.Module):
    """E(a, b) per row, shape (n, 1)."""

    def __init__(self, n_a: int, n_b: int, o: RBMOptions) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_a, n_b) * o.init_std)
        self.bias_a = nn.Parameter(torch.zeros(n_a)) if o.bias in ("both", "first") else None
        self.bias_b = nn.Parameter(torch.zeros(n_b)) if o.bias in ("both", "second") else None

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.flatten(1), b.flatten(1)
        e = -((a @ self.weight) * b).sum(1)
        if self.bias_a is not None:
            e = e - (a @ self.bias_a.unsqueeze(1)).squeeze(1)  # a matrix product: torch's matrix-vector path can be far slower
        if self.bias_b is not None:
            e = e - (b @ self.bias_b.unsqueeze(1)).squeeze(1)
        return e.unsqueeze(1)


class RBMArch(Arch):
    Options = RBMOptions
    doc = "bilinear energy -a^T W b - c^T a - d^T b between two variables (an RBM's factor); inputs flattened"
    multilinear = True  # no interaction inside either side: the energy is affine in each variable

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: RBMOptions) -> nn.Module:
        return Bilinear(math.prod(inputs[0]), math.prod(inputs[1]), options)

    def init_from_data(self, module: nn.Module, inputs: list[torch.Tensor | None], options: RBMOptions) -> None:
        """`init_bias: data`: each observed side's bias at log(p / (1 - p)), p its training mean."""
        if options.init_bias != "data":
            return
        for values, bias in zip(inputs, (module.bias_a, module.bias_b)):
            if values is not None and bias is not None:
                p = values.flatten(1).float().mean(0).to(bias.device)
                bias.copy_(torch.logit(p.clamp(0.001, 0.999)))

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: Any) -> list[str]:
        out = []
        if len(inputs) != 2:
            out.append(f"`rbm` joins exactly two variables, got {len(inputs)}; use one undirected edge per pair, e.g. `{{undirected: [v, h], net: rbm}}`")
        if tuple(output) != (1,):
            out.append(f"`rbm` gives one energy per row (output [1]), not {list(output)}")
        return out
