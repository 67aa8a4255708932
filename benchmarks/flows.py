"""RealNVP on the VEEGAN ring and grid: the held-out exact negative log-likelihood against the
floor (the mixture's own differential entropy), and the modes the samples cover.

    python benchmarks/flows.py                    # both specs, seed 0, the specs' step counts
    python benchmarks/flows.py --seeds 0 1 2      # several seeds (median [min-max])
    python benchmarks/flows.py --steps 20000      # longer runs (the schedule stretched to them)

The model has no latent, so `test_nelbo` (the `elbo` metric on the test split) is the exact
NLL, -E_test[log p(x)] in nats. No density can do better on average than the data's own:
E[-log p_data(x)] = H(p_data), the differential entropy of the mixture of K equal Gaussians
N(m_k, sigma^2 I) in 2-D. When the modes are far apart against sigma (here 77 sigma on the ring
and 40 on the grid) the components barely overlap and
H = log K + log(2 pi e sigma^2) (that is, log K + 2 * (1/2) log(2 pi e sigma^2)); the table
also gives a Monte Carlo estimate, -mean log p_data over 1,000,000 draws from the mixture, using
the dataset's own modes and sigma (its `info`). The `modes` metric scores 2,500 samples as in
the VEEGAN protocol: high quality within 3 sigma of the nearest mode, a mode captured when it is
the nearest of at least one high-quality sample. The table goes to benchmarks/results/flows.md
with the command that made it, each run's values to flows.json beside it.

    python benchmarks/flows.py --check            # the stored table's runs again

`--check` runs the stored options again (writing nothing) and exits 1 with a table of what
moved when a value left its tolerance: the NLL by 0.02 nats, modes exactly, the high-quality
share by 0.5 percentage points, the spread by 0.02 (TOLERANCE below).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
SCRIPT = "benchmarks/flows.py"
# --check: how far a value may move from the stored one (the runs are bit-deterministic on the CPU).
TOLERANCE = {"test_nelbo": 0.02, "modes_captured": 0, "hq_fraction": 0.005, "hq_spread": 0.02}
SPECS = {"ring": ROOT / "specs" / "realnvp-ring.yaml", "grid": ROOT / "specs" / "realnvp-grid.yaml"}
SOURCES = {"ring": "ring2d", "grid": "grid2d"}


@functools.cache
def floor(data: str, draws: int = 1_000_000, seed: int = 0) -> tuple[float, float, float]:
    """The mixture's differential entropy in nats: (analytic for separated modes, Monte Carlo
    estimate, its standard error), from the dataset's modes and sigma."""
    import torch

    from unigen.api.registry import default_registry

    kind = default_registry().get("datasets", SOURCES[data])
    info = kind.load(kind.Options(n_train=1, n_test=1)).info
    modes, sigma = info["modes"].double(), float(info["sigma"])
    k = len(modes)
    analytic = math.log(k) + math.log(2 * math.pi * math.e * sigma**2)
    gen = torch.Generator().manual_seed(seed)
    x = modes[torch.randint(k, (draws,), generator=gen)] + sigma * torch.randn(draws, 2, generator=gen, dtype=torch.float64)
    # log p(x) = logsumexp_k [-|x - m_k|^2 / (2 sigma^2)] - log K - log(2 pi sigma^2)
    sq = torch.cdist(x, modes).pow(2)
    logp = torch.logsumexp(-sq / (2 * sigma**2), 1) - math.log(k) - math.log(2 * math.pi * sigma**2)
    return analytic, float(-logp.mean()), float(logp.std() / math.sqrt(draws))


def one(data: str, seed: int, steps: int | None, threads: int) -> tuple[dict[str, float], float, int]:
    # Another step count stretches the spec's learning-rate schedule to it.
    run = common.train(SPECS[data], seed, [f"train.optim.lr_steps={steps}"] if steps else [], steps=steps, threads=threads)
    return run.metrics, run.seconds, int(run.summary["steps"])


cell = common.cell


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--data", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    ap.add_argument("--steps", type=int, default=None, help="steps per run, the learning rate's half cosine stretched to them (default: the spec's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (one: these small networks gain nothing from a second, and lose much on a busy machine)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "flows.md"))
    ap.add_argument("--check", action="store_true", help=common.CHECK_HELP)
    return ap


