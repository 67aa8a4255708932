"""VAE variants on the digits: M2's test accuracy with 10% of the labels (with and without the
adversary-activated term), and the held-out negative ELBO of beta-VAE, CVAE and AA-CVAE.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vae_variants.py m2-digits aa-m2-digits --seeds 0 1 2 --jobs 2
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vae_variants.py beta-vae-digits cvae-digits --seeds 0
    # M2's classifier trained on the labelled 10% alone (no generative model), stored as m2-digits[labelled-only]:
    python benchmarks/vae_variants.py m2-digits --tag labelled-only --seeds 0 1 2 \
        --set 'phases.0.terms=[{term: label_nll, on: q_y}]' --set 'phases.0.update=[classifier]' \
        --set networks.encoder.trainable=false --set networks.decoder.trainable=false

Each run is a full `compile-and-train` of `specs/<name>.yaml` at the spec's own settings (only
`train.seed` changes, and `train.steps` with --steps). `--jobs N` trains N runs at once in
separate processes, each with --threads torch threads. Every run's metrics and wall time are
added to benchmarks/results/vae_variants.json (keyed by spec and seed, so separate invocations
add up), and the Markdown table of everything in it is written to
benchmarks/results/vae_variants.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHOWN = ("test_accuracy", "test_nelbo", "test_recon", "test_kl", "cond_accuracy")
# M2 pairs compared seed by seed: (baseline, adversary-activated).
PAIRS = (("m2-digits", "aa-m2-digits"), ("cvae-digits", "aa-cvae-digits"), ("vae-digits", "aa-vae-digits"))

NOTE = r"""
Digits: sklearn's 8x8 digits, binarised, the project's fixed train/test split. `test_accuracy`:
the most probable class of q(y|x) on every test row (M2 sees 10% of the training labels, the same
share of each class, fixed by `data.label_seed`). `test_nelbo`: one-sample negative ELBO on the
test split with fixed evaluation noise, in nats (lower is better); for M2 it is the labelled
bound L(x, y) with the test labels shown. Wall times were measured on a shared, loaded machine.

`m2-digits[labelled-only]`: M2's classifier trained by `label_nll` on the labelled rows alone
(encoder and decoder untrained, so its `test_nelbo` means nothing): what the 10% of labels give
without the generative model.

Literature, for orientation only (different data, networks and label counts, not comparable):
Kingma, Rezende, Mohamed & Welling (2014) report 11.97% (± 1.71) test error for M2 on MNIST
with 100 labels (28x28 images, 50,000 training images); the digits here are 8x8, with about
1,400 training images of which about 140 keep their label. Hu et al. (2018, Table 2) report test
accuracy 0.9768 for SVAE (M2) and 0.9797 for AA-SVAE on MNIST with 10% of the labels (0.9412 and
0.9425 with 1%), and (Table 3) test lower bounds of -102.63 (CVAE) and -101.63 nats (AA-CVAE) on
MNIST with 10% of the training data: MNIST at 28x28, not these digits; only the direction compares.

Commands (each adds its runs to vae_variants.json and rewrites this file from all of it):

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vae_variants.py m2-digits aa-m2-digits --seeds 0 1 2 --jobs 2
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vae_variants.py m2-digits aa-m2-digits --seeds 3 4 --jobs 2
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vae_variants.py beta-vae-digits cvae-digits aa-cvae-digits --seeds 0 --jobs 2
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vae_variants.py cvae-digits aa-cvae-digits --seeds 1 2 --jobs 2
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vae_variants.py m2-digits --tag labelled-only --seeds 0 1 2 --jobs 2 \
        --set 'phases.0.terms=[{term: label_nll, on: q_y}]' --set 'phases.0.update=[classifier]' \
        --set networks.encoder.trainable=false --set networks.decoder.trainable=false
