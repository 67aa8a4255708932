"""`unigen sweep`: one spec trained at every point of a grid of overrides, for each seed.

The grid is Hydra's multirun grammar: an override whose value has commas outside brackets,
braces, parentheses and quotes (`train.optim.lr=1e-3,3e-3`, `variables.z.shape=[4],[16]`) is an
axis; the points are the axes' cartesian product (the first axis outermost); any other override
is fixed, the same at every point. A point runs each axis's value as the single override
`key=value`, so it is read as any override is (unigen/spec/overrides.py). Every point's spec is
compiled before anything runs: a bad point stops the sweep before it starts.

Each point and seed is one `unigen compile-and-train` process (the training of
unigen/runs/driver.py, in a process of its own: the random streams, logging and signal handlers
of a run are its process's) with its run directory SWEEP/<NN>-<key=value tags>-seed<S> and its
output in SWEEP/logs/. Runs go to local processes, `--jobs` at a time (a thread waits on each),
or through submitit (Slurm on a cluster, or its local executor), where each run is given
`--resume auto` so that a requeued job continues from its checkpoint. A run that fails does
not stop the others. SWEEP/sweep.json holds the grid and each run's state as it goes, then
each point's final metrics (median, min and max over its seeds); SWEEP/sweep.md the table.

This module imports nothing heavy at its top: submitit unpickles `PointJob` in a fresh process.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unigen.errors import Diagnostic, UnigenError

SEED_KEY = "train.seed"
CODED = re.compile(r"(?:^|: )([A-Z]\d{3}) (.*)")  # a coded message in a run's output

# ------------------------------------------------------------------ the grammar


def split_values(text: str) -> list[str]:
    """`text` cut at its commas outside [], {}, () and quotes; `[text]` when it has none."""
    parts, start, depth, quote = [], 0, 0, ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()] if parts else [text]


def bare_key(item: str) -> str:
    """The dotted key an override sets or deletes, without `+`, `++` or `~`."""
    return item.lstrip("+~").partition("=")[0].strip()


@dataclass(frozen=True)
class Axis:
    """A swept override: the key as typed (`+` or `++` kept) and its values as typed."""

    key: str
    values: tuple[str, ...]

    @property
    def bare(self) -> str:
        return bare_key(self.key)


def _grammar_error(item: str, what: str, hint: str) -> Diagnostic:
    return Diagnostic("S004", f"sweep override `{item}`: {what}", hint=hint)


def parse_grid(overrides: list[str]) -> tuple[list[str | Axis], list[int] | None]:
    """The overrides in their order, each an Axis where it is swept, and the seeds a
    `train.seed=...` override gives (None without one); S004 for an empty value, a value
    given twice, or a key given twice, every one at once."""
    words: list[str | Axis] = []
    errors: list[Diagnostic] = []
    seen: dict[str, str] = {}
    seeds = None
    for item in overrides:
        key = bare_key(item)
        if key in seen:
            errors.append(_grammar_error(item, f"`{key}` is given twice (first in `{seen[key]}`).", f"give it once; to sweep it, list its values in one override: `{key}=a,b,c`."))
            continue
        seen[key] = item
        name, sep, value = item.partition("=")
        values = split_values(value) if sep and not item.startswith("~") else [value]
        if key == SEED_KEY and sep:
            seeds = _seeds_of(item, values, errors)
        elif len(values) == 1:
            words.append(item)
        elif "" in values:
            errors.append(_grammar_error(item, f"value {values.index('') + 1} of {len(values)} is empty; expected a value between every two commas.", f"write e.g. `{key}=1,2`; quote a value that holds a comma: `{key}='a,b'`."))
        elif len(set(values)) < len(values):
            dup = next(v for i, v in enumerate(values) if v in values[:i])
            errors.append(_grammar_error(item, f"the value `{dup}` is given twice; expected each value once.", "leave the second one out."))
        else:
            words.append(Axis(name, tuple(values)))
    if errors:
        raise UnigenError(errors)
    return words, seeds


def _seeds_of(item: str, values: list[str], errors: list[Diagnostic]) -> list[int]:
    bad = [v for v in values if not re.fullmatch(r"\d+", v.strip())]
    if bad:
        errors.append(_grammar_error(item, f"seed `{bad[0]}` is not a whole number from 0.", "give the seeds as whole numbers, e.g. `--seeds 0 1 2`."))
    return [int(v) for v in values if v not in bad]


def check_seeds(seeds: list[int]) -> list[int]:
    dup = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if dup is not None or any(s < 0 for s in seeds):
        what = f"seed {dup} is given twice; expected each seed once" if dup is not None else f"{min(seeds)} is negative; expected whole numbers from 0"
        raise UnigenError.one("S005", f"`--seeds {' '.join(map(str, seeds))}`: {what}.", (), "give each seed once, e.g. `--seeds 0 1 2`.")
    return seeds


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest tail that no other key ends in (`train.optim.lr` -> `lr`)."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(o != k and (o == tail or o.endswith("." + tail)) for o in keys):
                break
        out[k] = tail
    return out


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Point:
    """A point of the grid: its number, each axis's value (by the axis's short key) and
    every override it runs with, fixed ones included, in the order given."""

    index: int
    values: tuple[tuple[str, str], ...]
    overrides: tuple[str, ...]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values)


def grid_points(words: list[str | Axis]) -> list[Point]:
    axes = [w for w in words if isinstance(w, Axis)]
    short = short_keys([a.bare for a in axes])
    points = []
    for i, combo in enumerate(itertools.product(*(a.values for a in axes))):
        chosen = dict(zip([a.key for a in axes], combo))
        overrides = tuple(f"{w.key}={chosen[w.key]}" if isinstance(w, Axis) else w for w in words)
        points.append(Point(i, tuple((short[a.bare], chosen[a.key]) for a in axes), overrides))
    return points


@dataclass
class Run:
    """One point at one seed, and how it went."""

    point: Point
    seed: int
    name: str  # its run directory inside the sweep directory
    seeded: bool  # `train.seed=S` is among its overrides (else the spec's own seed is S)
    status: str = "pending"  # pending, running, done, failed, stopped, not run
    exit_code: int | None = None
    error: str = ""  # the coded message that ended a failed run
    seconds: float | None = None
    job_id: str = ""

    @property
    def overrides(self) -> list[str]:
        return [*self.point.overrides, *([f"{SEED_KEY}={self.seed}"] if self.seeded else [])]


@dataclass
class Sweep:
    spec: str
    directory: Path
    words: list[str | Axis]
    seeds: list[int]
    runs: list[Run]
    launcher: str = "local"
    resume: bool = False  # each run given `--resume auto` (submitit: a requeued job continues)

    @property
    def axes(self) -> list[Axis]:
        return [w for w in self.words if isinstance(w, Axis)]

    @property
    def points(self) -> list[Point]:
        return list({r.point.index: r.point for r in self.runs}.values())

    def run_dir(self, run: Run) -> Path:
        return self.directory / run.name

    def log(self, run: Run) -> Path:
        return self.directory / "logs" / f"{run.name}.log"

    def command(self, run: Run) -> list[str]:
        """The run's `compile-and-train` command (absolute paths: a job may start elsewhere)."""
        out = str(self.run_dir(run).resolve())
        cmd = [sys.executable, "-m", "unigen", "compile-and-train", str(Path(self.spec).resolve()), *run.overrides, "--out", out, "--quiet"]
        return cmd + (["--resume", "auto"] if self.resume else [])