def measure(args: argparse.Namespace) -> dict[str, list[tuple[int, dict[str, float], float, int]]]:
    """data -> [(seed, metrics, wall seconds, steps)], a line printed as each run ends."""
    out: dict[str, list[tuple[int, dict[str, float], float, int]]] = {}
    for data in args.data:
        for seed in args.seeds:
            metrics, wall, steps = one(data, seed, args.steps, args.threads)
            out.setdefault(data, []).append((seed, metrics, wall, steps))
            print(line(data, seed, metrics, wall, steps, floor(data)[1]), flush=True)
    return out


def line(data: str, seed: int, metrics: dict[str, float], wall: float, steps: int, mc: float) -> str:
    return (f"{data} seed {seed}: {steps} steps, test NLL {metrics['test_nelbo']:.3f} nats (floor {mc:.3f}), modes {metrics['modes_captured']:.0f}/{metrics['modes_total']:.0f}, "
            f"HQ {100 * metrics['hq_fraction']:.1f}%, spread {metrics.get('hq_spread', math.nan):.2f}, {wall:.0f} s")


def values(runs: dict[str, list[tuple[int, dict[str, float], float, int]]]) -> dict[str, float]:
    return {common.key(data, seed, k): m.get(k, math.nan) for data, rs in runs.items() for seed, m, _, _ in rs for k in TOLERANCE}


def render(args: argparse.Namespace, runs: dict[str, list[tuple[int, dict[str, float], float, int]]], command: str) -> str:
    rows, per_run = [], []
    for data, results in runs.items():
        analytic, mc, se = floor(data)
        per_run += [line(data, seed, m, wall, steps, mc) for seed, m, wall, steps in results]
        nll = [m["test_nelbo"] for _, m, _, _ in results]
        rows.append(
            f"| {data} ({SPECS[data].relative_to(ROOT)}, {results[-1][3]:,} steps) | {cell(nll, '{:.3f}')} | {analytic:.3f} | {mc:.3f} ± {se:.3f} | {cell([v - mc for v in nll], '{:.3f}')} | "
            f"{cell([m['modes_captured'] for _, m, _, _ in results], '{:.0f}')} / {results[0][1]['modes_total']:.0f} | {cell([100 * m['hq_fraction'] for _, m, _, _ in results], '{:.1f}%')} | "
            f"{cell([m.get('hq_spread', math.nan) for _, m, _, _ in results], '{:.2f}')} | {cell([w for _, _, w, _ in results], '{:.0f}')} |"
        )
    import torch

    header = "| data (spec) | held-out NLL (nats) | floor: log K + log(2πeσ²) | floor: Monte Carlo (10⁶ draws) | gap | modes captured | HQ samples | HQ spread | wall s |"
    return (
        f"# RealNVP on the 2-D mixtures: exact NLL against the mixture's entropy\n\n`{command}`\n\n"
        f"Seeds {args.seeds} (median [min–max] over seeds); {args.threads} torch thread(s) per run, runs one after another on {os.cpu_count()} CPU cores; torch {torch.__version__}. "
        "Held-out NLL: `test_nelbo`, the exact -E_test[log p(x)] (the model has no latent). Floor: the differential entropy of the data's mixture, "
        "analytic for separated modes and by Monte Carlo from the dataset's modes and sigma (± one standard error); gap: NLL minus the Monte Carlo floor. "
        "Modes and HQ: the `modes` metric on 2,500 samples (VEEGAN protocol); spread: the high-quality samples' RMS distance to their mode over the data's (1: as the data). "
        "Wall: the whole `unigen.train` call, evaluation included.\n\n"
        + header + "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\nEvery run:\n\n" + "\n".join(f"- {r}" for r in per_run) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.check:
        return common.check(args.out, SCRIPT, TOLERANCE, lambda stored: values(measure(common.again(ap, stored, args))))
    runs = measure(args)
    command = ("python benchmarks/flows.py " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    text = render(args, runs, command)
    print(text)
    common.write(args.out, text, script=SCRIPT, command=command, opts=common.options(args), values=values(runs), tolerance=TOLERANCE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
