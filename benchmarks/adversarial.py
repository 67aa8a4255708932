"""Full runs of the adversarial families over several seeds, in parallel processes.

    python benchmarks/adversarial.py                          # every set, seeds 0 1 2, one process
    python benchmarks/adversarial.py --jobs 16                # the same, 16 runs at a time
    python benchmarks/adversarial.py --sets iw dann --seeds 0 1 2 --jobs 6

Sets (each a list of configurations: a shipped spec, possibly with overrides):

- `iw`: gan-ring against the same spec with an importance-weighted generator loss (Hu et al.
  2018), on the same seeds; per seed, modes captured, high-quality fraction and mode KL.
- `iw-nor1`: the same pair with the discriminator's R1 penalty removed (a less stable GAN).
- `iw-grid`: the same pair on gan-grid (25 modes, 20k steps: slow).
- `dann`: dann-digits (adversarial link on the features) against source-only-digits (the
  same networks without it); target- and source-domain test accuracy.
- `single`: cyclegan-digits, vaegan-digits and the two hybrids, first seed only.

Each run is a real `compile-and-train` at the spec's own settings (one torch thread per
process), scored by the metrics in its summary. The Markdown table goes to
benchmarks/results/adversarial.md (or `--out`), its values to adversarial.json beside it;
`--check` runs the stored options again and fails when a value moved (see benchmarks/common.py).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
SCRIPT = "benchmarks/adversarial.py"
# --check: how far a value may move from the stored one (the runs are bit-deterministic on the CPU).
TOLERANCE = {"modes_captured": 0, "hq_fraction": 0.005, "mode_kl": 0.002, "target_accuracy": 0.005, "source_accuracy": 0.005, common.ANY: 0.001}
IW = "phases.generator.terms=[{term: adversarial.g, options: {importance_weighted: true}}]"
NO_R1 = "~edges.1.options"  # the discriminator without its R1 penalty

# set -> [(label, spec, overrides, metrics shown)]
SETS: dict[str, list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]] = {
    "iw": [
        ("gan-ring", "gan-ring", (), ("modes_captured", "hq_fraction", "mode_kl")),
        ("gan-ring + importance_weighted", "gan-ring", (IW,), ("modes_captured", "hq_fraction", "mode_kl")),
    ],
    "iw-nor1": [
        ("gan-ring without R1", "gan-ring", (NO_R1,), ("modes_captured", "hq_fraction", "mode_kl")),
        ("gan-ring without R1 + importance_weighted", "gan-ring", (NO_R1, IW), ("modes_captured", "hq_fraction", "mode_kl")),
    ],
    "iw-grid": [
        ("gan-grid", "gan-grid", (), ("modes_captured", "hq_fraction", "mode_kl")),
        ("gan-grid + importance_weighted", "gan-grid", (IW,), ("modes_captured", "hq_fraction", "mode_kl")),
    ],
    "dann": [
        ("source-only-digits", "source-only-digits", (), ("target_accuracy", "source_accuracy")),
        ("dann-digits", "dann-digits", (), ("target_accuracy", "source_accuracy")),
    ],
    "single": [
        ("cyclegan-digits", "cyclegan-digits", (), ("translation_mae", "translation_mae_mean_image", "translation_match")),
        ("vaegan-digits", "vaegan-digits", (), ("recon_error",)),
        ("hybrid-vaegan-iw", "hybrid-vaegan-iw", (), ("recon_error",)),
        ("hybrid-aae-infogan", "hybrid-aae-infogan", (), ("recon_error",)),
    ],
}
SINGLE_SEED = {"single"}


def one_run(job: tuple[str, str, tuple[str, ...], int, int | None]) -> tuple[str, int, dict[str, float], float]:
    """Train one configuration on one seed in this process; its label, seed, summary metrics and wall time."""
    label, spec, overrides, seed, steps = job
    run = common.train(spec, seed, overrides, steps=steps, threads=1, device=None)
    return label, seed, run.metrics, run.seconds


def cell(values: list[float]) -> str:
    shown = " / ".join(f"{v:.4g}" for v in values)
    return f"{statistics.median(values):.4g}" + (f" ({shown})" if len(values) > 1 else "")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["iw", "dann", "single"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process with one torch thread")
    ap.add_argument("--steps", type=int, default=None, help="override every spec's train.steps (a smoke test, not a result)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adversarial.md"))
    ap.add_argument("--check", action="store_true", help=common.CHECK_HELP)
    return ap


def seeds_of(args: argparse.Namespace, name: str) -> list[int]:
    return args.seeds[:1] if name in SINGLE_SEED else args.seeds


def measure(args: argparse.Namespace) -> dict[tuple[str, int], tuple[dict[str, float], float]]:
    """(configuration, seed) -> (summary metrics, wall seconds) of every run `args` ask for."""
    jobs = [(label, spec, overrides, seed, args.steps) for name in args.sets for label, spec, overrides, _ in SETS[name] for seed in seeds_of(args, name)]
    results: dict[tuple[str, int], tuple[dict[str, float], float]] = {}
    for label, seed, metrics, seconds in common.imap(one_run, jobs, args.jobs):
        results[(label, seed)] = (metrics, seconds)
        print(f"{label} seed {seed}: {metrics} ({seconds:.0f} s)", flush=True)
    return results


def values(args: argparse.Namespace, results: dict[tuple[str, int], tuple[dict[str, float], float]]) -> dict[str, float]:
    """What --check compares: each run's shown metrics."""
    return {
        common.key(label, seed, k): results[(label, seed)][0].get(k, math.nan)
        for name in args.sets for label, _spec, _ov, shown in SETS[name] for seed in seeds_of(args, name) for k in shown
    }


def render(args: argparse.Namespace, results: dict[tuple[str, int], tuple[dict[str, float], float]], command: str, total: float) -> str:
    lines = [f"`{command}`", ""]
    for name in args.sets:
        seeds = seeds_of(args, name)
        lines += [f"### {name}", "", "| configuration | seeds | metric: median (per seed) | wall s (median) |", "|---|---|---|---:|"]
        for label, _spec, _overrides, shown in SETS[name]:
            runs = [results[(label, s)] for s in seeds]
            metrics = "; ".join(f"{k} = {cell([m[k] for m, _ in runs])}" for k in shown if all(k in m for m, _ in runs))
            lines.append(f"| {label} | {' '.join(map(str, seeds))} | {metrics} | {statistics.median(s for _, s in runs):.0f} |")
        lines.append("")
    import torch

    steps = f", train.steps={args.steps} (smoke test)" if args.steps else ""
    lines.append(f"torch {torch.__version__}, 1 thread per run, {args.jobs} run(s) at a time on {os.cpu_count()} CPU cores, {total:.0f} s in all{steps}")
    return "# Adversarial families: full runs\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.check:
        return common.check(args.out, SCRIPT, TOLERANCE, lambda stored: values(common.again(ap, stored, args), measure(common.again(ap, stored, args))))
    start = time.perf_counter()
    results = measure(args)
    command = ("python benchmarks/adversarial.py " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    text = render(args, results, command, time.perf_counter() - start)
    print(text)
    common.write(args.out, text, script=SCRIPT, command=command, opts=common.options(args), values=values(args, results), tolerance=TOLERANCE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
