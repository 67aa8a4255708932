"""Boltzmann machines on the binarised digits: exact test NLL against AIS and reverse AIS.

    OMP_NUM_THREADS=1 python benchmarks/energy.py --jobs 2
    python benchmarks/energy.py --only rbm16-cd1 dbm --steps 2000 --betas 2000   # a quicker look

Runs (all seed 0, the specs' own settings and step count unless --steps):

- RBM, 64 visible and 16 or 20 hidden units (`specs/rbm-digits.yaml`, `variables.h.shape=[20]`),
  trained by CD-1, CD-10 (`samplers.m.steps=10`) and PCD-1 (`samplers.m.persistent=true`), all
  at the spec's SGD (lr 0.1, momentum 0.5), and PCD-1 again at lr 0.02;
- the DBM 64-16-8 (`specs/dbm-digits.yaml`), PCD-1 with 10 mean-field sweeps.

Each run is a full `unigen.train`; its exact test NLL (`exact_nll`: the 2^16 or 2^20 hidden
states listed, the visible units summed out) comes from the run's summary. Then `ais` on its
last checkpoint: log Z by AIS (chains x betas, from independent Bernoulli units at the training
means) and by reverse AIS (from 1000-step Gibbs chains started at training rows). The table
shows the three test NLLs, the AIS gaps to the exact value, and the wall times; the baseline
is the independent-Bernoulli model AIS starts from. Written to benchmarks/results/energy.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
RESULTS = common.RESULTS
H20 = "variables.h.shape=[20]"
CD10 = "samplers.m.steps=10"
PCD = "samplers.m.persistent=true"
SLOW = "train.optim={kind: sgd, lr: 0.02, momentum: 0.5}"  # PCD's chains fall behind the spec's lr 0.1

# key -> (label, spec, overrides)
RUNS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "rbm16-cd1": ("RBM 64-16, CD-1", "rbm-digits", ()),
    "rbm16-cd10": ("RBM 64-16, CD-10", "rbm-digits", (CD10,)),
    "rbm16-pcd1": ("RBM 64-16, PCD-1", "rbm-digits", (PCD,)),
    "rbm16-pcd1-lr02": ("RBM 64-16, PCD-1, lr 0.02", "rbm-digits", (PCD, SLOW)),
    "rbm20-cd1": ("RBM 64-20, CD-1", "rbm-digits", (H20,)),
    "rbm20-cd10": ("RBM 64-20, CD-10", "rbm-digits", (H20, CD10)),
    "rbm20-pcd1": ("RBM 64-20, PCD-1", "rbm-digits", (H20, PCD)),
    "rbm20-pcd1-lr02": ("RBM 64-20, PCD-1, lr 0.02", "rbm-digits", (H20, PCD, SLOW)),
    "dbm": ("DBM 64-16-8, PCD-1 + mean field", "dbm-digits", ()),
}


def one(key: str, steps: int | None, chains: int, betas: int, threads: int) -> dict:
    """Train one configuration and score it: exact (from training) and AIS (afterwards)."""
    from unigen_energy.metrics import bernoulli_baseline

    def score(run) -> dict:  # noqa: ANN001  (AIS on the last checkpoint, before the run directory goes)
        start = time.perf_counter()
        ais = run.evaluate(["ais"], {"ais": {"chains": chains, "betas": betas, "seed": 0}})
        ais_s = time.perf_counter() - start
        model = run.model
        train = model.observed_batch(model.dataset.train)["v"]
        test = model.observed_batch(model.dataset.test)["v"]
        return {"ais_s": ais_s, **ais, "baseline": bernoulli_baseline(train, test), "rows": (len(train), len(test))}

    label, spec, overrides = RUNS[key]
    done = common.train(spec, 0, overrides, steps=steps, threads=threads, device=None, then=score)
    return {"key": key, "label": label, "steps": done.summary["steps"], "train_s": done.seconds, **done.metrics, **done.extra}


NOTES = """Reading: with an effective sample size near the number of chains, what separates AIS and reverse AIS
from the exact value here is noise of a few hundredths of a nat; their expected signs (AIS low, reverse AIS high) show
only when the annealing is short (`tests/test_energy.py` checks them on a tiny RBM with 10 betas). PCD-1 with 100 chains
needs a smaller learning rate than CD here (presumably its chains fall behind the model at lr 0.1).

For orientation only (MNIST at 28x28, 784 pixels, not these digits): PyDeep's tutorial RBM with 16 hidden units trained by
PCD-1 (100 chains, lr 0.01, 50 epochs) reports an exact test log-likelihood of -142.56 nats centred and -149.05 without
centring (docs/tutorials/RBM_MNIST_small.rst of MelJan/PyDeep).

"""


def table(rows: list[dict], chains: int, betas: int) -> str:
    head = "| model | steps | exact test NLL | AIS | AIS - exact | reverse AIS | RAIS - exact | ESS | train NLL | train s | AIS s |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        ex, ais, rais = r["test_nll_exact"], r.get("test_nll_ais", float("nan")), r.get("test_nll_rais", float("nan"))
        lines.append(f"| {r['label']} | {r['steps']} | {ex:.3f} | {ais:.3f} | {ais - ex:+.3f} | {rais:.3f} | {rais - ex:+.3f} | {r['ais_ess']:.1f} | {r['train_nll_exact']:.3f} | {r['train_s']:.0f} | {r['ais_s']:.0f} |")
    base = rows[0]["baseline"]
    n_train, n_test = rows[0]["rows"]
    return (
        "# Boltzmann machines on the binarised digits\n\n"
        f"Test negative log-likelihood in nats per example ({n_test} test rows, {n_train} training rows: the project's fixed split of "
        "scikit-learn's 8x8 digits, pixels > 0.5 set to 1). Seed 0 throughout. Exact: the smaller colour class listed (2^16 or 2^20 "
        "hidden states for the RBMs, h1's 2^16 for the DBM's log Z and h2's 2^8 per test row), the other summed analytically, in "
        f"float64. AIS: {chains} chains, {betas} equally spaced betas, from independent Bernoulli units at the training means; "
        "reverse AIS: the same schedule backwards from 1000-step Gibbs chains started at training rows (an upper bound on log Z in "
        "expectation only when those are exact model samples). AIS NLLs use the exact log p*(v) and the estimated log Z. ESS: "
        f"effective sample size of the AIS weights (of {chains}). Wall times on a shared, loaded 2-core CPU.\n\n"
        + head + "\n".join(lines)
        + f"\n\nBaseline: independent Bernoulli pixels at the smoothed training means, {base:.3f} nats.\n\n"
        + NOTES
        + "Command: `OMP_NUM_THREADS=1 python benchmarks/energy.py --jobs 2`\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), help="these runs only (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the specs' own)")
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--betas", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, in separate processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", type=Path, default=RESULTS / "energy.md")
    args = parser.parse_args()
    keys = args.only or list(RUNS)
    jobs = [(k, args.steps, args.chains, args.betas, args.threads) for k in keys]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(one, *zip(*jobs)))
    else:
        rows = [one(*j) for j in jobs]
    for r in rows:
        print(f"{r['label']}: exact {r['test_nll_exact']:.3f}, AIS {r.get('test_nll_ais', float('nan')):.3f}, RAIS {r.get('test_nll_rais', float('nan')):.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(rows, args.chains, args.betas))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
