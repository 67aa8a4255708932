"""Where a run's time goes: a real `compile-and-train`, its pieces timed from the inside.

    python benchmarks/where_time_goes.py [--spec vae-digits] [--steps 3000] [--threads 1]

The run is `unigen.train` of a shipped spec at its own settings (`--steps` overrides
train.steps), in this process. Before it starts, the methods that do each piece of a run are
wrapped with a timer (wall time, inclusive, counted per call): the phases of each step, the
finiteness bookkeeping after a step, the logged rows (window means, learning rates), metrics.csv
and the trackers, the progress line, the health checks, the in-memory snapshot that a
non-finite loss rolls back to, evaluations, sample pictures, checkpoints and the finish. What is
left of the loop's time is the loop itself. The whole process (compile, build, the run
directory) is the wall time of the `unigen.train` call. The table goes to stdout and
benchmarks/results/where-time-goes-SPEC.md.

The timers cost a few microseconds a call; at a few milliseconds a step they move the shares by
well under a percent.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
SPENT: dict[str, float] = collections.defaultdict(float)
CALLS: dict[str, int] = collections.defaultdict(int)

# (what, class, method, key of the piece: a string, or a function of the call's arguments)
PIECES = [
    ("loop", "unigen.runs.loop:TrainingLoop", "steps", "the loop (steps)"),
    ("step", "unigen.training.trainer:Trainer", "step", "trainer.step"),
    ("phase", "unigen.training.trainer:Trainer", "run_phase", lambda self, runner: f"phase `{runner.plan.name}`"),
    ("checks", "unigen.training.nonfinite:FinitenessChecks", "end_of_step", "finiteness flags (end of step)"),
    ("checks", "unigen.training.nonfinite:FinitenessChecks", "check_pending", "finiteness flags (read)"),
    ("after", "unigen.runs.loop:TrainingLoop", "after_step", "after_step (all bookkeeping)"),
    ("row", "unigen.runs.loop:TrainingLoop", "row", "logged row (window means, lr, evaluations)"),
    ("eval", "unigen.runs.loop:TrainingLoop", "evaluate", "evaluations"),
    ("record", "unigen.runs.loop:TrainingLoop", "record", "metrics.csv and trackers"),
    ("progress", "unigen.runs.progress:Progress", "update", "progress line"),
    ("health", "unigen.training.trainer:Trainer", "check_health", "health checks"),
    ("snapshot", "unigen.training.trainer:Trainer", "snapshot", "snapshot for rollback"),
    ("samples", "unigen.runs.loop:TrainingLoop", "samples", "sample pictures"),
    ("ckpt", "unigen.runs.loop:TrainingLoop", "checkpoint", "checkpoints"),
    ("best", "unigen.runs.loop:TrainingLoop", "keep_if_best", "best checkpoint"),
    ("finish", "unigen.runs.loop:TrainingLoop", "finish", "finish (final samples, metrics, summary)"),
]


CONTEXTS = {"the loop (steps)": "loop", "finish (final samples, metrics, summary)": "finish"}
WHERE: list[str] = ["before"]  # the piece of the run a call happens in: before the loop, in it, in the finish


def timed(fn, key):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        name = key(*args, **kwargs) if callable(key) else key
        context = CONTEXTS.get(name)
        if context:
            WHERE.append(context)
        else:
            name = f"{WHERE[-1]}: {name}"
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - start
            CALLS[name] += 1
            if context:
                WHERE.pop()

    return wrapper


def instrument() -> None:
    import importlib

    for _what, where, method, key in PIECES:
        module, cls = where.split(":")
        klass = getattr(importlib.import_module(module), cls, None)
        if klass is None or not hasattr(klass, method):
            print(f"(no {where}.{method}: not timed)", file=sys.stderr)
            continue
        setattr(klass, method, timed(getattr(klass, method), key))


def table(steps: int, total: float) -> str:
    """The pieces by where they run: the loop (its steps and what comes between them) and the
    finish; each piece's seconds, share of the loop, calls and time a call."""
    loop, finish = SPENT["the loop (steps)"], SPENT["finish (final samples, metrics, summary)"]
    step = SPENT["loop: trainer.step"]
    phases = {k: v for k, v in SPENT.items() if k.startswith("loop: phase `")}
    after, snap = SPENT["loop: after_step (all bookkeeping)"], SPENT.get("loop: snapshot for rollback", 0.0)
    rows = [("whole `unigen.train` call", total, 1), ("before the loop: compile, build, run directory", total - loop - finish, 1), ("the loop", loop, 1)]
    rows += [(f"  {k.removeprefix('loop: ')}", v, CALLS[k]) for k, v in sorted(phases.items())]
    rows.append(("  the rest of trainer.step (freezing, finiteness flags, step count)", step - sum(phases.values()), CALLS["loop: trainer.step"]))
    rows.append(("  between steps (after_step)", after, CALLS["loop: after_step (all bookkeeping)"]))
    inner = ("logged row (window means, lr, evaluations)", "evaluations", "metrics.csv and trackers", "progress line", "health checks", "sample pictures", "checkpoints", "best checkpoint")
    rows += [(f"  {k} (anywhere in the loop)", SPENT[f"loop: {k}"], CALLS[f"loop: {k}"]) for k in inner if CALLS.get(f"loop: {k}")]
    if snap:
        rows.append(("  snapshot for rollback (after each logged step)", snap, CALLS["loop: snapshot for rollback"]))
    rows.append(("  the loop's own code and the last checkpoint (what is left)", loop - step - after - snap, steps))
    in_loop = len(rows)  # the rows so far from "the loop" on get a share of it
    rows.append(("the finish", finish, 1))
    rows += [(f"  {k.removeprefix('finish: ')}", v, CALLS[k]) for k, v in SPENT.items() if k.startswith("finish: ")]
    lines = ["| piece | s | share of the loop | calls | ms a call |", "|---|---:|---:|---:|---:|"]
    for i, (name, seconds, calls) in enumerate(rows):
        share = f"{100 * seconds / loop:.1f}%" if loop and 2 <= i < in_loop else ""
        lines.append(f"| {name} | {seconds:.3f} | {share} | {calls} | {1000 * seconds / max(calls, 1):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="vae-digits")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import torch

    import unigen

    torch.set_num_threads(args.threads)
    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        unigen.train(ROOT / "specs" / f"{args.spec}.yaml", [], out=f"{tmp}/run", steps=args.steps, device="cpu")
        total = time.perf_counter() - start
    machine = common.machine()
    text = (f"# Where a run's time goes: {args.spec}, {args.steps:,} steps\n\n`python benchmarks/where_time_goes.py --spec {args.spec} --steps {args.steps} --threads {args.threads}`\n\n"
            f"{machine['cpu']} ({machine['capability']}), torch {machine['torch']}, {args.threads} thread(s), {os.cpu_count()} cores. Wall seconds, inclusive "
            "(an indented piece is inside the one above it).\n\n" + table(args.steps, total) + "\n")
    print(text)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"where-time-goes-{args.spec}.md"
    out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
