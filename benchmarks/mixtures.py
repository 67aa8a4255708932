"""Every adversarial objective and GAN technique on the VEEGAN ring and grid: modes captured
and high-quality samples, median and spread over seeds, beside the published values.

    python benchmarks/mixtures.py --quick --jobs 2      # short runs, for a loaded machine
    python benchmarks/mixtures.py --seeds 0 1 2          # the specs' own step counts

Protocol (Srivastava et al. 2017, VEEGAN): 2,500 samples from the trained generator; a sample
is high quality when it lies within 3 sigma of its nearest mode; a mode is captured when it is
the nearest mode of at least one high-quality sample (the `modes` metric). `spread` is the RMS
distance of the high-quality samples to their mode over the data's own (1: as spread as the
data; near 0: modes collapsed to points, which the high-quality share alone would reward). Each row starts from
specs/gan-ring.yaml or specs/gan-grid.yaml (the rows with several generators from
specs/madgan-* and specs/multigen-*) and changes only what its label says. The table goes
to benchmarks/results/mixtures.md with the command that made it, and every run's values to
mixtures.json beside it.

    python benchmarks/mixtures.py --check --jobs 2       # the stored table's runs again

`--check` runs the options stored in mixtures.json again and exits 1, with a table of what
moved, when a value left its tolerance: modes exactly, the high-quality share by 0.5
percentage points, the spread by 0.02 (see benchmarks/common.py).
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
SCRIPT = "benchmarks/mixtures.py"
# --check: how far a value may move from the stored one (the runs are bit-deterministic on the CPU).
TOLERANCE = {"modes_captured": 0, "hq_fraction": 0.005, "hq_spread": 0.02}

PLAIN = ["edges.1.options.r1=0"]
SPEC_STEPS = {"ring": 10000, "grid": 20000}  # specs/gan-ring.yaml and specs/gan-grid.yaml
CRITIC5 = ["phases.discriminator.repeats=5"]
# label -> overrides of the base spec (which is a non-saturating GAN with R1)
# label -> overrides of the base spec, or {data: overrides} where they differ by data set
CONFIGS: dict[str, list[str] | dict[str, list[str]]] = {
    "minimax": ["edges.1.objective=minimax", *PLAIN],
    "nonsaturating": ["edges.1.objective=nonsaturating", *PLAIN],
    "hinge": ["edges.1.objective=hinge", *PLAIN],
    "least_squares": ["edges.1.objective=least_squares", *PLAIN],
    "wasserstein (clip 0.01, RMSProp 5e-5, 5 critic steps)": [
        "edges.1.objective=wasserstein", "~edges.1.options", "+edges.1.options={clip: 0.01}", *CRITIC5,  # `~` then `+`: replaced, not merged
        "~phases.discriminator.optim", "+phases.discriminator.optim={kind: rmsprop, lr: 5e-5}", "~phases.generator.optim", "+phases.generator.optim={kind: rmsprop, lr: 5e-5}",
    ],
    "wgan_gp (lambda 10, 5 critic steps)": [
        "edges.1.objective=wgan_gp", "~edges.1.options", "+edges.1.options={gp: 10}", *CRITIC5,
        "phases.discriminator.optim={kind: adam, lr: 1e-4, betas: [0.5, 0.9]}", "phases.generator.optim={kind: adam, lr: 1e-4, betas: [0.5, 0.9]}",
    ],
    "nonsaturating + R1 (the spec)": [],
    "nonsaturating + label smoothing 0.9": [*PLAIN, "edges.1.options.real_label=0.9"],
    "nonsaturating + PacGAN pack 4": [*PLAIN, "edges.1.options.pack=4"],
    "nonsaturating + feature matching": [*PLAIN, "phases.generator.terms=[feature_matching]"],
    "nonsaturating + R1 + EMA 0.999": ["networks.generator.ema=0.999"],
    "k generators + R1 + EMA 0.999 + cosine lr (multigen specs)": [],
    "MAD-GAN: k generators, D also tells which (k = modes)": [],
    "multigen with twice as many generators as modes": {"ring": ["variables.c.shape=[16]"], "grid": ["variables.c.shape=[50]"]},
    "multigen with half as many generators as modes": {"ring": ["variables.c.shape=[4]"], "grid": ["variables.c.shape=[12]"]},
}
# The base spec of a row, `<base>-<data>.yaml` (default `gan`).
BASE = {
    "MAD-GAN: k generators, D also tells which (k = modes)": "madgan",
    "k generators + R1 + EMA 0.999 + cosine lr (multigen specs)": "multigen",
    "multigen with twice as many generators as modes": "multigen",
    "multigen with half as many generators as modes": "multigen",
}

PUBLISHED = """\
Published (same protocol; VEEGAN Table 1, Srivastava et al. 2017; GDPP, Elfeki et al. 2019):

