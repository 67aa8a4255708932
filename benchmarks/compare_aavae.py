"""VAE against the adversary-activated VAE on the same seeds: held-out negative ELBO.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/compare_aavae.py --seeds 0 1 2 --threads 1
    OMP_NUM_THREADS=1 python benchmarks/compare_aavae.py --seeds 0 1 2 --jobs 6   # 6 runs at once

Trains `specs/vae-digits.yaml` and `specs/aa-vae-digits.yaml` (the same encoder, decoder,
optimizer and steps; AA-VAE adds a discriminator and the ELBO on generated samples weighted by
it) for each seed with a full `compile-and-train`, and prints a Markdown table of `test_nelbo`
(nats, lower is better) per seed, the per-seed difference and the medians. The table also goes
to benchmarks/results/compare_aavae.md. `--jobs N` trains N runs at once, each in its own
process with --threads torch threads (same results as one at a time: each run is seeded).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
SPECS = ("vae-digits", "aa-vae-digits")
METRICS = ("test_nelbo", "test_recon", "test_kl")


def run(name: str, seed: int, overrides: list[str], threads: int) -> tuple[str, int, dict[str, float], float]:
    done = common.train(name, seed, overrides, threads=threads, device=None)
    return name, seed, done.metrics, done.seconds


def run_job(job: tuple) -> tuple:
    """`run` of one job tuple (what `common.imap` hands a spawned process)."""
    return run(*job)


def table(results: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> str:
    vae, aa = results[SPECS[0]], results[SPECS[1]]
    lines = [
        "| seed | VAE test_nelbo | AA-VAE test_nelbo | AA − VAE | VAE recon / KL | AA-VAE recon / KL |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in seeds:
        lines.append(
            f"| {s} | {vae[s]['test_nelbo']:.3f} | {aa[s]['test_nelbo']:.3f} | {aa[s]['test_nelbo'] - vae[s]['test_nelbo']:+.3f} "
            f"| {vae[s]['test_recon']:.2f} / {vae[s]['test_kl']:.2f} | {aa[s]['test_recon']:.2f} / {aa[s]['test_kl']:.2f} |"
        )
    med = {k: statistics.median(r[s]["test_nelbo"] for s in seeds) for k, r in results.items()}
    diff = statistics.median(aa[s]["test_nelbo"] - vae[s]["test_nelbo"] for s in seeds)
    lines.append(f"| median | {med[SPECS[0]]:.3f} | {med[SPECS[1]]:.3f} | {diff:+.3f} | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--steps", type=int, default=0, help="override both specs' `train.steps` (0: the specs' own)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare_aavae.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [f"train.steps={args.steps}"] if args.steps else []
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in SPECS}
    seconds: dict[str, list[float]] = {name: [] for name in SPECS}

    def record(name: str, seed: int, metrics: dict[str, float], took: float) -> None:
        results[name][seed] = {k: metrics[k] for k in METRICS}
        seconds[name].append(took)
        print(f"{name} seed {seed}: test_nelbo {metrics['test_nelbo']:.3f} ({took:.0f} s)", flush=True)

    jobs = [(name, seed, overrides, args.threads) for seed in args.seeds for name in SPECS]
    for result in common.imap(run_job, jobs, args.jobs):  # in this process, or in --jobs spawned ones
        record(*result)
    text = table(results, args.seeds)
    wins = sum(results[SPECS[1]][s]["test_nelbo"] < results[SPECS[0]][s]["test_nelbo"] for s in args.seeds)
    note = (
        f"\n\nHeld-out negative ELBO on the binarised digits' test split (nats, one-sample bound with fixed evaluation noise; lower is better). "
        f"AA-VAE lower on {wins} of {len(args.seeds)} seeds. Wall s per run (median): "
        + ", ".join(f"{n} {statistics.median(seconds[n]):.0f}" for n in SPECS)
        + f". torch {torch.__version__}, {args.threads} thread(s) per run, {args.jobs} run(s) at once"
        + (f", train.steps={args.steps}" if args.steps else ", the specs' own steps")
        + ".\n"
    )
    print(text + note)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
