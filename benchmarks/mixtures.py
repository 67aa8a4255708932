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
to benchmarks/results/mixtures.md with the command that made it.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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
        "edges.1.objective=wasserstein", "edges.1.options={clip: 0.01}", *CRITIC5,
        "phases.discriminator.optim={kind: rmsprop, lr: 5e-5}", "phases.generator.optim={kind: rmsprop, lr: 5e-5}",
    ],
    "wgan_gp (lambda 10, 5 critic steps)": [
        "edges.1.objective=wgan_gp", "edges.1.options={gp: 10}", *CRITIC5,
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
    import torch

    import unigen

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = unigen.train(ROOT / "specs" / f"{BASE.get(label, 'gan')}-{data}.yaml", [f"train.seed={seed}", *overrides], out=f"{tmp}/run", steps=steps, device="cpu")
        metrics = run.summary["metrics"]
    return label, data, seed, metrics, time.perf_counter() - start


def cell(values: list[float], fmt: str) -> str:
    """Median [min–max]; a NaN (spread of a run without a high-quality sample) is left out and
    counted."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "—"
    med = statistics.median(finite)
    text = fmt.format(med) if len(finite) == 1 else fmt.format(med) + " [" + fmt.format(min(finite)) + "–" + fmt.format(max(finite)) + "]"
    return text + (f" ({len(values) - len(finite)} run(s) without one)" if len(finite) < len(values) else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs: 1,500 steps on the ring, 3,000 on the grid (the specs: 10,000 and 20,000)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    parser.add_argument("--only", nargs="*", help="labels (or prefixes) of the rows to run")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one torch thread each")
    parser.add_argument("--steps-ring", type=int, default=None, help="steps per ring run (default: the spec's 10,000; 1,500 with --quick)")
    parser.add_argument("--steps-grid", type=int, default=None, help="steps per grid run (default: the spec's 20,000; 3,000 with --quick)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mixtures.md"))
    args = parser.parse_args(argv)
    configs = {k: v for k, v in CONFIGS.items() if not args.only or any(k.startswith(o) for o in args.only)}
    steps = {"ring": 1500, "grid": 3000} if args.quick else {"ring": None, "grid": None}
    steps = {"ring": args.steps_ring or steps["ring"], "grid": args.steps_grid or steps["grid"]}
    jobs = [(label, data, ov[data] if isinstance(ov, dict) else ov, seed, steps[data], 1) for label, ov in configs.items() for data in args.data for seed in args.seeds]
    jobs.sort(key=lambda job: SPEC_STEPS[job[1]], reverse=True)  # the long runs first: the pool ends sooner
    results: dict[tuple[str, str], list[tuple[dict[str, float], float]]] = {}
    per_seed: list[str] = []
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) if args.jobs > 1 else _Serial() as pool:
        for label, data, seed, metrics, secs in pool.imap_unordered(one, jobs):
            results.setdefault((label, data), []).append((metrics, secs))
            line = f"{label} | {data} seed {seed}: modes {metrics['modes_captured']:.0f}, HQ {100 * metrics['hq_fraction']:.1f}%, spread {metrics.get('hq_spread', math.nan):.2f} ({secs:.0f} s)"
            per_seed.append(line)
            print(line, flush=True)
    header = "| objective / technique | " + " | ".join(f"{d} modes | {d} HQ | {d} spread | {d} s/run" for d in args.data) + " |"
    lines = [header, "|---|" + "---:|---:|---:|---:|" * len(args.data)]
    for label in configs:
        cells = []
        for data in args.data:
            rs = results.get((label, data), [])
            cells += [
                cell([m["modes_captured"] for m, _ in rs], "{:.0f}"),
                cell([100 * m["hq_fraction"] for m, _ in rs], "{:.1f}%"),
                cell([m.get("hq_spread", math.nan) for m, _ in rs], "{:.2f}"),
                f"{statistics.median(s for _, s in rs):.0f}",
            ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    import torch

    command = "python benchmarks/mixtures.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        f"# GAN objectives and techniques on the 2-D mixtures\n\n`{command.strip()}`\n\n"
        f"Median over seeds {args.seeds} [min–max]; {', '.join(f'{d} {steps[d] or SPEC_STEPS[d]:,} steps per run' + ('' if steps[d] is None else ' (the spec: ' + f'{SPEC_STEPS[d]:,})') for d in args.data)}; "
        f"2,500 samples scored; one torch thread per run, {args.jobs} run(s) at a time on {os.cpu_count()} CPU cores; torch {torch.__version__}; "
        f"{time.perf_counter() - start:.0f} s in all. Spread: the high-quality samples' RMS distance to their mode over the data's (1: as the data).\n\n" + "\n".join(lines) + "\n\n" + PUBLISHED + "\nEvery run:\n\n" + "\n".join(f"- {line}" for line in sorted(per_seed)) + "\n"
    )
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


class _Serial:
    def __enter__(self) -> "_Serial":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, fn, jobs):  # type: ignore[no-untyped-def]
        return map(fn, jobs)


if __name__ == "__main__":
    raise SystemExit(main())
