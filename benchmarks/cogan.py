"""CoGAN with and without weight sharing: does one z give a corresponding pair?

    OMP_NUM_THREADS=1 python benchmarks/cogan.py --seeds 0 --jobs 2

Trains `specs/cogan-digits.yaml` (generators sharing their trunk, discriminators their head)
and the same model with the sharing removed (`shared_hidden: []` on both networks, their own
layers deepened so that each port computes the same function class: each domain's generator
and discriminator keep 256-256 hidden units; nothing couples the two domains but the common z), on the same seeds, each with a full `compile-and-train`. It prints a
Markdown table of the `pair_agreement` metric against its shuffled floor (the agreement of the
same samples with one domain's rows permuted; near it: no coupling), Cohen's kappa between the
two, and the pixel error against the paired counterpart with its shuffled floor. The table
also goes to benchmarks/results/cogan.md. `--jobs N` trains N runs at once, each in its own
process with --threads torch threads (same results as one at a time: each run is seeded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
SPEC = ROOT / "specs" / "cogan-digits.yaml"
VARIANTS = {
    "shared (CoGAN)": [],
    "not shared": [
        "networks.g.shared_hidden=[]",
        "networks.g.own_hidden=[256, 256]",
        "networks.d.shared_hidden=[]",
        "networks.d.own_hidden=[256, 256]",
    ],
}
METRICS = ("pair_agreement", "pair_agreement_shuffled", "pair_kappa", "pair_agreement_real", "pair_label_mi", "pair_label_mi_shuffled", "pair_error", "pair_error_shuffled")


def run(variant: str, seed: int, overrides: list[str], threads: int) -> tuple[str, int, dict[str, float], float, int]:
    done = common.train(SPEC, seed, [*VARIANTS[variant], *overrides], threads=threads, device=None, then=lambda run: sum(p.numel() for p in run.model.nets.parameters()))
    return variant, seed, done.metrics, done.seconds, done.extra


def run_job(job: tuple) -> tuple:
    """`run` of one job tuple (what `common.imap` hands a spawned process)."""
    return run(*job)


def table(results: dict[str, dict[int, dict[str, float]]], seeds: list[int], params: dict[str, int]) -> str:
    lines = [
        "| variant | seed | pair_agreement | shuffled floor | kappa | label MI (nats) | shuffled floor | pair_error | shuffled floor | parameters |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, per in results.items():
        for s in seeds:
            m = per[s]
            lines.append(
                f"| {variant} | {s} | {m['pair_agreement']:.3f} | {m['pair_agreement_shuffled']:.3f} | {m['pair_kappa']:+.3f} "
                f"| {m['pair_label_mi']:.3f} | {m['pair_label_mi_shuffled']:.3f} | {m['pair_error']:.4f} | {m['pair_error_shuffled']:.4f} | {params[variant]:,} |"
            )
        if len(seeds) > 1:
            med = {k: statistics.median(per[s][k] for s in seeds) for k in METRICS}
            lines.append(
                f"| {variant} | median | {med['pair_agreement']:.3f} | {med['pair_agreement_shuffled']:.3f} | {med['pair_kappa']:+.3f} "
                f"| {med['pair_label_mi']:.3f} | {med['pair_label_mi_shuffled']:.3f} | {med['pair_error']:.4f} | {med['pair_error_shuffled']:.4f} | |"
            )
    return "\n".join(lines)


def reading(results: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> str:
    """What the table says, counted per seed."""
    shared, alone = results["shared (CoGAN)"], results["not shared"]
    mi_wins = sum(shared[s]["pair_label_mi"] > alone[s]["pair_label_mi"] for s in seeds)
    agree = {v: sum(r[s]["pair_kappa"] > 0.05 for s in seeds) for v, r in results.items()}
    return (
        f"\n\nLabel MI higher with sharing on {mi_wins} of {len(seeds)} seeds; kappa above 0.05 (agreement clearly above its floor) on "
        + ", ".join(f"{agree[v]} of {len(seeds)} seeds {v}" for v in results)
        + "."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--steps", type=int, default=0, help="override `train.steps` (0: the spec's own)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cogan.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    overrides = [f"train.steps={args.steps}"] if args.steps else []
    results: dict[str, dict[int, dict[str, float]]] = {v: {} for v in VARIANTS}
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    params: dict[str, int] = {}

    def record(variant: str, seed: int, metrics: dict[str, float], took: float, n_params: int) -> None:
        results[variant][seed] = {k: metrics[k] for k in METRICS}
        seconds[variant].append(took)
        params[variant] = n_params
        print(f"{variant} seed {seed}: pair_agreement {metrics['pair_agreement']:.3f} (shuffled {metrics['pair_agreement_shuffled']:.3f}), label MI {metrics['pair_label_mi']:.3f} (shuffled {metrics['pair_label_mi_shuffled']:.3f}), pair_error {metrics['pair_error']:.4f} (shuffled {metrics['pair_error_shuffled']:.4f}) ({took:.0f} s)", flush=True)

    jobs = [(v, seed, overrides, args.threads) for seed in args.seeds for v in VARIANTS]
    for result in common.imap(run_job, jobs, args.jobs):  # in this process, or in --jobs spawned ones
        record(*result)
    text = table(results, args.seeds, params) + reading(results, args.seeds)
    real = statistics.median(results[v][s]["pair_agreement_real"] for v in VARIANTS for s in args.seeds)
    note = (
        "\n\n`pair_agreement`: the fraction of 2000 pairs (G_a(z), G_b(z)), one z each, whose two images 1-nearest-neighbour classifiers of "
        "their own domain (fit on its training images and hidden labels) give the same digit; its shuffled floor is the expected agreement with "
        "b's rows permuted, sum_k p_a(k) p_b(k); kappa = (agreement - floor) / (1 - floor) (0: no coupling). The same classifiers agree on "
        f"{real:.3f} of the test split's true pairs (a ceiling). Label MI: the mutual information of the two labels, which counts any "
        "correspondence (a 3 paired with an inverted 8 too), against its mean over 20 shuffled pairings. `pair_error`: mean |G_b(z) - counterpart| per pixel, the counterpart being "
        "the inverted test digit paired with the test digit nearest to G_a(z) (lower is better; floor: the same under a shuffled pairing). "
        "Wall s per run (median): "
        + ", ".join(f"{v} {statistics.median(seconds[v]):.0f}" for v in VARIANTS)
        + f". torch {torch.__version__}, {args.threads} thread(s) per run, {args.jobs} run(s) at once, load average before {' '.join(f'{x:.2f}' for x in load)}"
        + (f", train.steps={args.steps}" if args.steps else ", the spec's own steps")
        + ".\n"
    )
    print(text + note)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(f"# CoGAN: pair agreement with and without weight sharing\n\n`{' '.join(['python', 'benchmarks/cogan.py', *sys.argv[1:]])}`\n\n" + text + note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
