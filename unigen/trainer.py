"""The trainer: runs a program's phases. It knows no family; every loss comes from terms."""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from .program import PhasePlan, Program
from .registry import Registry
from .runtime import Batches, Model, StepContext, pick_device


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for training
        pass
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


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


@dataclass
class PhaseRunner:
    plan: PhasePlan
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    last: dict[str, torch.Tensor] = field(default_factory=dict)  # term label -> last value (detached)


class Trainer:
    """Builds the model and one optimizer per phase; `step()` runs one training step."""

    def __init__(self, program: Program, registry: Registry, device: str | None = None) -> None:
        self.program, self.registry = program, registry
        spec = program.spec
        self.device = pick_device(device or spec.train.device)
        self.generator = seed_everything(spec.train.seed)
        self.model = Model(program, registry, self.device)
        self.batch_size = spec.train.batch_size
        train = {v: self.model.dataset.train[f] for v, f in self.model.fields.items()}
        self.batches = Batches(train, self.batch_size, self.generator) if train else None
        self.all_params = [p for n, net in self.model.nets.items() if spec.networks[n].trainable for p in net.parameters()]
        for n, net in self.model.nets.items():
            if not spec.networks[n].trainable:
                net.requires_grad_(False)
        self.runners: list[PhaseRunner] = []
        for plan in program.phases:
            params = [p for n in plan.update for p in self.model.nets[n].parameters()]
            make = registry.get("optimizers", plan.optim)
            self.runners.append(PhaseRunner(plan, make(params, **plan.optim_options), params))
        self.step_count = 0
        self._frozen_for: PhaseRunner | None = None
        # Non-finite losses. Where reading a loss costs nothing (the CPU) or the policy must know
        # before `optimizer.step` (`skip`), each phase loss is read at once; elsewhere the
        # finiteness flags of a step's phases are read together, once, at the end of the step.
        self.on_nonfinite = spec.train.on_nonfinite
        self.check_each_phase = self.device.type == "cpu" or self.on_nonfinite == "skip"
        self._flags: list[tuple[PhaseRunner, torch.Tensor]] = []
        self.nonfinite: dict[str, int] = {"skipped": 0, "rolled_back": 0}
        self.on_skip: Callable[[dict[str, Any]], None] | None = None  # told of each skipped update
        self.model.train()

    # ---------------------------------------------------------------- stepping
    def _freeze_for(self, runner: PhaseRunner) -> None:
        if self._frozen_for is runner:
            return
        self._frozen_for = runner
        # Freezing (requires_grad=False) what a phase does not update keeps autograd from
        # recording the frozen networks at all: the generator's forward in a
        # discriminator phase costs no backward, as with `.detach()` in a hand-written loop.
        for p in self.all_params:
            p.requires_grad_(False)
        for p in runner.params:
            p.requires_grad_(True)

    def run_phase(self, runner: PhaseRunner) -> None:
        plan = runner.plan
        self._freeze_for(runner)
        for _ in range(plan.repeats):
            batch = self.batches.next() if plan.needs_data and self.batches is not None else None
            n = len(next(iter(batch.values()))) if batch else self.batch_size
            ctx = StepContext(self.model, batch, n)
            loss: torch.Tensor | None = None
            for t in plan.terms:
                value = t.bound.loss(ctx)
                runner.last[t.label] = value.detach()
                if t.weight != 1:  # x * 1.0 is x exactly; skipping it saves an op and its backward
                    value = value * t.weight
                loss = value if loss is None else loss + value
            assert loss is not None, "validation guarantees every phase has terms"
            if self.check_each_phase:
                if not math.isfinite(loss.item()):
                    self._nonfinite(runner, loss)  # raises NonFiniteLoss unless the policy is `skip`
                    continue  # skipped: no backward, no optimizer step
            else:
                self._flags.append((runner, torch.isfinite(loss.detach())))
            runner.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            runner.optimizer.step()

    def step(self) -> None:
        """One training step: every phase due at this step, in order. Raises `NonFiniteLoss`
        when a phase loss is not finite (unless `train.on_nonfinite` is `skip`)."""
        # The model is in training mode: set at construction and restored by `evaluate`.
        s = self.step_count
        for runner in self.runners:
            if s % runner.plan.every == 0:
                self.run_phase(runner)
        if self._flags:
            flags, self._flags = self._flags, []
            if not bool(torch.stack([f for _, f in flags]).all()):  # the step's one host sync
                runner = next(r for r, f in flags if not bool(f))
                raise NonFiniteLoss(self._event(runner, None))
        self.step_count += 1

    def _event(self, runner: PhaseRunner, loss: torch.Tensor | None) -> dict[str, Any]:
        terms = [(label, float(v)) for label, v in runner.last.items() if not math.isfinite(float(v))]
        return {"step": self.step_count + 1, "phase": runner.plan.name, "terms": terms, "loss": None if loss is None else float(loss.detach())}

    def _nonfinite(self, runner: PhaseRunner, loss: torch.Tensor) -> None:
        event = self._event(runner, loss)
        if self.on_nonfinite != "skip":
            raise NonFiniteLoss(event)
        self.nonfinite["skipped"] += 1
        if self.on_skip is not None:
            self.on_skip(event)

    def losses(self) -> dict[str, float]:
        out = {}
        for r in self.runners:
            for label, value in r.last.items():
                out[f"{r.plan.name}/{label}"] = float(value)
        return out

    # ------------------------------------------------------------- evaluation
    def evaluate(self, names: list[str] | None = None) -> dict[str, float]:
        self.model.eval()
        out: dict[str, float] = {}
        wanted = names if names is not None else self.program.spec.metrics
        entries = self.registry.all("metrics")
        with torch.no_grad(), self.fork_rng(self.program.spec.train.seed + 12345):
            # Evaluation noise is fixed and does not disturb training's random streams.
            for entry in entries:
                if wanted is not None and entry.name not in wanted:
                    continue
                if wanted is None and not entry.obj.applies(self.model):
                    continue
                out.update(entry.obj.compute(self.model))
        self.model.train()
        return out

    @contextmanager
    def fork_rng(self, seed: int) -> Iterator[None]:
        """Run a block with its own seeded random streams, leaving training's (CPU and, on a
        GPU, the device's) exactly as they were: evaluation and samples change no result."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit: networks, optimizers, the
        data order and position, the random streams, and the counts of non-finite losses.
        The tensors are the live ones; `snapshot()` copies them."""
        rng: dict[str, Any] = {"torch": torch.random.get_rng_state(), "generator": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step_count,
            "nets": self.model.nets.state_dict(),
            "optimizers": {r.plan.name: r.optimizer.state_dict() for r in self.runners},
            "batches": self.batches.state_dict() if self.batches else {},
            "rng": rng,
            "nonfinite": dict(self.nonfinite),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step"])
        self.model.nets.load_state_dict(state["nets"])
        for r in self.runners:
            r.optimizer.load_state_dict(state["optimizers"][r.plan.name])
            r.last.clear()
        if self.batches and state.get("batches"):
            self.batches.load_state_dict(state["batches"])
        torch.random.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["generator"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.nonfinite.update({k: int(v) for k, v in (state.get("nonfinite") or {}).items()})
        self._flags = []

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state, in memory: what `rollback` returns to."""
        return copy.deepcopy(self.state_dict())

    def rollback(self, snapshot: dict[str, Any]) -> None:
        """Networks, optimizers and the step count go back to `snapshot`; the data order and the
        random streams go on, so the steps replayed see other batches and other noise (the same
        ones would only lead to the same non-finite loss)."""
        self.step_count = int(snapshot["step"])
        self.model.nets.load_state_dict(snapshot["nets"])  # copied into the parameters
        optimizers = copy.deepcopy(snapshot["optimizers"])  # an optimizer keeps the tensors it loads
        for r in self.runners:
            r.optimizer.load_state_dict(optimizers[r.plan.name])
            r.last.clear()
        self._flags = []
        self.nonfinite["rolled_back"] += 1


class Progress:
    """A one-line progress bar on a terminal; plain log lines otherwise."""

    def __init__(self, total: int, log: Callable[[str], None], stream: Any = None, quiet: bool = False, first: int = 0) -> None:
        self.total, self.log, self.quiet, self.first = total, log, quiet, first
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.start = time.perf_counter()

    def update(self, step: int, losses: dict[str, float]) -> None:
        rate = (step - self.first) / max(time.perf_counter() - self.start, 1e-9)
        text = f"step {step}/{self.total}  " + "  ".join(f"{k}={v:.4g}" for k, v in losses.items()) + f"  {rate:.1f} it/s"
        if self.tty:
            width = 30
            done = int(width * step / max(self.total, 1))
            self.stream.write("\r[" + "#" * done + "." * (width - done) + "] " + text[:150])
        elif not self.quiet:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.log(text)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
