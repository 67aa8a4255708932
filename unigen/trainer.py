"""The trainer: runs a program's phases. It knows no family; every loss comes from terms."""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import UnigenError
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
            runner.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            runner.optimizer.step()

    def step(self) -> None:
        # The model is in training mode: set at construction and restored by `evaluate`.
        s = self.step_count
        for runner in self.runners:
            if s % runner.plan.every == 0:
                self.run_phase(runner)
        self.step_count += 1

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
        with torch.no_grad():
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(self.program.spec.train.seed + 12345)  # evaluation noise is fixed and does not disturb training's
            try:
                for entry in entries:
                    if wanted is not None and entry.name not in wanted:
                        continue
                    if wanted is None and not entry.obj.applies(self.model):
                        continue
                    out.update(entry.obj.compute(self.model))
            finally:
                torch.random.set_rng_state(gen_state)
        self.model.train()
        return out

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "nets": self.model.nets.state_dict(),
            "optimizers": {r.plan.name: r.optimizer.state_dict() for r in self.runners},
            "batches": self.batches.state_dict() if self.batches else {},
            "rng": {"torch": torch.random.get_rng_state(), "generator": self.generator.get_state()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step"])
        self.model.nets.load_state_dict(state["nets"])
        for r in self.runners:
            r.optimizer.load_state_dict(state["optimizers"][r.plan.name])
        if self.batches and state.get("batches"):
            self.batches.load_state_dict(state["batches"])
        torch.random.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["generator"])


def check_finite(trainer: Trainer) -> None:
    for r in trainer.runners:
        for label, value in r.last.items():
            if not math.isfinite(float(value)):
                raise UnigenError.one("R001", f"phase `{r.plan.name}`, term `{label}` became {float(value)} at step {trainer.step_count}.", ("phases",), "lower the learning rate or check the data for NaNs.", exit_code=1)


class Progress:
    """A one-line progress bar on a terminal; plain log lines otherwise."""

    def __init__(self, total: int, log: Callable[[str], None], stream: Any = None, quiet: bool = False) -> None:
        self.total, self.log, self.quiet = total, log, quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.start = time.perf_counter()

    def update(self, step: int, losses: dict[str, float]) -> None:
        rate = step / max(time.perf_counter() - self.start, 1e-9)
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
