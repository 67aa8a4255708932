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
with the command that made it.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = {"ring": ROOT / "specs" / "realnvp-ring.yaml", "grid": ROOT / "specs" / "realnvp-grid.yaml"}
SOURCES = {"ring": "ring2d", "grid": "grid2d"}


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
    import torch

    import unigen

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        # Another step count stretches the spec's learning-rate schedule to it.
        overrides = [f"train.seed={seed}"] + ([f"train.optim.lr_steps={steps}"] if steps else [])
        run = unigen.train(SPECS[data], overrides, out=f"{tmp}/run", steps=steps, device="cpu")
        wall = time.perf_counter() - start
        return dict(run.summary["metrics"]), wall, int(run.summary["steps"])


def cell(values: list[float], fmt: str) -> str:
    """Median [min-max] over seeds (the value alone for one seed)."""
    med = statistics.median(values)
    return fmt.format(med) if len(values) == 1 else f"{fmt.format(med)} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--data", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    parser.add_argument("--steps", type=int, default=None, help="steps per run, the learning rate's half cosine stretched to them (default: the spec's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (one: these small networks gain nothing from a second, and lose much on a busy machine)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "flows.md"))
    args = parser.parse_args(argv)
    rows, per_run = [], []
    for data in args.data:
        analytic, mc, se = floor(data)
        results = []
        for seed in args.seeds:
            metrics, wall, steps = one(data, seed, args.steps, args.threads)
            results.append((metrics, wall))
            line = (f"{data} seed {seed}: {steps} steps, test NLL {metrics['test_nelbo']:.3f} nats (floor {mc:.3f}), modes {metrics['modes_captured']:.0f}/{metrics['modes_total']:.0f}, "
                    f"HQ {100 * metrics['hq_fraction']:.1f}%, spread {metrics.get('hq_spread', math.nan):.2f}, {wall:.0f} s")
            per_run.append(line)
            print(line, flush=True)
        nll = [m["test_nelbo"] for m, _ in results]
        rows.append(
            f"| {data} ({SPECS[data].relative_to(ROOT)}, {steps:,} steps) | {cell(nll, '{:.3f}')} | {analytic:.3f} | {mc:.3f} ± {se:.3f} | {cell([v - mc for v in nll], '{:.3f}')} | "
            f"{cell([m['modes_captured'] for m, _ in results], '{:.0f}')} / {results[0][0]['modes_total']:.0f} | {cell([100 * m['hq_fraction'] for m, _ in results], '{:.1f}%')} | "
            f"{cell([m.get('hq_spread', math.nan) for m, _ in results], '{:.2f}')} | {cell([w for _, w in results], '{:.0f}')} |"
        )
    import torch

    command = "python benchmarks/flows.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = "| data (spec) | held-out NLL (nats) | floor: log K + log(2πeσ²) | floor: Monte Carlo (10⁶ draws) | gap | modes captured | HQ samples | HQ spread | wall s |"
    text = (
        f"# RealNVP on the 2-D mixtures: exact NLL against the mixture's entropy\n\n`{command.strip()}`\n\n"
        f"Seeds {args.seeds} (median [min–max] over seeds); {args.threads} torch thread(s) per run, runs one after another on {os.cpu_count()} CPU cores; torch {torch.__version__}. "
        "Held-out NLL: `test_nelbo`, the exact -E_test[log p(x)] (the model has no latent). Floor: the differential entropy of the data's mixture, "
        "analytic for separated modes and by Monte Carlo from the dataset's modes and sigma (± one standard error); gap: NLL minus the Monte Carlo floor. "
        "Modes and HQ: the `modes` metric on 2,500 samples (VEEGAN protocol); spread: the high-quality samples' RMS distance to their mode over the data's (1: as the data). "
        "Wall: the whole `unigen.train` call, evaluation included.\n\n"
        + header + "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\nEvery run:\n\n" + "\n".join(f"- {line}" for line in per_run) + "\n"
    )
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