"""


def train_one(job: tuple[str, int, int, int, tuple[str, ...]]) -> tuple[str, int, dict[str, float], float]:
    name, seed, steps, threads, extra = job
    run = common.train(name, seed, [*extra] + ([f"train.steps={steps}"] if steps else []), threads=threads)
    return name, seed, {k: float(v) for k, v in run.metrics.items() if isinstance(v, (int, float))}, run.seconds


def fmt(values: list[float], digits: int) -> str:
    med = statistics.median(values)
    shown = f"{med:.{digits}f}"
    return shown + (f" ({' / '.join(f'{v:.{digits}f}' for v in values)})" if len(values) > 1 else "")


def render(results: dict[str, dict[str, dict]]) -> str:
    lines = [
        "| spec | seeds | steps | test_accuracy | test error % | test_nelbo | recon / KL | wall s (median) |",
        "|---|---|---:|---|---|---|---|---:|",
    ]
    for name in sorted(results):
        runs = results[name]
        seeds = sorted(runs, key=int)
        m = [runs[s]["metrics"] for s in seeds]
        acc = [r["test_accuracy"] for r in m if "test_accuracy" in r]
        cells = [
            fmt(acc, 4) if len(acc) == len(m) else "",
            fmt([100 * (1 - a) for a in acc], 2) if len(acc) == len(m) else "",
            fmt([r["test_nelbo"] for r in m], 3),
            f"{statistics.median(r['test_recon'] for r in m):.2f} / {statistics.median(r['test_kl'] for r in m):.2f}",
        ]
        steps = sorted({runs[s]["steps"] for s in seeds})
        lines.append(f"| {name} | {', '.join(seeds)} | {'/'.join(str(s) for s in steps)} | {' | '.join(cells)} | {statistics.median(runs[s]['seconds'] for s in seeds):.0f} |")
    text = "\n".join(lines) + "\n\nMedian over seeds, each seed's value in brackets (in the order of the seeds column).\n"
    for base, aa in PAIRS:
        if base in results and aa in results:
            common = sorted(set(results[base]) & set(results[aa]), key=int)
            if not common:
                continue
            for key in ("test_accuracy", "test_nelbo"):
                if not all(key in results[n][s]["metrics"] for n in (base, aa) for s in common):
                    continue
                diffs = [results[aa][s]["metrics"][key] - results[base][s]["metrics"][key] for s in common]
                better = sum((d > 0) if key == "test_accuracy" else (d < 0) for d in diffs)
                text += f"\n{aa} − {base}, {key}, seed by seed ({', '.join(common)}): {' / '.join(f'{d:+.4f}' for d in diffs)}; {aa} better on {better} of {len(common)}."
    return text + "\n" + NOTE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", help="spec names in specs/, e.g. m2-digits aa-m2-digits (none: only rewrite the table from the results file)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--steps", type=int, default=0, help="override `train.steps` (0: the specs' own)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every run (with --tag)")
    parser.add_argument("--tag", default="", help="store the runs as `<spec>[<tag>]` (needed with --set)")
    parser.add_argument("--results", default=str(RESULTS / "vae_variants.json"), help="JSON file the runs are added to")
    parser.add_argument("--out", default=str(RESULTS / "vae_variants.md"))
    args = parser.parse_args()
    for name in args.specs:
        if not (ROOT / "specs" / f"{name}.yaml").is_file():
            parser.error(f"no spec specs/{name}.yaml")
    if args.set and not args.tag:
        parser.error("--set changes the specs: name the variant with --tag")
    store = Path(args.results)
    results: dict[str, dict[str, dict]] = json.loads(store.read_text()) if store.is_file() else {}
    jobs = [(name, seed, args.steps, args.threads, tuple(args.set)) for seed in args.seeds for name in args.specs]

    def record(name: str, seed: int, metrics: dict[str, float], seconds: float) -> None:
        steps = args.steps or None
        if steps is None:
            import unigen

            steps = unigen.compile(ROOT / "specs" / f"{name}.yaml").train.steps
        key = f"{name}[{args.tag}]" if args.tag else name
        results.setdefault(key, {})[str(seed)] = {"metrics": metrics, "seconds": round(seconds, 1), "steps": steps, "torch": torch.__version__, "threads": args.threads, "jobs": args.jobs, "overrides": args.set}
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in SHOWN if k in metrics)
        print(f"{key} seed {seed}: {shown} ({seconds:.0f} s)", flush=True)
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for done in as_completed([pool.submit(train_one, job) for job in jobs]):
                record(*done.result())
    else:
        for job in jobs:
            record(*train_one(job))
    text = render(results)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
