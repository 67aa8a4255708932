"""Full runs of shipped specs over several seeds: a Markdown table of their summary metrics.

    python benchmarks/specs.py                       # every spec in specs/, seed 0
    python benchmarks/specs.py gan-ring gan-grid --seeds 0 1 2 --threads 1
    python benchmarks/specs.py gan-ring --check      # gan-ring's stored seeds again

Each run is a real `compile-and-train` at the spec's own settings; the table shows every
seed's value, the median, and the wall time. Results go to benchmarks/results/specs.md, and
each run's values to specs.json beside it. The specs run replace their rows; the rows of
other specs stay as they were.

`--check` runs each named spec (default: every stored one) again at its stored seeds,
threads and steps, writes nothing, and exits 1 with a table of what moved when a value left
its tolerance (TOLERANCE below; the runs are bit-deterministic on the CPU at a seed).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
SCRIPT = "benchmarks/specs.py"
SHOWN = ("test_nelbo", "iwae_nll", "modes_captured", "hq_fraction", "hq_spread", "mode_kl", "recon_error", "test_accuracy", "cond_accuracy")
# --check: how far a value may move from the stored one; `*` for a metric not named here.
TOLERANCE = {
    "test_nelbo": 0.02, "iwae_nll": 0.02, "modes_captured": 0, "hq_fraction": 0.005, "hq_spread": 0.02, "mode_kl": 0.002, "recon_error": 0.0005,
    "test_accuracy": 0.005, "cond_accuracy": 0.005, common.ANY: 0.001,
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="*", help="spec names (default: all in specs/; with --check, every stored one)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: the spec's own)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "specs.md"))
    ap.add_argument("--check", action="store_true", help=common.CHECK_HELP)
    return ap


def measure(name: str, seeds: list[int], threads: int, steps: int | None) -> tuple[dict[int, dict[str, float]], list[float]]:
    """seed -> the run's summary metrics, and the wall seconds of each run."""
    import unigen

    if threads:
        torch.set_num_threads(threads)
    registry = unigen.default_registry()
    per_seed: dict[int, dict[str, float]] = {}
    seconds: list[float] = []
    for seed in seeds:
        run = common.train(name, seed, steps=steps, registry=registry)
        per_seed[seed] = run.metrics
        seconds.append(run.seconds)
        print(f"{name} seed {seed}: {run.metrics} ({run.seconds:.0f} s)", flush=True)
    return per_seed, seconds


def values(name: str, per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    first = per_seed[min(per_seed)]
    keys = [k for k in SHOWN if k in first] or list(first)[:3]
    return {common.key(name, seed, k): float(m[k]) for seed, m in per_seed.items() for k in keys}


def row(name: str, stored: dict[str, float | None], seconds: list[float]) -> str:
    """The table's row of one spec, from its stored values."""
    mine = {k: v for k, v in stored.items() if k.startswith(f"{name}, seed ")}
    keys = list(dict.fromkeys(common.metric_of(k) for k in mine))
    seeds = list(dict.fromkeys(k[len(name) + 7 :].split(":")[0] for k in mine))
    cells = []
    for k in keys:
        got = [mine[common.key(name, int(s), k)] for s in seeds]
        per = [float("nan") if v is None else v for v in got]
        shown = " / ".join(f"{v:.4g}" for v in per)
        cells.append(f"{k} = {statistics.median(per):.4g}" + (f" ({shown})" if len(per) > 1 else ""))
    return f"| {name} | {len(seeds)} | {'; '.join(cells)} | {statistics.median(seconds):.0f} |"


def render(record: dict) -> str:
    runs = record["options"]["runs"]
    table = "\n".join([
        "| spec | seeds | metric: median (per seed) | wall s (median) |",
        "|---|---:|---|---:|",
        *(row(name, record["values"], record["made"][name]["seconds"]) for name in runs),
    ])
    groups: dict[str, list[str]] = {}  # how the rows were made -> their specs
    for name in runs:
        made = record["made"][name]
        groups.setdefault(f"torch {made['torch']}, {made['threads']} thread(s), seeds {runs[name]['seeds']}", []).append(name)
    note = "; ".join(how + ("" if len(groups) == 1 else f" ({', '.join(names)})") for how, names in groups.items())
    commands: dict[str, list[str]] = {}  # rows written by different commands: which by which
    for name in runs:
        commands.setdefault(record["made"][name]["command"], []).append(name)
    if len(commands) > 1:
        note += "\n\nRows by command: " + "; ".join(f"`{c}`: {', '.join(names)}" for c, names in commands.items())
    return table + f"\n\n{note}\n"


def stored(out: str) -> dict:
    """The record so far: the rows of the specs not run now are kept."""
    try:
        return common.load(out, SCRIPT)
    except common.CheckError:
        return {"options": {"runs": {}}, "values": {}, "made": {}}


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.check:
        return check(args)
    names = args.specs or [p.stem for p in sorted((ROOT / "specs").glob("*.yaml"))]
    record = stored(args.out)
    command = ("python benchmarks/specs.py " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    for name in names:
        per_seed, seconds = measure(name, args.seeds, args.threads, args.steps)
        record["values"] = {k: v for k, v in record["values"].items() if not k.startswith(f"{name}, seed ")} | values(name, per_seed)
        record["options"]["runs"][name] = {"seeds": args.seeds, "threads": args.threads, "steps": args.steps}
        record["made"][name] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "seconds": seconds, "command": command}
    text = render(record)
    print(text)
    common.write(args.out, text, script=SCRIPT, command=command, opts=record["options"], values=record["values"], tolerance=TOLERANCE, extra={"made": record["made"]})
    return 0


def check(args: argparse.Namespace) -> int:
    def rerun(options: dict) -> dict[str, float]:
        now: dict[str, float] = {}
        for name, how in options["runs"].items():
            if not args.specs or name in args.specs:
                now |= values(name, measure(name, how["seeds"], how["threads"], how.get("steps"))[0])
        return now

    return common.check(args.out, SCRIPT, TOLERANCE, rerun, lambda k: not args.specs or k.split(", seed ")[0] in args.specs)


if __name__ == "__main__":
    raise SystemExit(main())