def plan_sweep(spec: str, overrides: list[str], seeds: list[int] | None = None, directory: str | None = None, registry: Any = None) -> Sweep:
    """The sweep of `spec`: its grid and runs, every point's spec compiled (all problems at
    once, each naming its points), and its directory, not yet created."""
    words, given = parse_grid(overrides)
    if given is not None and seeds is not None:
        raise UnigenError.one("S004", f"sweep override `{SEED_KEY}=...` and `--seeds` both give the seeds.", (), "give them once, e.g. `--seeds 0 1 2`.")
    points = grid_points(words)
    chosen = check_seeds(seeds if seeds is not None else given or [])
    spec_seed = validate_points(spec, points, chosen[:1], registry)
    width = max(2, len(str(len(points) - 1)))
    runs = [Run(p, s, run_name(p, s, width), bool(chosen)) for p in points for s in chosen or [spec_seed]]
    return Sweep(spec, sweep_dir(spec, directory), words, chosen or [spec_seed], runs)


def run_name(point: Point, seed: int, width: int) -> str:
    tags = "-".join(f"{k}={_safe(v)}" for k, v in point.values)
    return f"{point.index:0{width}d}" + (f"-{tags}" if tags else "") + f"-seed{seed}"


def _safe(value: str) -> str:
    return (re.sub(r"[^A-Za-z0-9._+-]+", "_", value).strip("_") or "_")[:24]


