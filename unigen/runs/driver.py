"""`compile-and-train`: spec file in, finished run directory out."""

from __future__ import annotations

import json
import logging
import shlex
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from unigen.api.registry import Registry, default_registry
from unigen.compile.compiler import Compiled, compile_file
from unigen.errors import UnigenError
from unigen.runs.best import BestKeeper
from unigen.runs.checkpoints import checkpoint_name, save_checkpoint
from unigen.runs.progress import Progress
from unigen.runs.resume import Resume, check_fits, find_resume
from unigen.runs.rundir import atomic_write, dump_yaml, env_info, make_run_dir, spec_differences, spec_digest, spec_identity
from unigen.runs.samples import save_samples
from unigen.runs.signals import _Stop
from unigen.runs.trackers import RunStart, Trackers, select_trackers
from unigen.train import distributed
from unigen.train.trainer import NonFiniteLoss, Trainer, describe_nonfinite

MAX_ROLLBACKS = 3  # rollbacks in a row to one good state before `rollback` gives up (R001)


def train_run(
    spec_path: str | Path,
    overrides: list[str] | None = None,
    out: str | None = None,
    steps: int | None = None,
    device: str | None = None,
    registry: Registry | None = None,
    quiet: bool = False,
    resume: str | None = None,
    nproc_per_node: int | None = None,
    track: list[str] | None = None,
) -> Path:
    """Compile and train a spec into a run directory. With `resume` (`auto`, a checkpoint file
    or a run directory), continue a run from a checkpoint instead of starting one. With
    `nproc_per_node` N > 1, train on N local processes (unigen/distributed.py); under
    `torchrun` this process is one of the run's ranks, read from the environment."""
    if nproc_per_node is not None and nproc_per_node != 1:
        if nproc_per_node < 1:
            raise UnigenError.one("X004", f"`--nproc-per-node {nproc_per_node}`: expected a number of processes of at least 1.", (), "use `--nproc-per-node 2` or more to train on several processes.")
        if distributed.env_world() is not None:
            raise UnigenError.one("X004", "`--nproc-per-node` starts its own processes, but this one already runs under `torchrun` (RANK and WORLD_SIZE are set).", (), "leave `--nproc-per-node` out under torchrun (`torchrun --nproc-per-node N` sets it).")
        kwargs = dict(spec_path=spec_path, overrides=overrides, out=out, steps=steps, device=device, quiet=quiet, resume=resume, track=track)
        return distributed.launch(nproc_per_node, train_run, kwargs)  # type: ignore[no-any-return]
    registry = registry or default_registry()
    user_overrides = list(overrides or [])
    overrides = list(user_overrides)
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    if device is not None:
        overrides.append(f"train.device={device}")
    compiled = compile_file(spec_path, overrides, registry)
    trackers = select_trackers(registry, track)  # a missing tracker package stops the run before it starts
    program = compiled.program
    world, owned = distributed.start(program.spec.train.device)
    try:
        return _run(compiled, world, registry, user_overrides, spec_path, out, steps, device, quiet, resume, trackers)
    finally:
        distributed.stop(owned)


def _run(compiled: Compiled, world: distributed.World, registry: Registry, user_overrides: list[str], spec_path: str | Path, out: str | None, steps: int | None, device: str | None, quiet: bool, resume: str | None, trackers: Trackers) -> Path:
    program = compiled.program
    spec = program.spec
    tr = spec.train
    identity = spec_identity(compiled.resolved)
    digest = spec_digest(compiled.resolved)

    def find() -> Resume | None:
        plan = find_resume(resume, out) if resume else None
        if plan is not None and plan.state is not None:
            assert plan.path is not None
            check_fits(plan.state, plan.path, identity, digest, tr.steps)
        return plan

    plan = world.from_main(find)  # rank 0 reads the checkpoint; every rank loads it
    trainer = Trainer(program, registry, world=world)  # data and networks before any file is written
    if plan is not None and plan.state is not None:
        try:
            trainer.load_state_dict(plan.state)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise UnigenError.one("C001", f"checkpoint `{plan.path}` does not fit this spec's networks or optimizers: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}.", (), "resume with the spec the run was started with.", exit_code=1) from None
    reuse = plan is not None and plan.reuse
    # Only rank 0 writes: the run directory, its log, metrics, samples and checkpoints.
    run = world.from_main(lambda: make_run_dir(spec.name, plan.run if plan else out, reuse=reuse))
    log = _logger(run, quiet) if world.main else _null_logger()
    try:
        return _train(run, log, compiled, trainer, plan, identity, digest, registry, quiet or not world.main, _resume_command(spec_path, user_overrides, steps, device, run), trackers)
    finally:
        _close(log)


