"""AVB against a VAE with the same 2-D latent, both scored by the exact held-out -log p(x)
(quadrature over the latent, `nll_quadrature`), and AVB on the paper's four-point toy data,
whose optimum is log 4 = 1.386 nats.

    OMP_NUM_THREADS=1 python benchmarks/avb.py --seeds 0

Rows: `avb-toy`, `avb-digits` (specs at their own settings), and `vae-digits[z2]`
(specs/vae-digits.yaml with `variables.z.shape=[2]` and `train.steps` set to avb-digits's).
Results go to benchmarks/results/avb.json (keyed by row and seed) and benchmarks/results/avb.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
RESULTS = common.RESULTS
ROWS = {
    "avb-toy": ("avb-toy", []),
    "avb-digits": ("avb-digits", []),
    "vae-digits[z2]": ("vae-digits", ["variables.z.shape=[2]", "train.steps=4000", "train.best={metric: test_nll_quadrature, mode: min}", "train.eval_every=1000"]),
}
NOTE = """
`test_nll_quadrature`: -log p(x) on the test split in nats per example, exact up to the grid
(201 x 201 points over [-6, 6]^2 of the standard-normal prior), at the best evaluation (every
1,000 steps). The four-point toy's optimum is log 4 = 1.386 nats: every point equally likely.
Mescheder et al. (2017) report on MNIST (their repository's README): AVB ELBO -82.3 and AIS
-81.8 nats with a 32-d latent and adaptive contrast — other data and latent size; only the
direction (AVB's implicit posterior at least as good as the VAE's Gaussian one) compares.
"""


def run(row: str, seed: int) -> tuple[dict[str, float], float]:
    spec, overrides = ROWS[row]
    done = common.train(spec, seed, overrides)
    best = done.summary.get("best") or {}
    metrics = dict(done.metrics)
    if best.get("value") is not None:
        metrics["best_" + best.get("metric", "")] = best["value"]
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, done.seconds


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| row | seeds | test_nll_quadrature (best eval; median, range) | final | wall s |", "|---|---|---|---|---|"]
    for row in ROWS:
        runs = results.get(row, {})
        if not runs:
            continue
        best = [r.get("best_test_nll_quadrature", r["test_nll_quadrature"]) for r in runs.values()]
        final = [r["test_nll_quadrature"] for r in runs.values()]
        wall = [r["wall_s"] for r in runs.values()]
        span = f" ({min(best):.3f}–{max(best):.3f})" if len(best) > 1 else ""
        lines.append(f"| `{row}` | {', '.join(sorted(runs))} | {statistics.median(best):.3f}{span} | {statistics.median(final):.3f} | {statistics.median(wall):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="*", help=f"rows to run (default: all of {', '.join(ROWS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; expected some of {list(ROWS)}")
    args.rows = args.rows or list(ROWS)
    torch.set_num_threads(1)
    store = RESULTS / "avb.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    for row in args.rows:
        for seed in args.seeds:
            metrics, seconds = run(row, seed)
            results.setdefault(row, {})[str(seed)] = {**metrics, "wall_s": seconds}
            store.write_text(json.dumps(results, indent=1, sort_keys=True))
            print(f"{row} seed {seed}: test_nll_quadrature {metrics.get('test_nll_quadrature', float('nan')):.3f} ({seconds:.0f} s)", flush=True)
    text = "# AVB against a VAE, exact -log p(x) by quadrature\n\n" + table(results) + "\n" + NOTE
    (RESULTS / "avb.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