def validate_points(spec: str, points: list[Point], seed: list[int], registry: Any) -> int:
    """Compile every point (at the first seed); the spec's own seed, or UnigenError with every
    problem, each naming the points it is found at (unless it is found at all of them)."""
    from unigen.compiler.compiler import compile_file

    found: dict[str, tuple[Diagnostic, list[Point]]] = {}
    spec_seed = 0
    for p in points:
        try:
            spec_seed = compile_file(spec, [*p.overrides, *(f"{SEED_KEY}={s}" for s in seed)], registry).program.train.seed
        except UnigenError as exc:
            for d in exc.diagnostics:
                found.setdefault(str(d), (d, []))[1].append(p)
    if not found:
        return spec_seed
    out = []
    for d, at in found.values():
        if len(at) < len(points):
            where = ", ".join(f"{p.index} (`{p.label}`)" for p in at)
            d = Diagnostic(d.code, f"sweep point{'s' * (len(at) > 1)} {where}: {d.message}", d.path, d.hint, d.file, d.line, d.col)
        out.append(d)
    raise UnigenError(out)


def sweep_dir(spec: str, directory: str | None) -> Path:
    """`directory` (new or empty), or runs/sweep-<spec stem> (-2, -3, ... when that is taken)."""
    if directory:
        path = Path(directory)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            what = "is not a directory" if not path.is_dir() else "exists and is not empty"
            raise UnigenError.one("R002", f"`--dir {path}` {what}; a sweep writes a new directory of runs.", (), "choose another `--dir`, or delete it first.")
        return path
    base = Path("runs") / f"sweep-{Path(spec).stem}"
    path, i = base, 1
    while path.exists() and (not path.is_dir() or any(path.iterdir())):
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


# ------------------------------------------------------------------ running


Launch = Callable[[Sweep, Run], tuple[int | None, str]]  # a run's exit code, or None and why