| model | ring modes (of 8) | ring HQ | grid modes (of 25) | grid HQ |
|---|---:|---:|---:|---:|
| GAN | 1 | 99.3% | 3.3 | 0.5% |
| ALI | 2.8 | 0.13% | 15.8 | 1.6% |
| Unrolled GAN | 7.6 | 35.6% | 23.6 | 16% |
| VEEGAN | 8 | 52.9% | 24.6 | 40% |
| WGAN-GP (GDPP paper) | 6.8 | 59.6% | 24.2 | 28.7% |
| GDPP-GAN | 8 | 71.7% | 24.8 | 68.5% |
"""


def one(job: tuple[str, str, list[str], int, int | None, int]) -> tuple[str, str, int, dict[str, float], float]:
    label, data, overrides, seed, steps, threads = job
    run = common.train(f"{BASE.get(label, 'gan')}-{data}", seed, overrides, steps=steps, threads=threads)
    return label, data, seed, run.metrics, run.seconds


cell = common.cell


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs: 1,500 steps on the ring, 3,000 on the grid (the specs: 10,000 and 20,000)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--data", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    ap.add_argument("--only", nargs="*", help="labels (or prefixes) of the rows to run")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel, one torch thread each")
    ap.add_argument("--steps-ring", type=int, default=None, help="steps per ring run (default: the spec's 10,000; 1,500 with --quick)")
    ap.add_argument("--steps-grid", type=int, default=None, help="steps per grid run (default: the spec's 20,000; 3,000 with --quick)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mixtures.md"))
    ap.add_argument("--check", action="store_true", help=common.CHECK_HELP)
    return ap


def selection(args: argparse.Namespace) -> tuple[dict[str, list[str] | dict[str, list[str]]], dict[str, int | None]]:
    """The rows and the steps per data set that `args` ask for."""
    configs = {k: v for k, v in CONFIGS.items() if not args.only or any(k.startswith(o) for o in args.only)}
    steps = {"ring": 1500, "grid": 3000} if args.quick else {"ring": None, "grid": None}
    return configs, {"ring": args.steps_ring or steps["ring"], "grid": args.steps_grid or steps["grid"]}


def measure(args: argparse.Namespace) -> tuple[dict[tuple[str, str], list[tuple[int, dict[str, float], float]]], list[str]]:
    """(row, data) -> [(seed, metrics, seconds)], and a line per run as it ended."""
    configs, steps = selection(args)
    jobs = [(label, data, ov[data] if isinstance(ov, dict) else ov, seed, steps[data], 1) for label, ov in configs.items() for data in args.data for seed in args.seeds]
    jobs.sort(key=lambda job: SPEC_STEPS[job[1]], reverse=True)  # the long runs first: the pool ends sooner
    results: dict[tuple[str, str], list[tuple[int, dict[str, float], float]]] = {}
    per_seed: list[str] = []
    for label, data, seed, metrics, secs in common.imap(one, jobs, args.jobs):
        results.setdefault((label, data), []).append((seed, metrics, secs))
        line = f"{label} | {data} seed {seed}: modes {metrics['modes_captured']:.0f}, HQ {100 * metrics['hq_fraction']:.1f}%, spread {metrics.get('hq_spread', math.nan):.2f} ({secs:.0f} s)"
        per_seed.append(line)
        print(line, flush=True)
    return results, per_seed


def values(results: dict[tuple[str, str], list[tuple[int, dict[str, float], float]]]) -> dict[str, float]:
    """What --check compares: each run's modes, high-quality share and spread."""
    return {common.key(f"{label}, {data}", seed, k): m.get(k, math.nan) for (label, data), rs in results.items() for seed, m, _ in sorted(rs, key=lambda r: r[0]) for k in TOLERANCE}


def render(args: argparse.Namespace, results: dict[tuple[str, str], list[tuple[int, dict[str, float], float]]], per_seed: list[str], command: str, seconds: float) -> str:
    configs, steps = selection(args)
    header = "| objective / technique | " + " | ".join(f"{d} modes | {d} HQ | {d} spread | {d} s/run" for d in args.data) + " |"
    lines = [header, "|---|" + "---:|---:|---:|---:|" * len(args.data)]
    for label in configs:
        cells = []
        for data in args.data:
            rs = results.get((label, data), [])
            cells += [
                cell([m["modes_captured"] for _, m, _ in rs], "{:.0f}"),
                cell([100 * m["hq_fraction"] for _, m, _ in rs], "{:.1f}%"),
                cell([m.get("hq_spread", math.nan) for _, m, _ in rs], "{:.2f}"),
                f"{statistics.median(s for _, _, s in rs):.0f}",
            ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    import torch

    return (
        f"# GAN objectives and techniques on the 2-D mixtures\n\n`{command}`\n\n"
        f"Median over seeds {args.seeds} [min–max]; {', '.join(f'{d} {steps[d] or SPEC_STEPS[d]:,} steps per run' + ('' if steps[d] is None else ' (the spec: ' + f'{SPEC_STEPS[d]:,})') for d in args.data)}; "
        f"2,500 samples scored; one torch thread per run, {args.jobs} run(s) at a time on {os.cpu_count()} CPU cores; torch {torch.__version__}; "
        f"{seconds:.0f} s in all. Spread: the high-quality samples' RMS distance to their mode over the data's (1: as the data).\n\n" + "\n".join(lines) + "\n\n" + PUBLISHED + "\nEvery run:\n\n" + "\n".join(f"- {line}" for line in sorted(per_seed)) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.check:
        return common.check(args.out, SCRIPT, TOLERANCE, lambda stored: values(measure(common.again(ap, stored, args))[0]))
    start = time.perf_counter()
    results, per_seed = measure(args)
    command = ("python benchmarks/mixtures.py " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    text = render(args, results, per_seed, command, time.perf_counter() - start)
    print(text)
    common.write(args.out, text, script=SCRIPT, command=command, opts=common.options(args), values=values(results), tolerance=TOLERANCE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
