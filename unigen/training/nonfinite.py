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


class NonFiniteLoss(Exception):
    """A phase's loss was NaN or infinite; `event` says where (step, phase, terms, value)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__(describe_nonfinite(event))
        self.event = event


def describe_nonfinite(event: dict[str, Any]) -> str:
    terms = event.get("terms") or []
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
                raise NonFiniteLoss({"step": step, "phase": runner.plan.name, "terms": nonfinite_terms(last), "loss": None})

    def clear(self) -> None:
        self.flags, self.pending = [], []

    @staticmethod
    def event(runner: Any, loss: torch.Tensor | None, step: int) -> dict[str, Any]:
        return {"step": step + 1, "phase": runner.plan.name, "terms": nonfinite_terms(runner.last), "loss": None if loss is None else float(loss.detach())}