def run_sweep(sweep: Sweep, launch: Launch, jobs: int, stop: Callable[[], None] = lambda: None, report: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> int:
    """Every run, `jobs` at a time, a thread waiting on each; sweep.json kept current and, at
    the end, sweep.md and the points' metrics written. 0 when every run finished, 1 when one
    failed (the others still run), 130 when interrupted (`stop` stops the running ones)."""
    from unigen.runs.rundir import write_run_file

    try:
        (sweep.directory / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnigenError.one("R002", f"cannot create sweep directory `{sweep.directory}`: {exc.strerror or exc}.", (), "check the path and its permissions, or choose another `--dir`.", exit_code=1) from None
    lock, finished = threading.Lock(), [0]
    write_state(sweep)
    n, points, seeds = len(sweep.runs), len(sweep.points), len(sweep.seeds)
    report(f"sweep {sweep.directory}: {n} run{'s' * (n != 1)} ({points} point{'s' * (points != 1)} x {seeds} seed{'s' * (seeds != 1)}), {jobs} at a time ({sweep.launcher})")

    def one(run: Run) -> None:
        with lock:
            if interrupted.is_set():
                return  # left pending: not run
            run.status = "running"
            write_state(sweep)
        started = time.monotonic()
        code, why = launch(sweep, run)
        with lock:
            finished[0] += 1
            _finish(sweep, run, code, why, round(time.monotonic() - started, 1))
            write_state(sweep)
            report(f"[{finished[0]}/{len(sweep.runs)}] {progress_line(sweep, run)}")

    interrupted = threading.Event()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep")
    old = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        for f in [pool.submit(one, r) for r in sweep.runs]:
            f.result()
    except KeyboardInterrupt:
        interrupted.set()
        stop()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    for r in sweep.runs:
        r.status = "not run" if r.status == "pending" else r.status
    write_state(sweep, final=True)
    write_run_file(sweep.directory / "sweep.md", sweep_markdown(sweep))
    return 130 if interrupted.is_set() else 1 if any(r.status != "done" for r in sweep.runs) else 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM to the sweep stops it as a Ctrl-C does: its runs are stopped, not left behind


def _finish(sweep: Sweep, run: Run, code: int | None, why: str, seconds: float) -> None:
    run.exit_code, run.seconds = code, seconds
    if code == 0:
        run.status = "done"
        return
    run.error = why or run_error(sweep.log(run), code)
    run.status = "stopped" if run.error.startswith("R003") else "failed"


def progress_line(sweep: Sweep, run: Run) -> str:
    if run.status == "done":
        return f"ok {run.name} ({run.seconds} s)"
    return f"{run.status.upper()} {run.name}: {run.error} (log: {sweep.log(run)})"


def run_error(log: Path, code: int | None) -> str:
    """The last coded message (not a warning) of a run's output, else what its exit says."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    coded = [m for ln in lines if not ln.startswith("warning:") and (m := CODED.search(ln.strip()))]
    if coded:
        text = f"{coded[-1].group(1)} {coded[-1].group(2)}".split(" Hint: ")[0]  # the log has the hint
        return text if len(text) <= 200 else text[:197] + "..."
    if code is not None and code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit {code}" + (f": {lines[-1].strip()[:200]}" if lines and lines[-1].strip() else "")


def write_state(sweep: Sweep, final: bool = False) -> None:
    from unigen.runs.rundir import write_run_file

    write_run_file(sweep.directory / "sweep.json", json.dumps(sweep_state(sweep, final), indent=2) + "\n")


def sweep_state(sweep: Sweep, final: bool = False) -> dict[str, Any]:
    """sweep.json: the grid, each point's runs and their state; at the end each point's final
    metrics (median, min, max and number of seeds)."""
    points = []
    for p in sweep.points:
        runs = [r for r in sweep.runs if r.point.index == p.index]
        entry: dict[str, Any] = {"index": p.index, "label": p.label, "values": dict(p.values), "overrides": list(p.overrides)}
        entry["runs"] = [{"seed": r.seed, "dir": r.name, "status": r.status, "exit_code": r.exit_code, "error": r.error, "seconds": r.seconds, "job_id": r.job_id,
                          "log": f"logs/{r.name}.log", "command": shlex.join(sweep.command(r))} for r in runs]
        if final:
            group = Group(p.label, [sweep_result(sweep, r) for r in runs])
            entry["metrics"] = {m: dict(zip(("median", "min", "max", "n"), s)) for m in metric_names([group]) if (s := stats(group.values(m)))}
        points.append(entry)
    axes = [{"key": a.key, "values": list(a.values)} for a in sweep.axes]
    fixed = [w for w in sweep.words if isinstance(w, str)]
    return {"sweep": 1, "spec": sweep.spec, "launcher": sweep.launcher, "axes": axes, "fixed": fixed, "seeds": sweep.seeds, "points": points}


# ------------------------------------------------------------------ local processes


def shared_threads(jobs: int) -> int:
    """Threads for each of `jobs` trainings side by side on this machine: its cores shared out
    (torch would otherwise give each one every core, and the runs slow each other down)."""
    return max(1, (os.cpu_count() or 1) // jobs)


class LocalProcesses:
    """Runs as child processes of the sweep, each in its own session: a Ctrl-C reaches the
    sweep alone, which stops every running training with one SIGTERM (it saves a checkpoint,
    R003). Each gets OMP_NUM_THREADS = the cores shared out over the jobs, unless it is set."""

    def __init__(self, jobs: int) -> None:
        self.env = dict(os.environ)
        self.env.setdefault("OMP_NUM_THREADS", str(shared_threads(jobs)))
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.lock, self.stopped = threading.Lock(), False

    def __call__(self, sweep: Sweep, run: Run) -> tuple[int | None, str]:
        try:
            with sweep.log(run).open("ab") as log, self.lock:
                proc = subprocess.Popen(sweep.command(run), stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
                self.running[run.name] = proc
                if self.stopped:  # the sweep was stopped while this one started
                    proc.send_signal(signal.SIGTERM)
        except OSError as exc:
            return None, f"cannot start `{sys.executable} -m unigen`: {exc.strerror or exc}"
        try:
            return proc.wait(), ""
        finally:
            with self.lock:
                self.running.pop(run.name, None)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for proc in self.running.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)


# ------------------------------------------------------------------ submitit


def import_submitit() -> Any:
    """submitit, or U005 saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise UnigenError.one("U005", "`--launcher submitit` needs the `submitit` package, which is not installed.", (), "`pip install submitit`, or use `--launcher local`.") from None
    return submitit


@dataclass
class SubmititOptions:
    cluster: str = "auto"  # auto (Slurm where `srun` is on PATH, else local), slurm, local
    folder: str | None = None  # submitit's files (default SWEEP/submitit)
    time_min: int = 60
    partition: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None


class SubmititJobs:
    """Each run a submitit job (`PointJob`), submitted when a thread is free and waited on."""

    def __init__(self, sweep: Sweep, options: SubmititOptions, jobs: int) -> None:
        submitit = import_submitit()
        folder = Path(options.folder) if options.folder else sweep.directory / "submitit"
        try:
            self.executor = submitit.AutoExecutor(folder=folder, cluster=None if options.cluster == "auto" else options.cluster)
        except (RuntimeError, ValueError) as exc:
            raise UnigenError.one("U005", f"`--cluster {options.cluster}`: submitit has no such executor here ({exc}).", (), "use `--cluster local`, or run the sweep where Slurm's `srun` is on PATH.") from None
        params = {"timeout_min": options.time_min, "name": f"unigen-{Path(sweep.spec).stem}", "gpus_per_node": options.gpus_per_node, "cpus_per_task": options.cpus_per_task, "slurm_partition": options.partition}
        self.executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        self.cluster = self.executor.cluster
        self.threads = options.cpus_per_task if self.cluster == "slurm" else shared_threads(jobs)
        self.lock = threading.Lock()  # submitit's executor and job polling, one thread at a time
        self.jobs: dict[str, Any] = {}
        self.stopped = False

    def __call__(self, sweep: Sweep, run: Run) -> tuple[int | None, str]:
        job_fn = PointJob(sweep.command(run), str(sweep.log(run).resolve()), os.getcwd(), self.threads)
        with self.lock:
            if self.stopped:
                return None, "not submitted: the sweep was stopped"
            try:
                job = self.executor.submit(job_fn)
            except Exception as exc:  # noqa: BLE001 (sbatch refused it, the folder cannot be written...)
                return None, f"submitit could not submit the job: {type(exc).__name__}: {str(exc).strip()[:200]}"
            run.job_id, self.jobs[run.name] = str(job.job_id), job
        try:
            while True:
                with self.lock:
                    if job.done():
                        return int(job.result()), ""
                time.sleep(0.5)
        except Exception as exc:  # noqa: BLE001 (the job itself failed: killed, out of requeues)
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            return None, f"submitit job {job.job_id}: {type(exc).__name__}: {lines[-1] if lines else ''}"[:300]
        finally:
            with self.lock:
                self.jobs.pop(run.name, None)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for job in self.jobs.values():
                job.cancel(check=False)


def _ignore_usr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # submitit's timeout signal is for the job, not its training


class PointJob:
    """A run as a submitit job: its `compile-and-train --resume auto` command in a child
    process. When the job is preempted or reaches its time limit (submitit's `checkpoint`), it
    stops the child with SIGTERM, which saves a checkpoint, and is requeued as the same
    command, which continues the run from that checkpoint."""

    def __init__(self, command: list[str], log: str, cwd: str, threads: int | None = None) -> None:
        self.command, self.log, self.cwd, self.threads = command, log, cwd, threads
        self._proc: subprocess.Popen[bytes] | None = None

    def __call__(self) -> int:
        env = dict(os.environ)
        threads = self.threads or env.get("SLURM_CPUS_PER_TASK")  # a Slurm job: the CPUs it was given
        if threads:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd, env=env, preexec_fn=_ignore_usr2, start_new_session=True)
            try:
                return self._proc.wait()
            except BaseException:  # cancelled (SIGINT), or submitit's handler requeued the job
                self.stop_child()
                raise

    def stop_child(self, grace_s: float = 120.0) -> None:
        """SIGTERM to the training, and its end awaited. Run from submitit's signal handler,
        which interrupts `Popen.wait` holding its lock: the child is reaped with os.waitpid."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already
                return
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.05)
        proc.kill()

    def checkpoint(self) -> Any:
        from submitit.helpers import DelayedSubmission

        self.stop_child()
        return DelayedSubmission(PointJob(self.command, self.log, self.cwd, self.threads))

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data, _proc=None)


# ------------------------------------------------------------------ tables


@dataclass
class Result:
    """One run as a table reads it: its final metrics when it finished."""

    path: Path
    seed: int | None
    status: str  # done, failed, stopped, not run, running, pending, unfinished
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Group:
    """The runs of one point (its seeds)."""

    label: str
    results: list[Result]

    def values(self, metric: str) -> list[float]:
        return [r.metrics[metric] for r in self.results if r.status == "done" and metric in r.metrics]


def final_metrics(run_dir: Path) -> dict[str, float] | None:
    """summary.json's numeric `metrics`; None without a readable summary.json."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        metrics = summary["metrics"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)} if isinstance(metrics, dict) else None


def sweep_result(sweep: Sweep, run: Run) -> Result:
    metrics = final_metrics(sweep.run_dir(run)) if run.status == "done" else None
    return Result(sweep.run_dir(run), run.seed, run.status, run.error, metrics or {})


def metric_names(groups: list[Group]) -> list[str]:
    """The final metrics of the finished runs, in the order first seen."""
    return list(dict.fromkeys(m for g in groups for r in g.results if r.status == "done" for m in r.metrics))


def stats(values: list[float]) -> tuple[float, float, float, int] | None:
    """(median, min, max, n) of the finite values; None when there is none."""
    finite = [v for v in values if math.isfinite(v)]
    return (statistics.median(finite), min(finite), max(finite), len(finite)) if finite else None


def cell(values: list[float]) -> str:
    """`median (min–max)` over the seeds; the value alone for one seed or equal values."""
    s = stats(values)
    if s is None:
        return "nan" if values else "—"
    med, lo, hi, _ = s
    return f"{med:.4g}" if lo == hi else f"{med:.4g} ({lo:.4g}–{hi:.4g})"


def runs_cell(group: Group) -> str:
    """`done/total`, and each failure's code with its seeds: `1/2; failed R001 (seed 1)`."""
    done = sum(r.status == "done" for r in group.results)
    text = f"{done}/{len(group.results)}"
    why: dict[str, list[str]] = {}
    for r in group.results:
        if r.status != "done":
            code = r.error.split(" ", 1)[0] if CODED.match(r.error) else ""
            why.setdefault(f"{r.status} {code}".strip(), []).append(str(r.seed) if r.seed is not None else r.path.name)
    parts = [f"{what} (seed{'s' * (len(seeds) > 1)} {', '.join(seeds)})" for what, seeds in why.items()]
    return "; ".join([text, *parts])


def markdown_table(groups: list[Group], metrics: list[str]) -> str:
    """A row per point: its label, its runs, and each metric's median (min–max) over its seeds."""
    head = ["#", "point", "runs", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, g in enumerate(groups):
        lines.append("| " + " | ".join([str(i), g.label.replace("|", "\\|"), runs_cell(g), *(cell(g.values(m)) for m in metrics)]) + " |")
    return "\n".join(lines) + "\n"


def sweep_markdown(sweep: Sweep) -> str:
    """sweep.md: what was swept, and the table of the points' final metrics."""
    groups = [Group(p.label or Path(sweep.spec).stem, [sweep_result(sweep, r) for r in sweep.runs if r.point.index == p.index]) for p in sweep.points]
    axes = "; ".join(f"`{a.key}` in {', '.join(a.values)}" for a in sweep.axes) or "none"
    fixed = " ".join(f"`{w}`" for w in sweep.words if isinstance(w, str)) or "none"
    lines = [f"# Sweep of `{sweep.spec}`", "", f"Axes: {axes}. Fixed: {fixed}. Seeds: {', '.join(map(str, sweep.seeds))}. Launcher: {sweep.launcher}.", "",
             markdown_table(groups, metric_names(groups)), "Each cell: the median (min–max) over the seeds of the point that finished; `runs`: finished of run.", ""]
    failed = [r for r in sweep.runs if r.status != "done"]
    if failed:
        lines += ["Runs that did not finish:", "", *(f"- `{r.name}`: {r.status}, {r.error or 'no message'} (log: `logs/{r.name}.log`)" for r in failed), ""]
    return "\n".join(lines)
