"""The trainer: runs a program's phases. It knows no family; every loss comes from terms."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from unigen.compiler.program import PhasePlan, Program
from unigen.errors import UnigenError, first_line
from unigen.training import distributed, state
from unigen.training.data import Batches
from unigen.training.distributed import World
from unigen.training.execution import Execution
from unigen.training.health import HEALTH_PATIENCE, Health
from unigen.training.metrics import compute_metrics
from unigen.training.model import Model, StepContext
from unigen.training.networks import pick_device
from unigen.training.nonfinite import FinitenessChecks, NonFiniteLoss, describe_nonfinite
from unigen.training.seeds import fork_rng, seed_everything

__all__ = ["HEALTH_PATIENCE", "NonFiniteLoss", "PhaseRunner", "Trainer", "describe_nonfinite", "seed_everything"]


WINDOW_FOLD = 1024  # values a term keeps per logging window before folding them into a sum


def _fold(runner: "PhaseRunner", label: str) -> None:
    """Fold a term's window values into its (sum, count) of finite values, on the device."""
    values = runner.window.pop(label, [])
    if not values:
        return
    stacked = torch.stack(values)
    finite = torch.isfinite(stacked)
    total = torch.where(finite, stacked, torch.zeros_like(stacked)).sum()
    count = finite.sum()
    if label in runner.folded:
        old_total, old_count = runner.folded[label]
        total, count = total + old_total, count + old_count
    runner.folded[label] = (total, count)


@dataclass
class PhaseRunner:
    plan: PhasePlan
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    last: dict[str, torch.Tensor] = field(default_factory=dict)  # term label -> last value (detached)
    # term label -> its values since the last logged step (detached, still on the device), and
    # what older ones fold into (sum, count of finite values) when the window grows long
    window: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    folded: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    scaler: Any = None  # fp16: the phase's gradient scaler
    index: int = 0  # its place in the program
    networks: dict[str, list[torch.nn.Parameter]] = field(default_factory=dict)  # the updated networks' parameters

    def bad_networks(self) -> list[str]:
        """The networks this phase updates whose parameters hold a NaN or an infinity."""
        with torch.no_grad():
            return [n for n, ps in self.networks.items() if any(not bool(torch.isfinite(p).all()) for p in ps)]


