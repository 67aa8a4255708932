"""The training loop of a run: the trainer's steps, and around them what a run keeps.

At each logged step the loop writes a row of metrics.csv (the core's own file; trackers receive
the same rows), evaluates when an evaluation is due, keeps the best checkpoint, and reports
training health; it draws sample pictures and checkpoints on their schedules, applies the
non-finite policy (`rollback` to the last good state, `raise` after saving it), and stops
cleanly at a signal. Only the main process writes files.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from unigen.compiler.compiler import Compiled
from unigen.errors import UnigenError, exception_text, first_line
from unigen.runs.best import BestKeeper
from unigen.runs.checkpoints import checkpoint_name, save_checkpoint
from unigen.runs.metrics_log import MetricsLog
from unigen.runs.progress import Progress
from unigen.runs.resume import Resume
from unigen.runs.rundir import dump_yaml, env_info, spec_differences, write_run_file
from unigen.runs.samples import picture_count, save_samples
from unigen.runs.signals import StopSignals
from unigen.runs.trackers import RunStart, Trackers
from unigen.training import distributed
from unigen.training.nonfinite import NonFiniteLoss, describe_nonfinite
from unigen.training.seeds import SAMPLES_SEED_OFFSET
from unigen.training.trainer import Trainer

MAX_ROLLBACKS = 3  # rollbacks in a row to one good state before `rollback` gives up (R001)
SKIP_WARNINGS = 10  # skipped updates reported on stderr; later ones go to train.log only


@dataclass
class RunSetup:
    """What a run was started with: where it writes, what it trains, what it resumes."""

    run: Path
    log: logging.Logger
    compiled: Compiled
    trainer: Trainer
    plan: Resume | None
    identity: dict[str, Any]
    digest: str
    registry: Any
    quiet: bool
    resume_cmd: str
    trackers: Trackers


class TrainingLoop:
    def __init__(self, setup: RunSetup) -> None:
        self.s = setup
        self.trainer = setup.trainer
        self.program = setup.compiled.program
        self.tr = self.program.train
        self.writes = self.trainer.world.main
        self.reuse = setup.plan is not None and setup.plan.reuse
        self.resumed = setup.plan is not None and setup.plan.state is not None
        self.continues = self.reuse and self.resumed  # goes on in its own directory, keeping its files
        self.problems: list[str] = []  # failures after training that cost no trained state (R005)
        self.trackers = setup.trackers if self.writes else Trackers()  # only rank 0 reports
        self.trackers.warn = self.warn
        best = setup.plan.state.get("best") if self.resumed and setup.plan is not None and setup.plan.state is not None else None
        self.keeper = BestKeeper(self.tr.best.metric, self.tr.best.mode, self.warn, best) if self.tr.best else None
        self.sample_var = self.trainer.model.sampled_variable()
        self.fixed_batch = None
        if self.sample_var is not None and self.trainer.batches is not None:
            # Conditional models draw their conditioning values from one fixed test batch.
            self.fixed_batch = {k: v[:64] for k, v in self.trainer.model.dataset.test.items()}
        self.metrics: MetricsLog | None = None
        self.window: dict[str, float] = {}
        self.start = time.perf_counter()
        self.first_step = self.trainer.step_count

    # ------------------------------------------------------------- reporting
    def warn(self, text: str) -> None:
        if self.writes:
            print(f"warning: {text}", file=sys.stderr)
        self.s.log.warning("warning: %s", text)

    def on_skip(self, event: dict[str, Any]) -> None:
        n = self.trainer.nonfinite["skipped"]
        text = f"{describe_nonfinite(event)}; its update is skipped (train.on_nonfinite: skip)."
        self.s.log.warning("warning: %s", text)
        if n <= SKIP_WARNINGS and self.writes:
            print(f"warning: {text}" + (" Further ones go to train.log only." if n == SKIP_WARNINGS else ""), file=sys.stderr)

    def record(self, row: dict[str, Any]) -> None:
        """A row of metrics.csv, then the same row to every tracker."""
        if self.metrics is not None:
            self.metrics.add(row)
        self.trackers.on_metrics(row)

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.start, 3)

    # --------------------------------------------------------------- start
    def begin(self) -> None:
        s, run, trainer = self.s, self.s.run, self.trainer
        if self.writes and not self.continues:  # a new run, a fork, or one that starts afresh where nothing was saved
            write_run_file(run / "spec.yaml", Path(s.compiled.path).read_text(encoding="utf-8"))
            write_run_file(run / "spec.resolved.yaml", dump_yaml(s.compiled.resolved))
            write_run_file(run / "program.txt", str(s.compiled.program))
            write_run_file(run / "env.json", json.dumps(env_info(s.registry, trainer.device), indent=2))
        for text in s.plan.warnings if s.plan else []:
            self.warn(text)
        first = self.first_step = trainer.step_count
        if self.resumed:
            s.log.info("resumed %s on %s from %s at step %d", run, trainer.device, s.plan.path if s.plan else None, first)
            if self.reuse:
                log_spec_changes(run, s.compiled.resolved, s.log)
        elif s.plan is not None:
            s.log.info("run %s on %s (nothing to resume there: a new run)", run, trainer.device)
        else:
            s.log.info("run %s on %s", run, trainer.device)
        if self.writes:
            # A resumed run keeps the rows up to its checkpoint; later ones are replayed.
            path = run / "metrics.csv"
            self.metrics = MetricsLog.resume(path, first, final=first >= self.tr.steps) if self.continues else MetricsLog(path)
        self.trackers.on_start(RunStart(run, self.program.name, s.compiled.resolved, first, self.continues))
        offset = 0.0
        if self.resumed and s.plan is not None and s.plan.state is not None:
            offset = float(s.plan.state.get("train_seconds", self.metrics.last_time() if self.metrics is not None else 0.0))
        self.start = time.perf_counter() - offset
        trainer.on_skip = self.on_skip

    # ----------------------------------------------------------- pictures
    def samples(self, tag: str) -> None:
        if self.sample_var is None or not self.writes or "samples" in self.problems:
            return
        model = self.trainer.model
        try:
            with self.trainer.fork_rng(self.tr.seed + SAMPLES_SEED_OFFSET), model.averages.swapped():  # fixed noise; training's streams go on untouched
                x = model.generate(picture_count(model), self.sample_var, self.fixed_batch)
            report_pictures(self, save_picture(self, tag, x))
        except (UnigenError, KeyboardInterrupt):
            raise
        except Exception as exc:
            self.problems.append("samples")
            self.warn(f"drawing samples of `{self.sample_var}` failed ({exception_text(exc)}); training goes on without sample pictures.")

    def evaluate(self, final: bool = False) -> dict[str, float]:
        known = set(self.trainer.metric_errors)
        values = self.trainer.evaluate(final=final)
        for name, text in self.trainer.metric_errors.items():
            if name not in known:
                self.warn(text + "; the run goes on without it.")
        return values

    def checkpoint(self, state: dict[str, Any] | None = None) -> Path:
        state = dict(state if state is not None else self.trainer.state_dict())
        state.update(spec_digest=self.s.digest, spec_identity=self.s.identity, train_seconds=self.elapsed())
        if self.keeper is not None:
            state["best"] = self.keeper.state()
        return save_checkpoint(self.s.run, state) if self.writes else self.s.run / "checkpoints" / checkpoint_name(state["step"])

    def keep_if_best(self, step: int, evaluated: dict[str, float] | None) -> bool:
        """Whether these metrics (rank 0's; None: none computed now) are the best so far; if so,
        a checkpoint is saved and `checkpoints/best` points at it. With several processes every
        rank takes part, since a checkpoint gathers each rank's random streams."""
        keeper = self.keeper
        better = self.trainer.world.from_main(lambda: keeper is not None and evaluated is not None and keeper.improves(step, evaluated))
        if better:
            path = self.checkpoint()
            if self.writes and keeper is not None:
                keeper.mark(self.s.run, path)
        return bool(better)

    # ---------------------------------------------------------------- steps
    def run(self) -> Path:
        self.begin()
        with StopSignals() as stop:
            self.steps(stop)
            if stop.signum is not None:
                name = signal.Signals(stop.signum).name
                self.s.log.info("stopped by %s after step %d; checkpoint saved", name, self.trainer.step_count)
                raise UnigenError.one(
                    "R003",
                    f"training stopped by {name} after step {self.trainer.step_count} of {self.tr.steps}; its checkpoint is in `{self.s.run / 'checkpoints'}`.",
                    (),
                    f"continue with `{self.s.resume_cmd}`.",
                    exit_code=128 + stop.signum,
                )
        return self.finish()

    def steps(self, stop: StopSignals) -> None:
        trainer, tr = self.trainer, self.tr
        progress = Progress(tr.steps, self.s.log.info, quiet=self.s.quiet, first=trainer.step_count)
        # The last good state, in memory: what `rollback` returns to and what `raise` saves.
        good = trainer.snapshot() if tr.on_nonfinite != "skip" else None
        strikes, saved = 0, -1  # rollbacks in a row; the step of the newest checkpoint on disk
        halted = False  # several processes stop together, where they agree on it (at logged steps)
        try:
            while trainer.step_count < tr.steps and not (halted if trainer.world.active else stop.signum is not None):
                try:
                    self.one_step(stop, good)
                except NonFiniteLoss as exc:
                    assert good is not None
                    if tr.on_nonfinite == "rollback" and strikes < MAX_ROLLBACKS:
                        strikes += 1
                        trainer.rollback(good)
                        self.warn(f"{exc}; rolled back to step {good['step']} (train.on_nonfinite: rollback).")
                        continue
                    raise nonfinite_error(self, exc, good, strikes) from None
                fresh, halted, saved = self.after_step(progress, stop, saved)
                if fresh and good is not None:
                    good, strikes = trainer.snapshot(), 0
        finally:
            progress.close()
        if saved != trainer.step_count:
            self.checkpoint()

    def one_step(self, stop: StopSignals, good: dict[str, Any] | None) -> None:
        """A training step; a term that fails (R004) saves the last good state first."""
        trainer, tr = self.trainer, self.tr
        try:
            trainer.step()
            if stop.signum is not None or (tr.sample_every and trainer.step_count % tr.sample_every == 0):
                trainer.check_pending()  # flags a GPU keeps on the device, read before a checkpoint or samples
        except UnigenError as exc:
            if not any(d.code == "R004" for d in exc.diagnostics):
                raise
            exc = step_failure(self, exc)  # the network, or the term's plugin, that failed
            if good is None:
                raise exc from exc.__cause__
            path = self.checkpoint(good)
            self.s.log.info("stopped: %s; the last good state (step %d) is %s", exc, good["step"], path)
            d = exc.diagnostics[0]
            raise UnigenError([replace(d, hint=d.hint + f" The last good state (step {good['step']}) is saved as `{path}`; continue with `{self.s.resume_cmd}`.")], exc.exit_code) from exc.__cause__

    def after_step(self, progress: Progress, stop: StopSignals, saved: int) -> tuple[bool, bool, int]:
        """What is due after a step: (a good state may be taken, the processes stop, the step of
        the newest checkpoint)."""
        trainer, tr = self.trainer, self.tr
        s = trainer.step_count
        fresh = halted = False
        if s % tr.log_every == 0 or s == tr.steps:
            row, evaluated = self.row(s) if self.writes else ({}, None)
            if self.keep_if_best(s, evaluated):
                saved = s
            if self.writes:
                self.report(progress, s, row)
            fresh = True
            halted = distributed.agree_stop(trainer.world, stop, trainer.device)
        if tr.sample_every and s % tr.sample_every == 0 and s != tr.steps:
            self.samples(f"step_{s:08d}")
        if tr.checkpoint_every and s % tr.checkpoint_every == 0 and s != tr.steps:
            self.checkpoint()
            saved, fresh = s, True
        return fresh, halted, saved

    def row(self, s: int) -> tuple[dict[str, Any], dict[str, float] | None]:
        """A logged step's row of losses, with the metrics when an evaluation is due (then also
        returned on their own)."""
        tr = self.tr
        self.window = self.trainer.losses()  # each term's mean over the steps since the last logged one
        row: dict[str, Any] = {"step": s, "time_s": self.elapsed(), **self.window, **self.trainer.learning_rates()}
        if not (tr.eval_every and s % tr.eval_every == 0 and s != tr.steps):
            return row, None
        evaluated = self.evaluate()
        row.update(evaluated)
        return row, evaluated

    def report(self, progress: Progress, s: int, row: dict[str, Any]) -> None:
        """A logged step's row to metrics.csv and the trackers, progress, and health. The last
        step's row waits for the final metrics (`finish` writes the one row of that step)."""
        progress.update(s, self.window)
        if s != self.tr.steps:  # the last window stays in the checkpoint: a run continued past it logs the same means
            self.record(row)
            self.trainer.reset_window()
        for found in self.trainer.check_health():
            self.warn(found["message"])

    # --------------------------------------------------------------- finish
    def finish(self) -> Path:
        """After the last step: final samples and metrics, summary.json (main process only)."""
        trainer, run = self.trainer, self.s.run
        elapsed = time.perf_counter() - self.start
        final: dict[str, float] = {}
        if self.writes:
            self.samples(f"step_{trainer.step_count:08d}")
            final = self.evaluate(final=True)
        self.keep_if_best(trainer.step_count, final if self.writes else None)
        if not self.writes:
            return run
        self.record({"step": trainer.step_count, "time_s": round(elapsed, 3), **final_losses(self), **trainer.learning_rates(), **final})
        summary = run_summary(self, elapsed, final)
        self.trackers.on_end(summary)  # first, so that summary.json also names a tracker that fails here
        write_run_file(run / "summary.json", json.dumps({**summary, "trackers": self.trackers.report()}, indent=2))
        self.s.log.info("done in %.1fs: %s", elapsed, ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
        if summary["errors"]:
            raise UnigenError.one(
                "R005",
                f"training finished and was saved in `{run}`, but the evaluation after it failed: " + "; ".join(summary["errors"]) + ".",
                (),
                "the trained checkpoint and summary.json are kept; fix or update the named plugin, or leave the metric out with `metrics: [...]` in the spec.",
                exit_code=1,
            )
        return run



def log_spec_changes(run: Path, resolved: dict[str, Any], log: logging.Logger) -> None:
    """A resumed run keeps its spec files; what the resuming command changed (outside what must
    match, e.g. `train.steps`) is noted in train.log."""
    try:
        before = yaml.safe_load((run / "spec.resolved.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return
    for line in spec_differences(before, json.loads(json.dumps(resolved)), names=("run", "now")):
        log.info("resumed with a change: %s", line)


def save_picture(loop: TrainingLoop, tag: str, x: Any) -> Path:
    """samples/TAG.png of the generated `x`; its path, for the trackers."""
    path = loop.s.run / "samples" / f"{tag}.png"
    save_samples(path, x, loop.trainer.model, f"{loop.program.name}  {tag}")
    return path


def report_pictures(loop: TrainingLoop, path: Path) -> None:
    """A step's sample picture to the trackers, and beside it the reconstructions of a model with
    an encoder (`recon_<name>`) when there are some."""
    loop.trackers.on_image("samples", path, loop.trainer.step_count)
    recon = path.with_name("recon_" + path.name)
    if recon.is_file():
        loop.trackers.on_image("reconstructions", recon, loop.trainer.step_count)


def final_losses(loop: TrainingLoop) -> dict[str, float]:
    """Each term's mean over the last logging window (the one that ends at the last step)."""
    return loop.window if loop.window and loop.trainer.step_count == loop.tr.steps else loop.trainer.losses()


def run_summary(loop: TrainingLoop, elapsed: float, final: dict[str, float]) -> dict[str, Any]:
    """summary.json: the run's final state, machine-readable."""
    trainer, plan = loop.trainer, loop.s.plan
    return {
        "name": loop.program.name,
        "steps": trainer.step_count,
        "train_seconds": round(elapsed, 3),
        "seconds_per_step": round(elapsed / max(trainer.step_count, 1), 6),
        "device": str(trainer.device),
        "processes": trainer.world.size,
        "final_losses": final_losses(loop),
        "metrics": final,
        "nonfinite": {"policy": loop.tr.on_nonfinite, **trainer.nonfinite},
        "resumed_from": None if plan is None or plan.path is None else {"checkpoint": str(plan.path), "step": loop.first_step},
        "warnings": trainer.health_warnings,
        "best": loop.keeper.state() if loop.keeper is not None else None,
        "trackers": loop.trackers.report(),  # each tracker: "ok", or what switched it off
        "errors": list(trainer.metric_errors.values()) + (["drawing samples failed (see train.log)"] if "samples" in loop.problems else []),
    }


def origin(registry: Any, kind: str, name: str) -> str:
    """Who registered a kind: "plugin `vae`, distribution unigen" ("" when unknown)."""
    entry = getattr(registry, "entries", {}).get(kind, {}).get(name)
    return f"plugin `{entry.plugin}`, distribution {entry.dist}" if entry is not None else ""


def failing_network(cause: BaseException | None, nets: dict[str, Any]) -> str | None:
    """The network whose own code raised `cause`: the outermost frame of its traceback that
    runs a method of one of the network's modules (None: no network was running)."""
    owner = {id(m): name for name, net in nets.items() for m in net.modules()}
    tb = cause.__traceback__ if cause is not None else None
    while tb is not None:
        name = owner.get(id(tb.tb_frame.f_locals.get("self")))
        if name is not None:
            return name
        tb = tb.tb_next
    return None


def step_failure(loop: TrainingLoop, exc: UnigenError) -> UnigenError:
    """An R004 with its culprit named: the network (its architecture and the plugin that
    registered it) when the failure came from inside a network's forward pass, else the
    plugin of the term; with several processes, a failure that only says another process
    went away is X002."""
    d, cause, registry = exc.diagnostics[0], exc.__cause__, loop.s.registry
    if loop.trainer.world.active and distributed.peer_lost(cause):
        lost = UnigenError.one("X002", f"{d.message.split(': ', 1)[0]}: another training process went away ({first_line(cause, 200) if cause else 'no message'}).", (), "the error of the process that failed comes first; `--resume auto` continues from the newest checkpoint.", exit_code=1)
        lost.__cause__ = cause
        return lost
    memory = "more memory" in d.hint
    net = failing_network(cause, dict(loop.trainer.model.nets.items()))
    if net is not None:
        arch = loop.program.networks[net].arch
        by = origin(registry, "networks", arch)
        message = d.message.replace(": ", f", inside network `{net}` (architecture `{arch}`{', ' + by if by else ''}): ", 1)
        hint = d.hint if memory else f"a bug in architecture `{arch}`{' (' + by + ')' if by else ''}, or options or input shapes of `networks.{net}` it does not check: report it to the plugin's authors with the spec; `UNIGEN_TRACEBACK=1` shows where it happened."
        d = replace(d, message=message, hint=hint, path=("networks", net))
    else:
        term = next((t for r in loop.trainer.runners for t in r.plan.terms if t.path == d.path), None)
        by = origin(registry, "terms", term.term) if term is not None else ""
        if term is not None and by and not memory:
            d = replace(d, hint=d.hint.replace("the term's plugin", f"the plugin of term `{term.term}` ({by})", 1))
    out = UnigenError([d, *exc.diagnostics[1:]], exc.exit_code)
    out.__cause__ = cause
    return out


def nonfinite_error(loop: TrainingLoop, exc: NonFiniteLoss, good: dict[str, Any], strikes: int) -> UnigenError:
    """R001 after the last good state is saved: what a non-finite loss ends a run with."""
    path = loop.checkpoint(good)
    gave_up = f" ({strikes} rollbacks to step {good['step']} did not get past it)" if strikes else ""
    loop.s.log.info("stopped: %s%s; the last good state (step %d) is %s", exc, gave_up, good["step"], path)
    names = dict.fromkeys(str(label).split("@")[0] for label, _ in exc.event.get("terms") or [])
    by = "; ".join(f"term `{n}`: {origin(loop.s.registry, 'terms', n)}" for n in names if origin(loop.s.registry, "terms", n))
    return UnigenError.one(
        "R001",
        f"non-finite loss: {exc}{gave_up}{f' ({by})' if by else ''}; the last good state (step {good['step']}) is saved as `{path}`.",
        (),
        f"lower the learning rate or check the data for NaNs; `train.on_nonfinite: skip` or `rollback` goes on past such steps. Continue with `{loop.s.resume_cmd}`.",
        exit_code=1,
    )
