"""What the benchmark scripts share: a spec trained at a seed through the public API
(`unigen.train`), runs spread over processes, median [min–max] cells, a table written with its
raw values beside it, and `--check`.

A script that writes `benchmarks/results/NAME.md` also writes `NAME.json` beside it: the
options that made the table and every value in it, keyed `row, seed S: metric`. With `--check`
the script reads that file, runs the same options again (writing nothing), and compares each
value with the stored one within the tolerance the script states for its metric (runs are
bit-deterministic on one kind of CPU at a seed, so the tolerances are tight). It exits 0 when none
moved, 1 with a table `value | stored | now | tolerance` of those that did (B002), and 2 when there
is nothing to check against (B001).

Bit-determinism holds on one kind of CPU only: another instruction set (AVX2 against AVX-512, say)
takes other kernels, whose rounding differs in the last bits, and a GAN's training amplifies that
into other trajectories. So the stored record names the machine that made it (`machine`: the CPU
model, torch's CPU capability, torch's version), and `--check` on another kind of machine says so
beside what moved.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# Options that say where the table goes or how fast it is made, not what is measured.
RUNTIME = ("out", "check", "jobs")
ANY = "*"  # in a tolerance table: the metrics it does not name
CHECK_HELP = "run the stored table's options again (its .json beside --out) and exit 1 if a value moved beyond its tolerance; writes nothing"


class Trained(NamedTuple):
    metrics: dict[str, float]
    summary: dict[str, Any]
    seconds: float
    extra: Any  # what `then(run)` returned


def train(spec: str | Path, seed: int, overrides: Iterable[str] = (), *, steps: int | None = None, threads: int | None = None,
          device: str | None = "cpu", registry: Any = None, then: Callable[[Any], Any] | None = None) -> Trained:
    """One `unigen.train` of `specs/SPEC.yaml` (or the spec file `spec`) at `train.seed=SEED`
    in a temporary run directory; `then(run)` reads what else the script needs from the run
    before the directory goes."""
    import torch

    import unigen

    if threads:
        torch.set_num_threads(threads)
    path = spec if isinstance(spec, Path) else ROOT / "specs" / f"{spec}.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = unigen.train(path, [f"train.seed={seed}", *overrides], out=f"{tmp}/run", steps=steps, device=device, registry=registry)
        seconds = time.perf_counter() - start
        extra = then(run) if then is not None else None
        return Trained(dict(run.summary["metrics"]), dict(run.summary), seconds, extra)


def imap(fn: Callable[[Any], Any], jobs: list[Any], processes: int = 1) -> Iterator[Any]:
    """`fn` over `jobs`, each result as its job ends: in this process, or in `processes`
    spawned ones (`fn` then a module-level function)."""
    if processes <= 1:
        yield from map(fn, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        yield from pool.imap_unordered(fn, jobs)


def cell(values: list[float], fmt: str) -> str:
    """Median [min–max] (the value alone for one run); a NaN (the spread of a run without a
    high-quality sample, say) is left out and counted."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "—"
    med = statistics.median(finite)
    text = fmt.format(med) if len(finite) == 1 else fmt.format(med) + " [" + fmt.format(min(finite)) + "–" + fmt.format(max(finite)) + "]"
    return text + (f" ({len(values) - len(finite)} run(s) without one)" if len(finite) < len(values) else "")


def key(row: str, seed: int, metric: str) -> str:
    """The name of one stored value: `row, seed S: metric`."""
    return f"{row}, seed {seed}: {metric}"


def store_of(out: str | Path) -> Path:
    return Path(out).with_suffix(".json")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """What `args` measure (the runtime options left out), as JSON."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in RUNTIME}


def again(parser: argparse.ArgumentParser, stored: Mapping[str, Any], args: argparse.Namespace) -> argparse.Namespace:
    """The namespace that made a stored table: the parser's defaults, the stored options, and
    this command's runtime options (--jobs, --out)."""
    runtime = {k: getattr(args, k) for k in RUNTIME if hasattr(args, k)}
    return argparse.Namespace(**{**vars(parser.parse_args([])), **stored, **runtime})


def write(out: str | Path, text: str, *, script: str, command: str, opts: Mapping[str, Any], values: Mapping[str, float],
          tolerance: Mapping[str, float], extra: Mapping[str, Any] | None = None) -> Path:
    """The table to `out` and, beside it, the values `--check` compares against (and `extra`,
    what else the script keeps to write the table again)."""
    unknown = sorted({metric_of(k) for k in values} - set(tolerance)) if ANY not in tolerance else []
    assert not unknown, f"{script} states no tolerance for {unknown}"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    store = store_of(out)
    record = {"script": script, "command": command, "machine": machine(), "options": dict(opts), "tolerance": dict(tolerance), "values": {k: plain(v) for k, v in values.items()}, **(extra or {})}
    store.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return store


def machine() -> dict[str, str]:
    """What the values depend on beyond the code: the CPU model, the instruction set torch's
    kernels use, torch's version."""
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "capability": str(torch.backends.cpu.get_cpu_capability()), "torch": torch.__version__}


