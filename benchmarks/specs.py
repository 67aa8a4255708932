"""Full runs of shipped specs over several seeds: a Markdown table of their summary metrics.

    python benchmarks/specs.py                       # every spec in specs/, seed 0
    python benchmarks/specs.py gan-ring gan-grid --seeds 0 1 2

Each run is a real `compile-and-train` at the spec's own settings; the table shows every
seed's value, the median, and the wall time. Results also go to benchmarks/results/specs.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import unigen

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ("test_nelbo", "modes_captured", "hq_fraction", "hq_spread", "mode_kl", "recon_error", "test_accuracy", "cond_accuracy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", help="spec names (default: all in specs/)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "specs.md"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.specs or [p.stem for p in sorted((ROOT / "specs").glob("*.yaml"))]
    registry = unigen.default_registry()
    rows = []
    for name in names:
        per_seed: list[dict[str, float]] = []
        seconds: list[float] = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                run = unigen.train(ROOT / "specs" / f"{name}.yaml", [f"train.seed={seed}"], out=f"{tmp}/run", registry=registry)
                seconds.append(time.perf_counter() - start)
                per_seed.append(run.summary["metrics"])
            print(f"{name} seed {seed}: {per_seed[-1]} ({seconds[-1]:.0f} s)", flush=True)
        keys = [k for k in SHOWN if k in per_seed[0]] or list(per_seed[0])[:3]
        cells = []
        for k in keys:
            values = [m[k] for m in per_seed]
            shown = " / ".join(f"{v:.4g}" for v in values)
            cells.append(f"{k} = {statistics.median(values):.4g}" + (f" ({shown})" if len(values) > 1 else ""))
        rows.append(f"| {name} | {len(args.seeds)} | {'; '.join(cells)} | {statistics.median(seconds):.0f} |")
    table = "\n".join([
        "| spec | seeds | metric: median (per seed) | wall s (median) |",
        "|---|---:|---|---:|",
        *rows,
    ])
    note = f"\n\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s), seeds {args.seeds}\n"
    print(table + note)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table + note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
