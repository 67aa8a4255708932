"""The trainer: runs a program's phases. It knows no family; every loss comes from terms."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from unigen.api.registry import Registry
from unigen.compile.program import PhasePlan, Program
from unigen.errors import UnigenError
from unigen.train import distributed
from unigen.train.data import Batches
from unigen.train.distributed import World
from unigen.train.execution import Execution
from unigen.train.model import Model, StepContext
from unigen.train.networks import pick_device

# Training health: a symptom is reported once it has lasted this many logged steps in a row.
HEALTH_PATIENCE = 3


# Generated samples whose spread across a batch falls below this fraction of the data's have
# lost their diversity (a generator that maps every noise to nearly one point).
DIVERSITY_FRACTION = 0.02


DIVERSITY_SAMPLES = 256


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
    scaler: Any = None  # fp16: the phase's gradient scaler
    index: int = 0  # its place in the program


class Trainer:
    """Builds the model and one optimizer per phase; `step()` runs one training step."""

    def __init__(self, program: Program, registry: Registry, device: str | None = None, world: World | None = None) -> None:
        self.program, self.registry = program, registry
        spec = program.spec
        self.world = world = world or distributed.SINGLE
        self.device = distributed.device_for(world, pick_device(device or spec.train.device))
        # Each process computes its share of the global batch (the whole of it when alone).
        self.batch_size = distributed.shard_size(world, spec.train.batch_size)
        self.generator = seed_everything(spec.train.seed)
        self.model = Model(program, registry, self.device)
        if world.rank:  # networks are built alike on every rank; noise differs from here on
            torch.manual_seed(world.noise_seed(spec.train.seed))
        train = {k: self.model.dataset.train[f] for k, f in self.model.batch_fields.items()}
        self.batches = Batches(train, spec.train.batch_size, self.generator, (world.rank, world.size)) if train else None
        self.all_params = [p for n, net in self.model.nets.items() if spec.networks[n].trainable for p in net.parameters()]
        for n, net in self.model.nets.items():
            if not spec.networks[n].trainable:
                net.requires_grad_(False)
        self.execution = Execution(self.model, program.phases, spec.train, world, self.device)
        self.runners: list[PhaseRunner] = []
        for i, plan in enumerate(program.phases):
            params = [p for n in plan.update for p in self.model.nets[n].parameters()]
            make = registry.get("optimizers", plan.optim)
            try:
                optimizer = make(params, **plan.optim_options)
            except Exception as exc:  # validation builds each optimizer once; this is the backstop
                raise UnigenError.one("G016", f"the optimizer `{plan.optim}` of phase `{plan.name}` cannot be built: {type(exc).__name__}: {exc}.", ("phases", i, "optim"), "fix its options.") from exc
            self.runners.append(PhaseRunner(plan, optimizer, params, scaler=self.execution.scaler(), index=i))
        self.step_count = 0
        self._frozen_for: PhaseRunner | None = None
        # Non-finite losses. Where reading a loss costs nothing (one process on the CPU) or the
        # policy must know before `optimizer.step` (`skip`), each phase loss is read at once
        # (agreed between processes). Several processes read the finiteness flags of a step's
        # phases together at its end (one allreduce). One process on a GPU keeps them on the
        # device and reads them at the steps where a good state may be taken (logged steps,
        # checkpoints, the last step) or when `check_pending` is called: no host
        # synchronisation inside a step. `raise` and `rollback` return to the last good state
        # either way, so reading late changes nothing but the steps spent past a bad one.
        self.on_nonfinite = spec.train.on_nonfinite
        self.check_each_phase = (self.device.type == "cpu" and not world.active) or self.on_nonfinite == "skip"
        self.defer_checks = not self.check_each_phase and not world.active
        self._flags: list[tuple[PhaseRunner, torch.Tensor]] = []
        self._pending: list[tuple[int, PhaseRunner, torch.Tensor, dict[str, torch.Tensor]]] = []
        self._check_at = [spec.train.log_every] + ([spec.train.checkpoint_every] if spec.train.checkpoint_every else [])
        self._final = spec.train.steps
        self.nonfinite: dict[str, int] = {"skipped": 0, "rolled_back": 0}
        self.on_skip: Callable[[dict[str, Any]], None] | None = None  # told of each skipped update
        # Health warnings: symptom key -> logged steps in a row it was seen; and those reported.
        self._streaks: dict[str, int] = {}
        self.health_warnings: list[dict[str, Any]] = []
        self.metric_errors: dict[str, str] = {}  # metric name -> what went wrong (reported, not retried)
        self._data_spread: float | None = None
        self.model.train()

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
        if self.program.spec.train.compile:
            return
        for p in self.all_params:
            p.requires_grad_(False)
        for p in runner.params:
            p.requires_grad_(True)

    def run_phase(self, runner: PhaseRunner) -> None:
        self.execution.enter(runner.index)
        try:
            self._run_phase(runner)
        finally:
            self.execution.leave()

    def _run_phase(self, runner: PhaseRunner) -> None:
        plan = runner.plan
        self._freeze_for(runner)
        for _ in range(plan.repeats):
            batch = self.batches.next() if plan.needs_data and self.batches is not None else None
            n = len(next(iter(batch.values()))) if batch else self.batch_size
            ctx = StepContext(self.model, batch, n)
            loss: torch.Tensor | None = None
            for t in plan.terms:
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
                runner.last[t.label] = value.detach()
                if t.weight != 1:  # x * 1.0 is x exactly; skipping it saves an op and its backward
                    value = value * t.weight
                loss = value if loss is None else loss + value
            assert loss is not None, "validation guarantees every phase has terms"
            if self.check_each_phase:
                finite = math.isfinite(loss.item()) if not self.world.active else bool(self.world.all_true(torch.isfinite(loss.detach())))
                if not finite:
                    self._nonfinite(runner, loss)  # raises NonFiniteLoss unless the policy is `skip`
                    continue  # skipped: no backward, no optimizer step
            elif self.defer_checks:
                self._pending.append((self.step_count + 1, runner, torch.isfinite(loss.detach()), dict(runner.last)))
            else:
                self._flags.append((runner, torch.isfinite(loss.detach())))
            runner.optimizer.zero_grad(set_to_none=True)
            try:
                if runner.scaler is not None:
                    runner.scaler.scale(loss).backward()
                    runner.scaler.step(runner.optimizer)
                    runner.scaler.update()
                else:
                    loss.backward()
                    runner.optimizer.step()
                if self.model.averages:
                    self.model.averages.update(runner.plan.update)
            except (UnigenError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise self._failed(runner, None, ctx, exc) from exc

    def _failed(self, runner: PhaseRunner, term: Any, ctx: StepContext, exc: Exception) -> UnigenError:
        """An exception inside a training step, as R004 naming the phase, the term (None: the
        backward pass or the update) and the step, with the shapes of the values computed so far."""
        plan = runner.plan
        index = next(i for i, r in enumerate(self.runners) if r is runner)
        shapes = [f"{side}.{v} {list(t.shape)}" for side, trace in sorted(ctx._traces.items()) for v, t in trace.values.items()]
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ").rstrip(".")
        where = f"term `{term.label}`" if term is not None else "the backward pass or the update of its terms (" + ", ".join(t.label for t in plan.terms) + ")"
        traced = f" (values computed so far: {', '.join(shapes)})" if shapes else ""
        path = term.path if term is not None else ("phases", index)
        if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text:
            hint = "the step needs more memory than the device has: lower `train.batch_size`, or the sizes of the networks and variables."
        else:
            hint = "a bug in the term's plugin, or a case validation does not catch: report it with the spec; `UNIGEN_TRACEBACK=1` shows where it happened."
        return UnigenError.one(
            "R004",
            f"phase `{plan.name}`, {where} failed at step {self.step_count + 1}: {text}{traced}; expected the step to compute a loss.",
            path,
            hint,
            exit_code=1,
        )

    def step(self) -> None:
        """One training step: every phase due at this step, in order. Raises `NonFiniteLoss`
        when a phase loss is not finite (unless `train.on_nonfinite` is `skip`)."""
        # The model is in training mode: set at construction and restored by `evaluate`.
        s = self.step_count
        for runner in self.runners:
            if s % runner.plan.every == 0:
                self.run_phase(runner)
        self.execution.after_step()
        if self._flags:
            flags, self._flags = self._flags, []
            ok = self.world.all_true(torch.stack([f for _, f in flags]))
            if not bool(ok.all()):  # the step's one host sync
                runner = next(r for (r, _), f in zip(flags, ok.tolist()) if not f)
                raise NonFiniteLoss(self._event(runner, None))
        self.step_count += 1
        due = self.step_count == self._final or any(self.step_count % k == 0 for k in self._check_at)
        if due and self._pending:
            self.check_pending()
        if self.world.active and due:
            distributed.check_in_step(self.world, {n: self.model.nets[n] for n in self.execution.wrapped}, self.step_count)

    def check_pending(self) -> None:
        """Read the finiteness flags kept on the device since the last read (one host
        synchronisation); raise `NonFiniteLoss` for the first phase loss that was not finite."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        ok = torch.stack([f for _, _, f, _ in pending]).tolist()
        for (step, runner, _, last), fine in zip(pending, ok):
            if not fine:
                terms = [(label, float(v)) for label, v in last.items() if not math.isfinite(float(v))]
                raise NonFiniteLoss({"step": step, "phase": runner.plan.name, "terms": terms, "loss": None})

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

    # ------------------------------------------------------------------ health
    def check_health(self) -> list[dict[str, Any]]:
        """Called at logged steps: the symptoms seen now, and those that have now lasted
        `HEALTH_PATIENCE` logged steps in a row, each reported once (returned and recorded in
        `health_warnings`). Terms judge themselves through `Bound.health`; generated samples
        are judged by their spread across a batch against the data's."""
        seen: dict[str, str] = {}
        for r in self.runners:
            for t in r.plan.terms:
                health = getattr(t.bound, "health", None)
                if health is None or t.label not in r.last:
                    continue
                try:
                    text = health(r.last[t.label])
                except Exception as exc:  # a broken health check must not stop training
                    text = f"its health check failed: {type(exc).__name__}: {exc}"
                if text:
                    seen[f"{r.plan.name}/{t.label}"] = f"phase `{r.plan.name}`, term `{t.label}`: {text}"
        collapse = self.diversity()
        if collapse is not None:
            seen[f"diversity/{self.model.sampled_variable()}"] = collapse
        reported = {w["kind"] for w in self.health_warnings}
        new: list[dict[str, Any]] = []
        for key in list(self._streaks):
            if key not in seen:
                del self._streaks[key]
        for key, text in seen.items():
            self._streaks[key] = self._streaks.get(key, 0) + 1
            if self._streaks[key] >= HEALTH_PATIENCE and key not in reported:
                head, _, hint = text.partition(" Hint: ")
                message = head.rstrip().rstrip(".") + f" (at {HEALTH_PATIENCE} logged steps in a row, up to step {self.step_count})." + (f" Hint: {hint}" if hint else "")
                new.append({"kind": key, "step": self.step_count, "message": message})
        self.health_warnings.extend(new)
        return new

    def diversity(self) -> str | None:
        """A warning when generated samples of the sampled variable spread across a batch less
        than `DIVERSITY_FRACTION` of the data's spread (mean over coordinates of the std)."""
        model = self.model
        var = model.sampled_variable()
        data = model.dataset.train.get(model.fields.get(var, "")) if var is not None else None
        if var is None or data is None or len(data) < 2:
            return None
        if self._data_spread is None:
            self._data_spread = float(data[:10_000].float().flatten(1).std(0).mean())
        spread = self._data_spread
        if not math.isfinite(spread) or spread <= 0:
            return None
        test = model.dataset.test
        n = min(DIVERSITY_SAMPLES, min((len(v) for v in test.values()), default=DIVERSITY_SAMPLES))
        if n < 2:
            return None
        model.eval()
        try:
            with torch.no_grad(), self.fork_rng(self.program.spec.train.seed + 4242):
                x = model.generate(n, var, {k: v[:n] for k, v in test.items()})
        finally:
            model.train()
        got = float(x.detach().float().flatten(1).std(0).mean())
        if not math.isfinite(got) or got >= DIVERSITY_FRACTION * spread:
            return None
        return (
            f"generated samples of `{var}` have lost their diversity (mode collapse): their std across a batch of {n} is {got:.3g}, "
            f"{100 * got / spread:.2g}% of the data's {spread:.3g}; expected a spread near the data's. "
            "Hint: lower the learning rates, or strengthen what keeps the generator spread out (e.g. a gradient penalty on the discriminator)."
        )

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
        with torch.no_grad(), self.model.averages.swapped():
            for entry in entries:
                if wanted is not None and entry.name not in wanted:
                    continue
                if entry.name in self.metric_errors:
                    continue  # failed once: not tried again in this run
                try:
                    if wanted is None and (not getattr(entry.obj, "during_training", True) or not entry.obj.applies(self.model)):
                        continue
                    # Each metric draws the same fixed noise, whatever other metrics are installed
                    # or run before it, and training's random streams go on undisturbed.
                    with self.fork_rng(self.program.spec.train.seed + 12345):
                        out.update(entry.obj.compute(self.model))
                except UnigenError:
                    raise
                except Exception as exc:  # a plugin's bug must not cost the trained run
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    self.metric_errors[entry.name] = f"metric `{entry.name}` (plugin `{entry.plugin}`) failed: {type(exc).__name__}: {first}"
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
        extra: dict[str, Any] = {}
        if self.world.active:  # every rank's noise streams, so that each continues its own
            extra["rng_ranks"] = self.world.gather(rng)
        if any(r.scaler is not None for r in self.runners):
            extra["scalers"] = {r.plan.name: r.scaler.state_dict() for r in self.runners if r.scaler is not None}
        state = {
            **extra,
            "step": self.step_count,
            "nets": self.model.nets.state_dict(),
            "optimizers": {r.plan.name: r.optimizer.state_dict() for r in self.runners},
            "batches": self.batches.state_dict() if self.batches else {},
            "rng": rng,
            "nonfinite": dict(self.nonfinite),
            "health": {"streaks": dict(self._streaks), "warnings": [dict(w) for w in self.health_warnings]},
        }
        if self.model.averages:
            state["ema"] = self.model.averages.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step"])
        self.model.nets.load_state_dict(state["nets"])
        if self.model.averages:
            self.model.averages.load_state_dict(state["ema"])
        for r in self.runners:
            r.optimizer.load_state_dict(state["optimizers"][r.plan.name])
            r.last.clear()
        if self.batches and state.get("batches"):
            self.batches.load_state_dict(state["batches"])
        rng = state["rng"]
        ranks = state.get("rng_ranks")
        if self.world.active and ranks is not None and len(ranks) == self.world.size:
            rng = ranks[self.world.rank]
        torch.random.set_rng_state(rng["torch"])
        self.generator.set_state(state["rng"]["generator"])  # the data order is rank 0's on every rank
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if self.world.rank and rng is state["rng"]:  # saved by another number of processes
            torch.manual_seed(self.world.noise_seed(self.program.spec.train.seed + self.step_count))
        for r in self.runners:
            if r.scaler is not None and (state.get("scalers") or {}).get(r.plan.name):
                r.scaler.load_state_dict(state["scalers"][r.plan.name])
        self.nonfinite.update({k: int(v) for k, v in (state.get("nonfinite") or {}).items()})
        health = state.get("health") or {}
        self._streaks = {str(k): int(v) for k, v in (health.get("streaks") or {}).items()}
        self.health_warnings = [dict(w) for w in health.get("warnings") or []]
        self._flags = []
        self._pending = []

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state, in memory: what `rollback` returns to."""
        return copy.deepcopy(self.state_dict())

    def rollback(self, snapshot: dict[str, Any]) -> None:
        """Networks, optimizers and the step count go back to `snapshot`; the data order and the
        random streams go on, so the steps replayed see other batches and other noise (the same
        ones would only lead to the same non-finite loss)."""
        self.step_count = int(snapshot["step"])
        self.model.nets.load_state_dict(snapshot["nets"])  # copied into the parameters
        if self.model.averages:
            self.model.averages.load_state_dict(snapshot["ema"])
        optimizers = copy.deepcopy(snapshot["optimizers"])  # an optimizer keeps the tensors it loads
        for r in self.runners:
            r.optimizer.load_state_dict(optimizers[r.plan.name])
            r.last.clear()
        self._flags = []
        self._pending = []
        self.nonfinite["rolled_back"] += 1
