"""Optimizers a phase can name, with their options checked before training starts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from pydantic import Field

from unigen.api.kinds import Options


class ScheduleOptions(Options):
    lr_end: float | None = Field(None, gt=0, description="learning rate reached after `lr_steps` updates, along a half cosine from `lr`; null: a constant rate")
    lr_steps: int = Field(0, ge=0, description="optimizer updates (a phase's repeats count) over which `lr` decays to `lr_end`; it stays at `lr_end` after")


class AdamOptions(ScheduleOptions):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False


class AdamWOptions(AdamOptions):
    weight_decay: float = 0.01


class SGDOptions(ScheduleOptions):
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


class RMSpropOptions(ScheduleOptions):
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0


class TorchOptimizer:
    def __init__(self, cls: type[torch.optim.Optimizer], options: type[Options], doc: str) -> None:
        self.cls, self.Options, self.doc = cls, options, doc

    def __call__(self, params: Iterable[torch.nn.Parameter], lr: float, **options: Any) -> torch.optim.Optimizer:
        checked = self.Options.model_validate(options).model_dump()
        lr_end, lr_steps = checked.pop("lr_end", None), checked.pop("lr_steps", 0)
        optimizer = self.cls(params, lr=lr, **checked)
        if lr_end is not None and lr_steps > 0:
            schedule(optimizer, lr, lr_end, lr_steps)
        return optimizer


def schedule(optimizer: torch.optim.Optimizer, start: float, end: float, steps: int) -> None:
    """Before each update, lr = end + (start - end) (1 + cos(pi min(t, steps) / steps)) / 2 for
    the t-th update. The count lives in the param groups, so it is saved and restored with the
    optimizer's state (a resumed run continues the schedule exactly)."""
    for group in optimizer.param_groups:
        group["schedule_t"] = 0

    def before(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for group in opt.param_groups:
            t = min(int(group["schedule_t"]), steps)
            group["lr"] = end + (start - end) * 0.5 * (1 + math.cos(math.pi * t / steps))
            group["schedule_t"] = int(group["schedule_t"]) + 1

    optimizer.register_step_pre_hook(before)


OPTIMIZERS = {
    "adam": TorchOptimizer(torch.optim.Adam, AdamOptions, "Adam (Kingma & Ba)"),
    "adamw": TorchOptimizer(torch.optim.AdamW, AdamWOptions, "Adam with decoupled weight decay"),
    "sgd": TorchOptimizer(torch.optim.SGD, SGDOptions, "stochastic gradient descent"),
    "rmsprop": TorchOptimizer(torch.optim.RMSprop, RMSpropOptions, "RMSProp"),
}
