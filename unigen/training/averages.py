"""Exponential moving averages of networks' parameters (`ema: 0.999` on a network).

The averaged copy never trains; it replaces the live network when samples are drawn and
metrics computed, and is stored in checkpoints so a resumed run continues it exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class Averages:
    """The averaged copies of the networks that ask for one, and their decays."""

    def __init__(self, nets: nn.ModuleDict, decays: dict[str, float], owner: Any = None) -> None:
        self.nets = nets
        self.owner = owner  # the model, whose `calls` (what traces call) must see the swap too
        self.decays = dict(decays)
        self.copies = nn.ModuleDict({name: _frozen_copy(nets[name]) for name in decays})
        self._pairs: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def __bool__(self) -> bool:
        return bool(self.decays)

    @torch.no_grad()
    def update(self, names: Iterable[str]) -> None:
        """avg <- decay * avg + (1 - decay) * live, for each named network that has an average;
        buffers (e.g. batch-norm statistics) are copied as they are."""
        for name in names:
            decay = self.decays.get(name)
            if decay is None:
                continue
            live, avg = self.nets[name], self.copies[name]
            src = [p.detach() for p in live.parameters()]
            dst = list(avg.parameters())
            torch._foreach_lerp_(dst, src, 1.0 - decay)
            for b_avg, b_live in zip(avg.buffers(), live.buffers()):
                b_avg.copy_(b_live)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The averaged networks stand in for the live ones inside the block."""
        if not self.decays:
            yield
            return
        live = {name: self.nets[name] for name in self.decays}
        calls = getattr(self.owner, "calls", None)
        try:
            for name in self.decays:
                self.copies[name].train(live[name].training)
                self.nets[name] = self.copies[name]
            if calls is not None:
                self.owner.calls = {**calls, **{name: self.copies[name] for name in self.decays}}
            yield
        finally:
            for name, net in live.items():
                self.nets[name] = net
            if calls is not None:
                self.owner.calls = calls

    def state_dict(self) -> dict[str, Any]:
        return self.copies.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.copies.load_state_dict(state)


def _frozen_copy(net: nn.Module) -> nn.Module:
    avg = copy.deepcopy(net)
    avg.requires_grad_(False)
    return avg