def other_machine(stored: Mapping[str, Any] | None) -> str:
    """A note when the stored values were made on another kind of machine (or none is recorded)."""
    here = machine()
    if not stored:
        return f"Note: the stored record does not name the machine that made it; this one is {here['cpu']} ({here['capability']}, torch {here['torch']})."
    differs = [k for k in ("capability", "torch", "cpu") if stored.get(k) != here[k]]
    if not differs:
        return ""
    was = ", ".join(f"{k} {stored.get(k)!r}" for k in differs)
    now = ", ".join(f"{k} {here[k]!r}" for k in differs)
    return (f"Note: the stored values were made on another kind of machine ({was}; here: {now}). Runs are bit-deterministic on one kind "
            "of CPU only: a value that moved here may be rounding amplified by training, not a change of the code. Check on a machine "
            "like the one that made the table, or write the table again here.")


def plain(value: float | None) -> float | None:
    """A value as JSON holds it: NaN (a metric a run could not compute) as null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def metric_of(name: str) -> str:
    return name.rsplit(": ", 1)[-1]


class CheckError(Exception):
    """A coded message and the exit status for it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def load(out: str | Path, script: str) -> dict[str, Any]:
    """The stored record beside the table `out`, or B001 saying why there is none."""
    store = store_of(out)
    hint = f"Hint: run `python {script}` (with the options of the table you mean) without --check first: it writes {Path(out).name} and {store.name}."
    try:
        record = json.loads(store.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckError(f"B001 no stored values to check against: {store} does not exist. {hint}", 2) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckError(f"B001 {store} cannot be read as stored benchmark values ({exc}). {hint}", 2) from None
    if not isinstance(record, dict) or not isinstance(record.get("values"), dict) or not isinstance(record.get("options"), dict):
        raise CheckError(f"B001 {store} holds no `options` and `values` of a benchmark table. {hint}", 2)
    if record.get("script") != script:
        raise CheckError(f"B001 {store} was written by {record.get('script')!r}, not {script}. Hint: check it with that script, or give this one its own --out.", 2)
    return record


def close(stored: float | None, now: float | None, tolerance: float) -> bool:
    if stored is None or now is None:
        return stored is None and now is None
    return abs(now - stored) <= tolerance * (1 + 1e-9) + 1e-12


def show(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def moved(stored: Mapping[str, float | None], now: Mapping[str, float | None], tolerance: Mapping[str, float]) -> list[tuple[str, str, str, str]]:
    """`(value, stored, now, tolerance)` of each value that moved beyond its tolerance, or is
    in one of the two only (shown as —)."""
    rows = []
    for name in [*stored, *(k for k in now if k not in stored)]:
        tol = float(tolerance.get(metric_of(name), tolerance.get(ANY, 0.0)))
        was, is_ = plain(stored.get(name)), plain(now.get(name))
        if name not in stored or name not in now or not close(was, is_, tol):
            rows.append((name, show(was) if name in stored else "— (not stored)", show(is_) if name in now else "— (not measured)", "exact" if tol == 0 else f"± {tol:g}"))
    return rows


def check(out: str | Path, script: str, tolerance: Mapping[str, float], rerun: Callable[[dict[str, Any]], Mapping[str, float]],
          selected: Callable[[str], bool] = lambda name: True) -> int:
    """`--check`: run the stored options again (`rerun(options) -> values`) and compare the
    stored values that `selected` keeps; the exit status."""
    from unigen.errors import UnigenError

    try:
        record = load(out, script)
        expected = {k: v for k, v in record["values"].items() if selected(k)}
        if not expected:
            raise CheckError(f"B001 {store_of(out)} holds no values of what was asked. Hint: name rows it holds, or none to check them all.", 2)
        now = {k: v for k, v in rerun(record["options"]).items() if selected(k)}
    except CheckError as exc:
        print(exc, file=sys.stderr)
        return exc.status
    except UnigenError as exc:  # a stored option the specs no longer take, say
        print(f"{exc}\nB001 the stored options of {store_of(out)} no longer run. Hint: write the table again without --check.", file=sys.stderr)
        return 2
    rows = moved(expected, now, {**record.get("tolerance", {}), **tolerance})
    if not rows:
        print(f"{len(expected)} values of {store_of(out)} reproduced within tolerance.")
        return 0
    note = other_machine(record.get("machine"))
    table = ["| value | stored | now | tolerance |", "|---|---:|---:|---:|", *(f"| {' | '.join(r)} |" for r in rows)]
    print(
        f"B002 {len(rows)} of {len(expected)} values of {store_of(out)} moved beyond their tolerance:\n\n" + "\n".join(table)
        + (f"\n\n{note}" if note else "")
        + f"\n\nHint: if the change is meant, run `{record.get('command') or 'python ' + script}` without --check to write the table again, and update the README's figures taken from it.",
        file=sys.stderr,
    )
    return 1
