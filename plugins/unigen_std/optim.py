"""Optimizers a phase can name, with their options checked before training starts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from unigen.kinds import Options


class AdamOptions(Options):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False


class AdamWOptions(AdamOptions):
    weight_decay: float = 0.01


class SGDOptions(Options):
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


class RMSpropOptions(Options):
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0


class TorchOptimizer:
    def __init__(self, cls: type[torch.optim.Optimizer], options: type[Options], doc: str) -> None:
        self.cls, self.Options, self.doc = cls, options, doc

    def __call__(self, params: Iterable[torch.nn.Parameter], lr: float, **options: Any) -> torch.optim.Optimizer:
        checked = self.Options.model_validate(options).model_dump()
        return self.cls(params, lr=lr, **checked)


OPTIMIZERS = {
    "adam": TorchOptimizer(torch.optim.Adam, AdamOptions, "Adam (Kingma & Ba)"),
    "adamw": TorchOptimizer(torch.optim.AdamW, AdamWOptions, "Adam with decoupled weight decay"),
    "sgd": TorchOptimizer(torch.optim.SGD, SGDOptions, "stochastic gradient descent"),
    "rmsprop": TorchOptimizer(torch.optim.RMSprop, RMSpropOptions, "RMSProp"),
}
