"""`compile-and-train`: spec file in, finished run directory out."""

from __future__ import annotations

import errno
import logging
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from unigen.api.registry import Registry, default_registry
from unigen.compiler.compiler import Compiled, compile_file
from unigen.errors import UnigenError, exception_text
from unigen.runs.lock import RunLock
from unigen.runs.loop import RunSetup, TrainingLoop
from unigen.runs.resume import Resume, check_fits, check_same_spec, find_resume
from unigen.runs.rundir import make_run_dir, remove_temporaries, spec_digest, spec_identity
from unigen.runs.trackers import Trackers, select_trackers
from unigen.training import distributed
from unigen.training.trainer import Trainer


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
    `nproc_per_node` N > 1, train on N local processes (unigen/training/distributed.py); under
    `torchrun` this process is one of the run's ranks, read from the environment."""
    if nproc_per_node is not None and nproc_per_node != 1:
        if nproc_per_node < 1:
            raise UnigenError.one("X004", f"`--nproc-per-node {nproc_per_node}`: expected a number of processes of at least 1.", (), "use `--nproc-per-node 2` or more to train on several processes.")
        if distributed.env_world() is not None:
            raise UnigenError.one("X004", "`--nproc-per-node` starts its own processes, but this one already runs under `torchrun` (RANK and WORLD_SIZE are set).", (), "leave `--nproc-per-node` out under torchrun (`torchrun --nproc-per-node N` sets it).")
        kwargs = dict(spec_path=spec_path, overrides=overrides, out=out, steps=steps, device=device, quiet=quiet, resume=resume, track=track, launched=nproc_per_node)
        return distributed.launch(nproc_per_node, _train_here, kwargs)  # type: ignore[no-any-return]
    return _train_here(spec_path, overrides, out, steps, device, registry, quiet, resume, track)


def _train_here(
    spec_path: str | Path,
    overrides: list[str] | None = None,
    out: str | None = None,
    steps: int | None = None,
    device: str | None = None,
    registry: Registry | None = None,
    quiet: bool = False,
    resume: str | None = None,
    track: list[str] | None = None,
    launched: int | None = None,
) -> Path:
    """`train_run` in this process: alone, as one rank under `torchrun`, or as one of the
    `launched` processes `--nproc-per-node` started (its resume command says so)."""
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
    world, owned = distributed.start(program.train.device)
    again = _Again(spec_path, user_overrides, steps, device, launched)
    try:
        return _run(compiled, world, registry, again, out, quiet, resume, trackers)
    finally:
        distributed.stop(owned)


@dataclass(frozen=True)
class _Again:
    """What the command that continues a run repeats of this one."""

    spec_path: str | Path
    overrides: list[str]
    steps: int | None
    device: str | None
    processes: int | None

    def command(self, run: Path) -> str:
        args = ["unigen", "compile-and-train", str(self.spec_path), *self.overrides, "--out", str(run), "--resume", "auto"]
        if self.steps is not None:
            args += ["--steps", str(self.steps)]
        if self.device is not None:
            args += ["--device", self.device]
        if self.processes is not None:
            args += ["--nproc-per-node", str(self.processes)]
        return " ".join(shlex.quote(a) for a in args)


def _run(compiled: Compiled, world: distributed.World, registry: Registry, again: _Again, out: str | None, quiet: bool, resume: str | None, trackers: Trackers) -> Path:
    program = compiled.program
    tr = program.train
    identity = spec_identity(compiled.resolved)
    digest = spec_digest(compiled.resolved)

    def find() -> Resume | None:
        plan = find_resume(resume, out) if resume else None
        if plan is not None and plan.state is not None:
            assert plan.path is not None
            check_fits(plan.state, plan.path, identity, digest, tr.steps)
        elif plan is not None and plan.reuse:
            check_same_spec(plan.run, identity)  # no checkpoint yet: it starts afresh there
        return plan

    plan = world.from_main(find)  # rank 0 reads the checkpoint; every rank loads it
    trainer = _trainer(program, world, registry)  # data and networks before any file is written
    if plan is not None and plan.state is not None:
        try:
            trainer.load_state_dict(plan.state)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise UnigenError.one("C001", f"checkpoint `{plan.path}` does not fit this spec's networks or optimizers: {exception_text(exc)}.", (), "resume with the spec the run was started with.", exit_code=1) from None
    reuse = plan is not None and plan.reuse
    # Only rank 0 writes: the run directory, its log, metrics, samples and checkpoints.
    run = world.from_main(lambda: make_run_dir(program.name, plan.run if plan else out, reuse=reuse))
    lock = RunLock(run)

    def claim() -> None:  # one process trains in a run directory; what a killed one left half-written goes
        lock.acquire()
        remove_temporaries(run)

    world.from_main(claim)
    log = _logger(run, quiet) if world.main else _null_logger()
    try:
        setup = RunSetup(run, log, compiled, trainer, plan, identity, digest, registry, quiet or not world.main, again.command(run), trackers)
        return TrainingLoop(setup).run()
    finally:
        _close(log)
        lock.release()


def _trainer(program: Any, world: distributed.World, registry: Registry) -> Trainer:
    """The trainer; a dataset whose data does not fit the spec (D001) is named with the plugin
    that registered it."""
    try:
        return Trainer(program, world=world)
    except UnigenError as exc:
        source = program.data.source
        entry = registry.entries["datasets"].get(source)
        if entry is None:
            raise
        named = f"dataset `{source}` (registered by plugin `{entry.plugin}`, distribution {entry.dist})"
        diags = [replace(d, message=d.message.replace(f"dataset `{source}`", named, 1)) if d.code == "D001" and d.path[:1] == ("data",) else d for d in exc.diagnostics]
        raise UnigenError(diags, exc.exit_code) from exc.__cause__


class TrainLog(logging.FileHandler):
    """train.log. A write that fails (a full disk, a read-only file system) is one R002 warning
    line on stderr, not logging's "--- Logging error ---" traceback per record; the log then
    stops and training goes on (a checkpoint that cannot be written stops it, R002)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)  # opened at the first record
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            self._give_up(exc)
        else:
            super().handleError(record)

    def close(self) -> None:
        try:
            super().close()
        except OSError as exc:  # the last records' flush on a full disk
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        """One warning line, then no more writes to the file."""
        if self.failed:
            return
        self.failed = True
        stream, self.stream = self.stream, None  # type: ignore[assignment]
        try:
            if stream is not None:
                stream.close()  # what is still buffered cannot be written either
        except OSError:
            pass
        fix = "free space on that disk" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else f"make `{self.baseFilename}` writable"
        print(f"warning: R002 cannot write `{self.baseFilename}`: {exc.strerror or exc}; training goes on without its log (metrics.csv and the checkpoints are still written). Hint: {fix}.", file=sys.stderr)


def _logger(run: Path, quiet: bool) -> logging.Logger:
    log = logging.getLogger(f"unigen.run.{run}")
    log.setLevel(logging.INFO)
    log.propagate = False
    fh = TrainLog(run / "train.log")
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
