"""A trainer's state: what a checkpoint holds, what a resumed run loads, and the in-memory
snapshot that `train.on_nonfinite: rollback` returns to."""

from __future__ import annotations

import copy
from typing import Any

import torch


def trainer_state(trainer: Any) -> dict[str, Any]:
    """Everything a resumed run needs to continue bit for bit: networks, optimizers, the data
    order and position, the random streams, and the counts of non-finite losses. The tensors
    are the live ones; `snapshot` copies them."""
    rng: dict[str, Any] = {"torch": torch.random.get_rng_state(), "generator": trainer.generator.get_state()}
    if trainer.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    extra: dict[str, Any] = {}
    if trainer.world.active:  # every rank's noise streams, so that each continues its own
        extra["rng_ranks"] = trainer.world.gather(rng)
    if any(r.scaler is not None for r in trainer.runners):
        extra["scalers"] = {r.plan.name: r.scaler.state_dict() for r in trainer.runners if r.scaler is not None}
    out = {
        **extra,
        "step": trainer.step_count,
        "nets": trainer.model.nets.state_dict(),
        "optimizers": {r.plan.name: r.optimizer.state_dict() for r in trainer.runners},
        "batches": trainer.batches.state_dict() if trainer.batches else {},
        "rng": rng,
        "nonfinite": dict(trainer.nonfinite),
        "health": trainer.health.state_dict(),
    }
    if trainer.model.averages:
        out["ema"] = trainer.model.averages.state_dict()
    if any(trainer.model.sampler_state.values()):  # persistent chains continue where they were
        out["samplers"] = {trace: dict(state) for trace, state in trainer.model.sampler_state.items()}
    return out


def load_trainer_state(trainer: Any, state: dict[str, Any]) -> None:
    trainer.step_count = int(state["step"])
    trainer.model.nets.load_state_dict(state["nets"])
    if trainer.model.averages:
        trainer.model.averages.load_state_dict(state["ema"])
    _load_samplers(trainer.model, state)
    for r in trainer.runners:
        r.optimizer.load_state_dict(state["optimizers"][r.plan.name])
        r.last.clear()
    if trainer.batches and state.get("batches"):
        trainer.batches.load_state_dict(state["batches"])
    _load_rng(trainer, state)
    for r in trainer.runners:
        if r.scaler is not None and (state.get("scalers") or {}).get(r.plan.name):
            r.scaler.load_state_dict(state["scalers"][r.plan.name])
    trainer.nonfinite.update({k: int(v) for k, v in (state.get("nonfinite") or {}).items()})
    trainer.health.load_state_dict(state.get("health") or {})
    trainer.checks.clear()


def _load_samplers(model: Any, state: dict[str, Any]) -> None:
    """The samplers' tensors (persistent chains) of a checkpoint, on the model's device."""
    for trace, tensors in (state.get("samplers") or {}).items():
        if trace in model.sampler_state:
            model.sampler_state[trace].clear()
            model.sampler_state[trace].update({k: v.to(model.device) for k, v in tensors.items()})


def _load_rng(trainer: Any, state: dict[str, Any]) -> None:
    world = trainer.world
    rng = state["rng"]
    ranks = state.get("rng_ranks")
    if world.active and ranks is not None and len(ranks) == world.size:
        rng = ranks[world.rank]
    torch.random.set_rng_state(rng["torch"])
    trainer.generator.set_state(state["rng"]["generator"])  # the data order is rank 0's on every rank
    if trainer.device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], trainer.device)
    if world.rank and rng is state["rng"]:  # saved by another number of processes
        torch.manual_seed(world.noise_seed(trainer.program.train.seed + trainer.step_count))


def snapshot(trainer: Any) -> dict[str, Any]:
    """A copy of the state, in memory: what `rollback` returns to."""
    return copy.deepcopy(trainer_state(trainer))


def rollback(trainer: Any, snap: dict[str, Any]) -> None:
    """Networks, optimizers and the step count go back to `snap`; the data order and the random
    streams go on, so the steps replayed see other batches and other noise (the same ones would
    only lead to the same non-finite loss)."""
    trainer.step_count = int(snap["step"])
    trainer.model.nets.load_state_dict(snap["nets"])  # copied into the parameters
    if trainer.model.averages:
        trainer.model.averages.load_state_dict(snap["ema"])
    _load_samplers(trainer.model, copy.deepcopy(snap))
    optimizers = copy.deepcopy(snap["optimizers"])  # an optimizer keeps the tensors it loads
    for r in trainer.runners:
        r.optimizer.load_state_dict(optimizers[r.plan.name])
        r.last.clear()
    trainer.checks.clear()
    trainer.nonfinite["rolled_back"] += 1
