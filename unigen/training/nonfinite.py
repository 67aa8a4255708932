"""Non-finite phase losses: where they are read, and what a policy does about them.

Where reading a loss costs nothing (one process on the CPU) or the policy must know before
`optimizer.step` (`skip`), each phase loss is read at once (agreed between processes). Several
processes read the finiteness flags of a step's phases together at its end (one allreduce). One
process on a GPU keeps them on the device and reads them at the steps where a good state may be
taken (logged steps, checkpoints, the last step) or when `check_pending` is called: no host
synchronisation inside a step. `raise` and `rollback` return to the last good state either way,
so reading late changes nothing but the steps spent past a bad one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from unigen.training.distributed import World

PARAMS_FLAG = "<parameters finite>"  # a kept flag's entry for the parameters after the update


class NonFiniteLoss(Exception):
    """A phase's loss was NaN or infinite; `event` says where (step, phase, terms, value)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__(describe_nonfinite(event))
        self.event = event


def describe_nonfinite(event: dict[str, Any]) -> str:
    terms = event.get("terms") or []
    nets = event.get("networks") or []
    if nets:  # a finite loss whose update broke the weights (a learning rate far too large, say)
        return f"phase `{event['phase']}`: its update made the parameters of {', '.join(f'`{n}`' for n in nets)} non-finite at step {event['step']} (the loss was finite)"
    if terms:
        what = ", ".join(f"term `{label}` is {value}" for label, value in terms)
    else:
        what = f"the weighted sum of its terms is {event.get('loss')} (every term is finite)"
    return f"phase `{event['phase']}`: {what} at step {event['step']}"


def nonfinite_terms(last: dict[str, torch.Tensor]) -> list[tuple[str, float]]:
    return [(label, float(v)) for label, v in last.items() if not math.isfinite(float(v))]


class FinitenessChecks:
    """Reads phase losses' finiteness where it costs least (see the module's docstring) and
    applies `train.on_nonfinite`: `skip` counts and reports a skipped update, the others raise
    `NonFiniteLoss`."""

    def __init__(self, policy: str, world: World, device: torch.device, check_at: list[int], final: int) -> None:
        self.policy, self.world = policy, world
        self.each_phase = (device.type == "cpu" and not world.active) or policy == "skip"
        self.deferred = not self.each_phase and not world.active
        self.check_at, self.final = check_at, final
        self.flags: list[tuple[Any, torch.Tensor]] = []  # (runner, flag) of this step, several processes
        self.pending: list[tuple[int, Any, torch.Tensor, dict[str, torch.Tensor]]] = []  # kept on the device
        self.counts: dict[str, int] = {"skipped": 0, "rolled_back": 0}
        self.on_skip: Callable[[dict[str, Any]], None] | None = None  # told of each skipped update

    def after_loss(self, runner: Any, loss: torch.Tensor, step: int) -> bool:
        """Called with a phase's loss before its backward pass; False: skip the update."""
        if self.each_phase:
            finite = math.isfinite(loss.item()) if not self.world.active else bool(self.world.all_true(torch.isfinite(loss.detach())))
            if not finite:
                event = self.event(runner, loss, step)
                if self.policy != "skip":
                    raise NonFiniteLoss(event)
                self.counts["skipped"] += 1
                if self.on_skip is not None:
                    self.on_skip(event)
                return False
        elif self.deferred:
            self.pending.append((step + 1, runner, torch.isfinite(loss.detach()), dict(runner.last)))
        else:
            self.flags.append((runner, torch.isfinite(loss.detach())))
        return True

    def before_update(self, runner: Any) -> list[torch.Tensor] | None:
        """Under `skip`, the phase's parameters as they are before its update (to restore them
        if the update makes them non-finite); None otherwise."""
        if self.policy != "skip":
            return None
        with torch.no_grad():
            return [p.detach().clone() for p in runner.params]

    def after_update(self, runner: Any, step: int, saved: list[torch.Tensor] | None) -> None:
        """Whether the update left the phase's parameters finite: read as the losses are (at once
        on one CPU process or under `skip`, else kept for the next read). Under `skip` a bad update
        is undone (the parameters restored; the optimizer's moments keep the step); the other
        policies raise `NonFiniteLoss`, so that no non-finite weights become a good state."""
        if not runner.params:
            return
        flag = _all_finite(runner.params)
        if self.each_phase:
            finite = bool(flag) if not self.world.active else bool(self.world.all_true(flag))
            if finite:
                return
            event = self.event(runner, None, step, networks=runner.bad_networks())
            if saved is None:
                raise NonFiniteLoss(event)
            with torch.no_grad():
                torch._foreach_copy_(runner.params, saved)
            self.counts["skipped"] += 1
            if self.on_skip is not None:
                self.on_skip(event)
        elif self.deferred:  # joined to the flag of this update's loss: one flag per update, read later
            at, same, loss_ok, last = self.pending[-1]
            assert same is runner and at == step + 1, "after_loss kept this update's loss flag"
            self.pending[-1] = (at, runner, loss_ok & flag, {**last, PARAMS_FLAG: flag})
        else:
            self.flags.append((runner, flag))

    def end_of_step(self, step: int) -> None:
        """Several processes: the step's flags, read together (the step's one host sync)."""
        if not self.flags:
            return
        flags, self.flags = self.flags, []
        ok = self.world.all_true(torch.stack([f for _, f in flags]))
        if not bool(ok.all()):
            runner = next(r for (r, _), f in zip(flags, ok.tolist()) if not f)
            raise NonFiniteLoss(self.event(runner, None, step))

    def due(self, step: int) -> bool:
        """Whether `step` (just finished) is one where a good state may be taken."""
        return step == self.final or any(step % k == 0 for k in self.check_at)

    def check_pending(self) -> None:
        """Read the flags kept on the device since the last read (one host synchronisation);
        raise `NonFiniteLoss` for the first phase loss that was not finite."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        ok = torch.stack([f for _, _, f, _ in pending]).tolist()
        for (step, runner, _, last), fine in zip(pending, ok):
            if not fine:
                params_ok = last.pop(PARAMS_FLAG, None)
                terms = nonfinite_terms(last)
                if not terms and params_ok is not None and not bool(params_ok):  # a finite loss, broken weights
                    raise NonFiniteLoss({"step": step, "phase": runner.plan.name, "terms": [], "loss": None, "networks": runner.bad_networks()})
                raise NonFiniteLoss({"step": step, "phase": runner.plan.name, "terms": terms, "loss": None})

    def clear(self) -> None:
        self.flags, self.pending = [], []

    @staticmethod
    def event(runner: Any, loss: torch.Tensor | None, step: int, networks: list[str] | None = None) -> dict[str, Any]:
        terms = [] if networks else nonfinite_terms(runner.last)
        return {"step": step + 1, "phase": runner.plan.name, "terms": terms, "loss": None if loss is None else float(loss.detach()), "networks": networks or []}


def _all_finite(params: list[torch.Tensor]) -> torch.Tensor:
    """One flag on the parameters' device: every parameter finite (a NaN or an infinity makes
    its norm so)."""
    with torch.no_grad():
        tensors = [p.detach() for p in params if p.numel()]  # an empty tensor has no infinity norm
        return torch.isfinite(torch.stack(torch._foreach_norm(tensors, ord=math.inf))).all() if tensors else torch.tensor(True)