class Trainer:
    """Builds the model and one optimizer per phase; `step()` runs one training step."""

    def __init__(self, program: Program, device: str | None = None, world: World | None = None) -> None:
        self.program = program
        tr = program.train
        self.world = world = world or distributed.SINGLE
        self.device = distributed.device_for(world, pick_device(device or tr.device))
        # Each process computes its share of the global batch (the whole of it when alone).
        self.batch_size = distributed.shard_size(world, tr.batch_size)
        self.generator = seed_everything(tr.seed)
        self.model = Model(program, self.device)
        if world.rank:  # networks are built alike on every rank; noise differs from here on
            torch.manual_seed(world.noise_seed(tr.seed))
        train = {k: self.model.dataset.train[f] for k, f in self.model.batch_fields.items()}
        data = program.data
        drawn = set(getattr(data.kind, "fresh_fields", lambda options: ())(data.options))  # fields drawn afresh each batch
        fresh = {k: functools.partial(data.kind.per_batch, f, options=data.options) for k, f in self.model.batch_fields.items() if f in drawn}
        self.batches = Batches(train, tr.batch_size, self.generator, (world.rank, world.size), fresh) if train else None
        trainable = [n for n in self.model.nets if program.networks[n].trainable]
        self.all_params = [p for n in trainable for p in self.model.nets[n].parameters()]
        for n, net in self.model.nets.items():
            if n not in trainable:
                net.requires_grad_(False)
        self.execution = Execution(self.model, program.phases, tr, world, self.device)
        self.runners = [self._runner(i, plan) for i, plan in enumerate(program.phases)]
        self.step_count = 0
        self._frozen_for: PhaseRunner | None = None
        self.checks = FinitenessChecks(tr.on_nonfinite, world, self.device, [tr.log_every] + ([tr.checkpoint_every] if tr.checkpoint_every else []), tr.steps)
        self.health = Health(self.runners, self.model, tr.seed)
        self.metric_errors: dict[str, str] = {}  # metric name -> what went wrong (reported, not retried)
        self.model.train()

    def _runner(self, index: int, plan: PhasePlan) -> PhaseRunner:
        params = [p for n in plan.update for p in self.model.nets[n].parameters()]
        try:
            optimizer = plan.make_optimizer(params, **plan.optim_options)  # type: ignore[misc]
        except Exception as exc:  # validation builds each optimizer once; this is the backstop
            raise UnigenError.one("G016", f"the optimizer `{plan.optim}` of phase `{plan.name}` cannot be built: {type(exc).__name__}: {exc}.", ("phases", index, "optim"), "fix its options.") from exc
        networks = {n: list(self.model.nets[n].parameters()) for n in plan.update}
        return PhaseRunner(plan, optimizer, params, scaler=self.execution.scaler(), index=index, networks=networks)

    # ------------------------------------------------------------- bookkeeping
    @property
    def nonfinite(self) -> dict[str, int]:
        """Counts of skipped and rolled-back updates."""
        return self.checks.counts

    @property
    def health_warnings(self) -> list[dict[str, Any]]:
        return self.health.warnings

    @property
    def on_skip(self) -> Any:
        return self.checks.on_skip

    @on_skip.setter
    def on_skip(self, fn: Any) -> None:
        self.checks.on_skip = fn

    # ---------------------------------------------------------------- stepping
    def _freeze_for(self, runner: PhaseRunner) -> None:
        if self._frozen_for is runner:
            return
        self._frozen_for = runner
        # Freezing (requires_grad=False) what a phase does not update keeps autograd from
        # recording the frozen networks at all: the generator's forward in a
        # discriminator phase costs no backward, as with `.detach()` in a hand-written loop.
        # Compiled networks are not frozen: a compiled graph may be reused after its parameters'
        # requires_grad changed (seen with torch 2.11 on CUDA: a generator phase lost its
        # gradients), so they keep requiring grad, at the cost of gradients that the next
        # phase's `zero_grad` throws away. No phase ever steps another phase's parameters.
        if self.program.train.compile:
            return
        for p in self.all_params:
            p.requires_grad_(False)
        for p in runner.params:
            p.requires_grad_(True)

    def run_phase(self, runner: PhaseRunner) -> None:
        self.execution.enter(runner.index)
        try:
            self._freeze_for(runner)
            for _ in range(runner.plan.repeats):
                self._update(runner)
        finally:
            self.execution.leave()

    def _update(self, runner: PhaseRunner) -> None:
        """One update of a phase: a batch, its loss, the backward pass and the optimizer's step."""
        batch = self.batches.next() if runner.plan.needs_data and self.batches is not None else None
        n = len(next(iter(batch.values()))) if batch else self.batch_size
        ctx = StepContext(self.model, batch, n)
        loss = self._loss(runner, ctx)
        if not self.checks.after_loss(runner, loss, self.step_count):
            return  # skipped: no backward, no optimizer step
        runner.optimizer.zero_grad(set_to_none=True)
        saved = self.checks.before_update(runner)
        try:
            if runner.scaler is not None:
                runner.scaler.scale(loss).backward()
                runner.scaler.step(runner.optimizer)
                runner.scaler.update()
            else:
                loss.backward()
                runner.optimizer.step()
        except (UnigenError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise self._failed(runner, None, ctx, exc) from exc
        self.checks.after_update(runner, self.step_count, saved)  # a finite loss may still break the weights
        if self.model.averages:
            self.model.averages.update(runner.plan.update)

    def _loss(self, runner: PhaseRunner, ctx: StepContext) -> torch.Tensor:
        """The weighted sum of the phase's terms; each term's value is kept in `runner.last`."""
        loss: torch.Tensor | None = None
        for t in runner.plan.terms:
            try:
                with self.execution.autocast():
                    value = t.bound.loss(ctx)
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    got = f"a tensor of shape {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
                    raise TypeError(f"the term returned {got}; expected a tensor holding one number")
            except (UnigenError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise self._failed(runner, t, ctx, exc) from exc
            if value.dim():
                value = value.reshape(())
            if value.dtype != torch.float32 and self.execution.dtype is not None:
                value = value.float()  # losses are summed and reported in full precision
            runner.last[t.label] = kept = value.detach()
            values = runner.window.setdefault(t.label, [])
            values.append(kept)
            if len(values) >= WINDOW_FOLD:
                _fold(runner, t.label)
            if t.weight != 1:  # x * 1.0 is x exactly; skipping it saves an op and its backward
                value = value * t.weight
            loss = value if loss is None else loss + value
        assert loss is not None, "validation guarantees every phase has terms"
        return loss

    def _failed(self, runner: PhaseRunner, term: Any, ctx: StepContext, exc: Exception) -> UnigenError:
        """An exception inside a training step, as R004 naming the phase, the term (None: the
        backward pass or the update) and the step, with the shapes of the values computed so far."""
        plan = runner.plan
        shapes = [f"{side}.{v} {list(t.shape)}" for side, trace in sorted(ctx._traces.items()) for v, t in trace.values.items()]
        text = f"{type(exc).__name__}: {first_line(exc)[:300]}".rstrip(": ").rstrip(".")
        where = f"term `{term.label}`" if term is not None else "the backward pass or the update of its terms (" + ", ".join(t.label for t in plan.terms) + ")"
        traced = f" (values computed so far: {', '.join(shapes)})" if shapes else ""
        path = term.path if term is not None else ("phases", runner.index)
        if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text:
            hint = "the step needs more memory than the device has: lower `train.batch_size`, or the sizes of the networks and variables."
        else:
            hint = "a bug in the term's plugin, or a case validation does not catch: report it with the spec; `UNIGEN_TRACEBACK=1` shows where it happened."
        return UnigenError.one("R004", f"phase `{plan.name}`, {where} failed at step {self.step_count + 1}: {text}{traced}; expected the step to compute a loss.", path, hint, exit_code=1)

    def step(self) -> None:
        """One training step: every phase due at this step, in order. Raises `NonFiniteLoss`
        when a phase loss is not finite (unless `train.on_nonfinite` is `skip`)."""
        # The model is in training mode: set at construction and restored by `evaluate`.
        s = self.step_count
        for runner in self.runners:
            if s % runner.plan.every == 0:
                self.run_phase(runner)
        self.execution.after_step()
        self.checks.end_of_step(s)
        self.step_count += 1
        due = self.checks.due(self.step_count)
        if due:
            self.checks.check_pending()
        if self.world.active and due:
            distributed.check_in_step(self.world, {n: self.model.nets[n] for n in self.execution.wrapped}, self.step_count)

    def check_pending(self) -> None:
        """Read the finiteness flags a GPU keeps on the device (before a checkpoint or samples)."""
        self.checks.check_pending()

    def check_health(self) -> list[dict[str, Any]]:
        """Called at logged steps: the symptoms that have now lasted `HEALTH_PATIENCE` logged
        steps in a row, each reported once (see `unigen.training.health`)."""
        return self.health.check(self.step_count)

    def losses(self) -> dict[str, float]:
        """Each term's mean over the steps since `reset_window` (its finite values: a skipped
        non-finite step does not count; the last value when none is finite), as `phase/term`."""
        out = {}
        for r in self.runners:
            for label, value in r.last.items():
                if r.window.get(label) or label in r.folded:
                    _fold(r, label)
                    total, count = r.folded[label]
                    out[f"{r.plan.name}/{label}"] = float(total / count) if int(count) else float(value)
                else:
                    out[f"{r.plan.name}/{label}"] = float(value)
        return out

    def reset_window(self) -> None:
        """Start the next logging window (called after each logged step)."""
        for r in self.runners:
            r.window.clear()
            r.folded.clear()

    def learning_rates(self) -> dict[str, float]:
        """Each phase's current learning rate (its optimizer's first parameter group), as `lr/phase`."""
        return {f"lr/{r.plan.name}": float(r.optimizer.param_groups[0]["lr"]) for r in self.runners if r.optimizer.param_groups}

    # ------------------------------------------------------------- evaluation
    def evaluate(self, names: list[str] | None = None, final: bool = False) -> dict[str, float]:
        """The spec's metrics (default: every registered one that applies and is quick enough
        for training; at the `final` evaluation, when none of those gives a value, the slow
        `fallback` ones that apply), on the averaged networks; a metric that fails is recorded
        in `metric_errors` and not tried again."""
        wanted = names if names is not None else self.program.metric_names
        results = self._compute(lambda m: (wanted is None or m.name in wanted) and (wanted is not None or m.during_training), applicable_only=wanted is None)
        if final and wanted is None and not results:
            results = self._compute(lambda m: m.fallback and not m.during_training, applicable_only=True)
        return results

    def _compute(self, keep: Callable[[Any], bool], applicable_only: bool) -> dict[str, float]:
        chosen = [(m.name, m.metric, f"metric `{m.name}` (plugin `{m.plugin}`)") for m in self.program.metrics if keep(m) and m.name not in self.metric_errors]
        self.model.eval()
        with self.model.averages.swapped():
            results = compute_metrics(self.model, chosen, self.program.train.seed, applicable_only=applicable_only)
        self.model.train()
        self.metric_errors.update(results.failed)
        return results.values

    def fork_rng(self, seed: int) -> AbstractContextManager[None]:
        """A block with its own seeded random streams (see `unigen.training.seeds.fork_rng`)."""
        return fork_rng(self.device, seed)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit (see `unigen.training.state`)."""
        return state.trainer_state(self)

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        state.load_trainer_state(self, saved)

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state, in memory: what `rollback` returns to."""
        return state.snapshot(self)

    def rollback(self, snapshot: dict[str, Any]) -> None:
        """Networks, optimizers and the step count go back to `snapshot` (see `unigen.training.state`)."""
        state.rollback(self, snapshot)
