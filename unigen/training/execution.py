"""How a trainer runs its networks in each phase: precision, torch.compile, memory format, and
the DistributedDataParallel wrappers of the networks a phase updates.

Terms reach a network through `ctx.net(name)` and traces through `model.calls`: during a phase
that is the module this execution chose for it (compiled, wrapped for the ranks to average
gradients), and outside training steps (evaluation, samples) the plain network.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from unigen.compiler.program import PhasePlan
from unigen.errors import UnigenError
from unigen.training import distributed
from unigen.training.distributed import World
from unigen.training.model import Model

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `train.precision` on `device` (None: full precision); X005 where
    the device cannot do it."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise UnigenError.one("X005", "`train.precision: fp16` needs a CUDA device (float16 autocast and its gradient scaler); this run is on the CPU.", ("train", "precision"), "use `bf16` on the CPU, or `fp32`.")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UnigenError.one("X005", f"`train.precision: bf16`: the GPU `{torch.cuda.get_device_name(device)}` has no bfloat16 arithmetic.", ("train", "precision"), "use `fp16` (with its gradient scaler) or `fp32`.")
    return torch.bfloat16


class Execution:
    def __init__(self, model: Model, phases: list[PhasePlan], train: Any, world: World, device: torch.device) -> None:
        self.model, self.world, self.device = model, world, device
        nets = model.nets
        updated = {n for plan in phases for n in plan.update}
        if train.sync_batchnorm and world.active:
            if device.type != "cuda":
                raise UnigenError.one("X006", "`train.sync_batchnorm: true` needs CUDA: torch's SyncBatchNorm runs on GPUs only, and this run is on the CPU.", ("train", "sync_batchnorm"), "train on GPUs, or set `train.sync_batchnorm: false` (each process then normalises over its own share of the batch).")
            distributed.sync_batchnorm(((n, nets[n]) for n in updated), nets)
        if device.type == "cuda":
            for net in nets.values():
                if any(isinstance(m, CONV) for m in net.modules()):
                    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.dtype = autocast_dtype(train.precision, device)
        self.fp16 = self.dtype is torch.float16
        compile_ = bool(train.compile)

        def compiled(module: nn.Module) -> Callable[..., Any]:
            return torch.compile(module) if compile_ else module

        plain = {n: compiled(net) for n, net in nets.items()}
        self.wrapped = {n: compiled(distributed.wrap(nets[n], device)) for n in nets if n in updated} if world.active else {}
        # Buffers of networks without SyncBatchNorm drift apart between ranks: rank 0's are
        # copied to the others after each step (they are what rank 0 saves and evaluates).
        self.buffered = [nets[n] for n in nets if world.active and any(True for _ in nets[n].buffers())]
        self._calls: dict[int, dict[str, Callable[..., Any]]] = {}
        for i, plan in enumerate(phases):
            calls = dict(plain)
            calls.update({n: self.wrapped[n] for n in plan.update if n in self.wrapped})
            self._calls[i] = calls
        self.plain: dict[str, Callable[..., Any]] = dict(nets.items())

    def enter(self, index: int) -> None:
        self.model.calls = self._calls[index]

    def leave(self) -> None:
        self.model.calls = self.plain

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> Any:
        """A gradient scaler for one phase's optimizer (fp16 only)."""
        return torch.amp.GradScaler(self.device.type) if self.fp16 else None

    def after_step(self) -> None:
        if self.buffered:
            distributed.sync_buffers(self.buffered)
