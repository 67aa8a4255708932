"""A trainer's state: what a checkpoint holds, what a resumed run loads, and the in-memory
snapshot that `train.on_nonfinite: rollback` returns to."""

from __future__ import annotations

import copy
from typing import Any

import torch


def trainer_state(trainer: Any) -> dict[str, Any]:
    """Everything a resumed run needs to continue bit for bit: networks, optimizers, the data
    order and position, the random streams, the counts of non-finite losses and the last losses. The tensors
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
        # The last step's term values: a run resumed at its last step reports them (its final
        # row of metrics.csv, summary.json) as the run that was not stopped does.
        "losses": {r.plan.name: dict(r.last) for r in trainer.runners},
        # The logging window so far: a resumed run logs the same means as one not stopped.
        "loss_window": {r.plan.name: _window(r) for r in trainer.runners if r.window or r.folded},
    }
    if trainer.model.averages:
        out["ema"] = trainer.model.averages.state_dict()
    if any(trainer.model.sampler_state.values()):  # persistent chains continue where they were
        out["samplers"] = {trace: dict(state) for trace, state in trainer.model.sampler_state.items()}
    return out


def _window(runner: Any) -> dict[str, Any]:
    """A phase's logging window: each term's values since the last logged step, and its folded
    (sum, count) when the window grew long."""
    out: dict[str, Any] = {}
    for label in {*runner.window, *runner.folded}:
        values = runner.window.get(label) or []
        out[label] = {"values": torch.stack(values) if values else None, "folded": list(runner.folded[label]) if label in runner.folded else None}
    return out


def _load_window(runner: Any, saved: dict[str, Any]) -> None:
    runner.window.clear()
    runner.folded.clear()
    labels = {t.label for t in runner.plan.terms}
    for label, entry in saved.items():
        if label not in labels or not isinstance(entry, dict):
            continue
        if entry.get("values") is not None:
            runner.window[label] = list(torch.as_tensor(entry["values"]).unbind())
        if entry.get("folded") is not None:
            total, count = entry["folded"]
            runner.folded[label] = (torch.as_tensor(total), torch.as_tensor(count))


def load_trainer_state(trainer: Any, state: dict[str, Any]) -> None:
    """A checkpoint's state into the trainer. What does not fit its networks, optimizers or data
    (`check_optimizer_state`, `check_batches`) is a ValueError, before that part is loaded."""
    trainer.step_count = int(state["step"])
    trainer.model.nets.load_state_dict(state["nets"])
    if trainer.model.averages:
        trainer.model.averages.load_state_dict(state["ema"])
    _load_samplers(trainer.model, state)
    losses = state.get("losses") or {}
    for r in trainer.runners:
        check_optimizer_state(r.optimizer, state["optimizers"][r.plan.name], f"optimizers.{r.plan.name}")
        r.optimizer.load_state_dict(state["optimizers"][r.plan.name])
        r.last.clear()
        r.last.update({label: value for label, value in (losses.get(r.plan.name) or {}).items() if label in {t.label for t in r.plan.terms}})
        _load_window(r, (state.get("loss_window") or {}).get(r.plan.name) or {})
    if trainer.batches is not None:
        if not state.get("batches"):
            raise ValueError("it has no data order and position (`batches`), which every checkpoint of a model trained on data holds")
        check_batches(trainer.batches.n, state["batches"])
        trainer.batches.load_state_dict(state["batches"])
    _load_rng(trainer, state)
    for r in trainer.runners:
        if r.scaler is not None and (state.get("scalers") or {}).get(r.plan.name):
            r.scaler.load_state_dict(state["scalers"][r.plan.name])
    trainer.nonfinite.update({k: int(v) for k, v in (state.get("nonfinite") or {}).items()})
    trainer.health.load_state_dict(state.get("health") or {})
    trainer.checks.clear()


def check_batches(n: int, saved: dict[str, Any]) -> None:
    """A saved data order is a permutation's worth of row indices of these `n` rows (or empty,
    as before the first batch), and its position lies within it."""
    order, pos = saved.get("order"), saved.get("pos")
    if not isinstance(order, torch.Tensor) or order.dim() != 1 or order.dtype not in (torch.int64, torch.int32):
        raise ValueError("its data order (`batches.order`) is not a list of row indices")
    if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos <= n:
        raise ValueError(f"its data position (`batches.pos`) is {pos!r}; expected a whole number from 0 to {n}")
    if len(order) == 0:
        if pos != n:
            raise ValueError(f"its data order (`batches.order`) is empty but its position is {pos}; a run that has drawn no batch yet is at {n}")
    elif len(order) != n:
        raise ValueError(f"its data order (`batches.order`) has {len(order)} rows, but the data has {n}")
    elif int(order.min()) < 0 or int(order.max()) >= n:
        raise ValueError(f"its data order (`batches.order`) holds row {int(order.max()) if int(order.max()) >= n else int(order.min())}, outside the data's {n} rows")


def _kind(value: Any) -> Any:
    """The kind of an optimizer's setting, as a saved one must match the spec's optimizer."""
    if value is None or isinstance(value, bool):
        return "flag"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return ("sequence", tuple(_kind(v) for v in value))
    return type(value).__name__


def check_optimizer_state(optimizer: torch.optim.Optimizer, saved: Any, where: str) -> None:
    """A saved optimizer state fits `optimizer`: its groups hold the same parameters with
    settings of the same kinds (switches such as `capturable` the same; numbers such as `lr` may
    have moved with a schedule), and (for torch's own optimizers, whose per-parameter state has
    the parameter's shape) every parameter's state is tensors of its shape, alike within a group."""
    fresh = optimizer.state_dict()
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or not isinstance(saved.get("param_groups"), list) or len(saved["param_groups"]) != len(fresh["param_groups"]):
        raise ValueError(f"`{where}` is not the state of this spec's optimizer ({len(fresh['param_groups'])} parameter group(s))")
    shapes: dict[Any, torch.Size] = {}
    for i, (group, mine, live) in enumerate(zip(saved["param_groups"], fresh["param_groups"], optimizer.param_groups)):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) or group["params"] != mine["params"]:
            raise ValueError(f"`{where}.param_groups.{i}` does not hold this spec's parameters")
        for key in mine.keys() & group.keys() - {"params"}:
            ours, theirs = mine[key], group[key]
            if _kind(theirs) != _kind(ours) or (isinstance(ours, bool) and isinstance(theirs, bool) and ours != theirs):
                raise ValueError(f"`{where}.param_groups.{i}.{key}` is {theirs!r}; this spec's optimizer has {ours!r}")
        shapes.update({pid: p.shape for pid, p in zip(mine["params"], live["params"])})
    _check_param_state(saved["state"], shapes, saved["param_groups"], where, type(optimizer).__module__.startswith("torch.optim"))


def _check_param_state(state: dict[Any, Any], shapes: dict[Any, torch.Size], groups: list[dict[str, Any]], where: str, builtin: bool) -> None:
    for pid, entry in state.items():
        if pid not in shapes or not isinstance(entry, dict):
            raise ValueError(f"`{where}.state.{pid}` is no state of a parameter this optimizer updates")
        for key, value in entry.items():
            problem = _bad_param_value(key, value, shapes[pid], builtin)
            if problem:
                raise ValueError(f"`{where}.state.{pid}.{key}` {problem}")
    if builtin:  # torch's optimizers keep the same entries for every parameter of a group
        for i, group in enumerate(groups):
            kinds = {frozenset(state[pid]) for pid in group["params"] if pid in state}
            if len(kinds) > 1:
                raise ValueError(f"the parameters of `{where}.param_groups.{i}` hold different kinds of state ({' vs '.join(sorted(', '.join(sorted(map(str, k))) for k in kinds))})")


def _bad_param_value(key: Any, value: Any, shape: torch.Size, builtin: bool) -> str:
    """What is wrong with one entry of a parameter's optimizer state ("" when nothing). torch's
    optimizers keep tensors of the parameter's shape, and a step count (a number or a 0-d tensor)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(value, torch.Tensor):
        if builtin and value.dim() and value.shape != shape:
            return f"has shape {list(value.shape)}, but its parameter has {list(shape)}"
        if key == "step" and (value.numel() != 1 or float(value.reshape(-1)[0]) < 0):
            return "is not a count of at least 0"
        return ""
    if key == "step":
        return "" if number and value >= 0 else f"is {value!r}; expected a count of at least 0"
    if builtin or not (value is None or number):
        return f"is {value!r}; expected a tensor" + ("" if builtin else " or a number")
    return ""


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
