"""`resmlp`: parents flattened and concatenated, a linear stem, residual blocks, a linear head."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from unigen.api.kinds import Arch, Options


class ResMLPOptions(Options):
    width: int = 128
    blocks: int = 2


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(torch.relu(self.fc1(self.norm(h))))


class _ResMLP(nn.Module):
    def __init__(self, n_in: int, output: tuple[int, ...], o: ResMLPOptions) -> None:
        super().__init__()
        self.output = output
        self.stem = nn.Linear(n_in, o.width)
        self.blocks = nn.Sequential(*[_Block(o.width) for _ in range(o.blocks)])
        self.head = nn.Linear(o.width, math.prod(output))

    def forward(self, *parents: torch.Tensor) -> torch.Tensor:
        h = torch.cat([p.flatten(1) for p in parents], dim=1)
        out = self.head(torch.relu(self.blocks(self.stem(h))))
        return out.view(out.shape[0], *self.output)


class ResMLP(Arch):
    Options = ResMLPOptions
    doc = "residual MLP: linear stem, `blocks` pre-norm residual blocks of `width`, linear head"

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: Any) -> nn.Module:
        return _ResMLP(sum(math.prod(s) for s in inputs), output, options)

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: Any) -> list[str]:
        problems = []
        if options.width < 1:
            problems.append(f"`width` must be at least 1; got {options.width}")
        if options.blocks < 0:
            problems.append(f"`blocks` must not be negative; got {options.blocks}")
        return problems