def _train(run: Path, log: logging.Logger, compiled: Compiled, trainer: Trainer, plan: Resume | None, identity: dict[str, Any], digest: str, registry: Registry, quiet: bool, resume_cmd: str, trackers: Trackers) -> Path:
    program = compiled.program
    spec = program.spec
    tr = spec.train
    reuse = plan is not None and plan.reuse
    writes = trainer.world.main

    def warn(text: str) -> None:
        if writes:
            print(f"warning: {text}", file=sys.stderr)
        log.warning("warning: %s", text)

    if writes and not reuse:
        atomic_write(run / "spec.yaml", Path(compiled.path).read_text(encoding="utf-8"))
        atomic_write(run / "spec.resolved.yaml", dump_yaml(compiled.resolved))
        atomic_write(run / "program.txt", str(program))
        atomic_write(run / "env.json", json.dumps(env_info(registry, trainer.device), indent=2))
    for text in plan.warnings if plan else []:
        warn(text)
    first = trainer.step_count
    if plan is not None and plan.state is not None:
        log.info("resumed %s on %s from %s at step %d", run, trainer.device, plan.path, first)
        if reuse:
            _log_spec_changes(run, compiled.resolved, log)
    elif plan is not None:
        log.info("run %s on %s (nothing to resume there: a new run)", run, trainer.device)
    else:
        log.info("run %s on %s", run, trainer.device)
    if not writes:  # only rank 0 reports
        trackers = Trackers()
    trackers.warn = warn
    trackers.on_start(RunStart(run, spec.name, compiled.resolved, first, reuse))  # metrics.csv is the `csv` tracker
    csv = trackers.get("csv")
    keeper = BestKeeper(tr.best.metric, tr.best.mode, warn, plan.state.get("best") if plan is not None and plan.state is not None else None) if tr.best else None
    sample_var = trainer.model.sampled_variable()
    progress = Progress(tr.steps, log.info, quiet=quiet, first=first)
    offset = float(plan.state.get("train_seconds", csv.last_time() if csv is not None else 0.0)) if plan is not None and plan.state is not None else 0.0
    start = time.perf_counter() - offset
    fixed_batch = None
    if sample_var is not None and trainer.batches is not None:
        # Conditional models draw their conditioning values from one fixed test batch.
        fixed_batch = {k: v[: 64] for k, v in trainer.model.dataset.test.items()}

    problems: list[str] = []  # failures after training that cost no trained state (R005)

    def samples(tag: str) -> None:
        if sample_var is None or not writes or "samples" in problems:
            return
        try:
            with trainer.fork_rng(tr.seed + 777), trainer.model.averages.swapped():  # fixed noise; training's random streams go on untouched
                x = trainer.model.generate(2500 if "modes" in trainer.model.dataset.info else 64, sample_var, fixed_batch)
            save_samples(run / "samples" / f"{tag}.png", x, trainer.model.dataset.info, f"{spec.name}  {tag}")
        except (UnigenError, KeyboardInterrupt):
            raise
        except Exception as exc:
            problems.append("samples")
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            warn(f"drawing samples of `{sample_var}` failed ({type(exc).__name__}: {first}); training goes on without sample pictures.")

    def evaluate() -> dict[str, float]:
        known = set(trainer.metric_errors)
        values = trainer.evaluate()
        for name, text in trainer.metric_errors.items():
            if name not in known:
                warn(text + "; the run goes on without it.")
        return values

    def checkpoint(state: dict[str, Any] | None = None) -> Path:
        state = dict(state if state is not None else trainer.state_dict())
        state.update(spec_digest=digest, spec_identity=identity, train_seconds=round(time.perf_counter() - start, 3))
        if keeper is not None:
            state["best"] = keeper.state()
        return save_checkpoint(run, state) if writes else run / "checkpoints" / checkpoint_name(state["step"])

    def skipped(event: dict[str, Any]) -> None:
        n = trainer.nonfinite["skipped"]
        text = f"{describe_nonfinite(event)}; its update is skipped (train.on_nonfinite: skip)."
        log.warning("warning: %s", text)
        if n <= 10 and writes:
            print(f"warning: {text}" + (" Further ones go to train.log only." if n == 10 else ""), file=sys.stderr)

    trainer.on_skip = skipped
    # The last good state, in memory: what `rollback` returns to and what `raise` saves.
    good = trainer.snapshot() if tr.on_nonfinite != "skip" else None
    strikes = 0
    saved = -1  # the step of the newest checkpoint on disk
    with _Stop() as stop:
        try:
            # Several processes stop together, where they agree on it (at logged steps).
            halted = False
            while trainer.step_count < tr.steps and not (halted if trainer.world.active else stop.signum is not None):
                try:
                    trainer.step()
                    if stop.signum is not None or (tr.sample_every and trainer.step_count % tr.sample_every == 0):
                        trainer.check_pending()  # flags a GPU keeps on the device, read before a checkpoint or samples
                except UnigenError as exc:
                    if good is not None and any(d.code == "R004" for d in exc.diagnostics):
                        path = checkpoint(good)
                        log.info("stopped: %s; the last good state (step %d) is %s", exc, good["step"], path)
                        d = exc.diagnostics[0]
                        raise UnigenError([replace(d, hint=d.hint + f" The last good state (step {good['step']}) is saved as `{path}`; continue with `{resume_cmd}`.")], exc.exit_code) from exc.__cause__
                    raise
                except NonFiniteLoss as exc:
                    assert good is not None
                    if tr.on_nonfinite == "rollback" and strikes < MAX_ROLLBACKS:
                        strikes += 1
                        trainer.rollback(good)
                        warn(f"{exc}; rolled back to step {good['step']} (train.on_nonfinite: rollback).")
                        continue
                    path = checkpoint(good)
                    gave_up = f" ({strikes} rollbacks to step {good['step']} did not get past it)" if strikes else ""
                    log.info("stopped: %s%s; the last good state (step %d) is %s", exc, gave_up, good["step"], path)
                    raise UnigenError.one(
                        "R001",
                        f"non-finite loss: {exc}{gave_up}; the last good state (step {good['step']}) is saved as `{path}`.",
                        (),
                        f"lower the learning rate or check the data for NaNs; `train.on_nonfinite: skip` or `rollback` goes on past such steps. Continue with `{resume_cmd}`.",
                        exit_code=1,
                    ) from None
                s = trainer.step_count
                fresh = False
                if s % tr.log_every == 0 or s == tr.steps:
                    if writes:
                        losses = trainer.losses()
                        row: dict[str, Any] = {"step": s, "time_s": round(time.perf_counter() - start, 3), **losses}
                        if tr.eval_every and s % tr.eval_every == 0 and s != tr.steps:
                            evaluated = evaluate()
                            row.update(evaluated)
                            if keeper is not None and keeper.improves(s, evaluated):
                                keeper.mark(run, checkpoint())
                                saved = s
                        trackers.on_metrics(row)
                        progress.update(s, losses)
                        for found in trainer.check_health():
                            warn(found["message"])
                    fresh = True
                    halted = distributed.agree_stop(trainer.world, stop, trainer.device)
                if tr.sample_every and s % tr.sample_every == 0 and s != tr.steps:
                    samples(f"step_{s:08d}")
                if tr.checkpoint_every and s % tr.checkpoint_every == 0 and s != tr.steps:
                    checkpoint()
                    saved, fresh = s, True
                if fresh and good is not None:
                    good, strikes = trainer.snapshot(), 0
        finally:
            progress.close()
        if saved != trainer.step_count:
            checkpoint()
        if stop.signum is not None:
            name = signal.Signals(stop.signum).name
            log.info("stopped by %s after step %d; checkpoint saved", name, trainer.step_count)
            raise UnigenError.one(
                "R003",
                f"training stopped by {name} after step {trainer.step_count} of {tr.steps}; its checkpoint is in `{run / 'checkpoints'}`.",
                (),
                f"continue with `{resume_cmd}`.",
                exit_code=128 + stop.signum,
            )
    elapsed = time.perf_counter() - start
    if not writes:
        return run
    samples(f"step_{trainer.step_count:08d}")
    final = evaluate()
    if keeper is not None and keeper.improves(trainer.step_count, final):
        keeper.mark(run, checkpoint())
    trackers.on_metrics({"step": trainer.step_count, "time_s": round(elapsed, 3), **trainer.losses(), **final})
    summary = {
        "name": spec.name,
        "steps": trainer.step_count,
        "train_seconds": round(elapsed, 3),
        "seconds_per_step": round(elapsed / max(trainer.step_count, 1), 6),
        "device": str(trainer.device),
        "processes": trainer.world.size,
        "final_losses": trainer.losses(),
        "metrics": final,
        "nonfinite": {"policy": tr.on_nonfinite, **trainer.nonfinite},
        "resumed_from": None if plan is None or plan.path is None else {"checkpoint": str(plan.path), "step": first},
        "warnings": trainer.health_warnings,
        "best": keeper.state() if keeper is not None else None,
        "errors": list(trainer.metric_errors.values()) + (["drawing samples failed (see train.log)"] if "samples" in problems else []),
    }
    atomic_write(run / "summary.json", json.dumps(summary, indent=2))
    trackers.on_end(summary)
    log.info("done in %.1fs: %s", elapsed, ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
    if summary["errors"]:
        raise UnigenError.one(
            "R005",
            f"training finished and was saved in `{run}`, but the evaluation after it failed: " + "; ".join(summary["errors"]) + ".",
            (),
            "the trained checkpoint and summary.json are kept; fix or update the named plugin, or leave the metric out with `metrics: [...]` in the spec.",
            exit_code=1,
        )
    return run


def _resume_command(spec_path: str | Path, overrides: list[str], steps: int | None, device: str | None, run: Path) -> str:
    args = ["unigen", "compile-and-train", str(spec_path), *overrides, "--out", str(run), "--resume", "auto"]
    if steps is not None:
        args += ["--steps", str(steps)]
    if device is not None:
        args += ["--device", device]
    return " ".join(shlex.quote(a) for a in args)


def _log_spec_changes(run: Path, resolved: dict[str, Any], log: logging.Logger) -> None:
    """A resumed run keeps its spec files; what the resuming command changed (outside what must
    match, e.g. `train.steps`) is noted in train.log."""
    try:
        before = yaml.safe_load((run / "spec.resolved.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return
    for line in spec_differences(before, json.loads(json.dumps(resolved)), names=("run", "now")):
        log.info("resumed with a change: %s", line)


def _logger(run: Path, quiet: bool) -> logging.Logger:
    log = logging.getLogger(f"unigen.run.{run}")
    log.setLevel(logging.INFO)
    log.propagate = False
    fh = logging.FileHandler(run / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(fh)
    return log


def _null_logger() -> logging.Logger:
    log = logging.getLogger("unigen.run.rank")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


def _close(log: logging.Logger) -> None:
    for h in list(log.handlers):
        h.close()
        log.removeHandler(h)


__all__ = ["train_run"]
