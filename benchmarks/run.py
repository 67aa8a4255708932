"""The benchmark suite: every shipped spec trained and evaluated, and the framework overhead.

    python benchmarks/run.py [--quick] [--specs NAME ...] [--seed S] [--threads T]

Each spec in specs/ is trained with `compile-and-train` at its own settings (with `--quick`,
at most `--quick-steps` steps: a smoke test of the whole pipeline, not a result), then
evaluated with `unigen evaluate` (every metric that applies, the offline ones included).
The table lists each spec's headline metrics beside their real-vs-real floor where there is
one, and a published value where one exists on the same protocol, with its source. The
overhead rows come from benchmarks/overhead.py (unigen's `Trainer.step()` against the same
model as a plain PyTorch loop, checked equal first). Written to benchmarks/results/suite.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from unigen.evaluate import evaluate_run
from unigen.registry import default_registry
from unigen.run import compile_file, train_run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "suite.md"

# Headline metrics, in the order shown; a spec shows those it reports.
SHOWN = (
    "test_nelbo", "iwae_nll", "recon_error", "fid", "kid", "precision", "recall", "density", "coverage", "class_score",
    "class_entropy", "cond_accuracy", "modes_captured", "hq_fraction", "mode_kl", "code_accuracy", "code_accuracy_gen",
)
# One line per spec in the summary table: the first few of these it reports.
HEADLINE = ("test_nelbo", "iwae_nll", "recon_error", "fid", "recall", "cond_accuracy", "modes_captured", "hq_fraction", "code_accuracy")
VEEGAN = "Srivastava et al. 2017 (VEEGAN), Table 1: 2,500 samples, a mode captured when a sample lies within 3 sigma"
# (spec, metric) -> (published value, source), only where the protocol is the same as ours.
PUBLISHED = {
    ("gan-ring", "modes_captured"): ("GAN 1; VEEGAN 8", VEEGAN),
    ("gan-ring", "hq_fraction"): ("GAN 0.993; VEEGAN 0.529", VEEGAN),
    ("gan-grid", "modes_captured"): ("GAN 3.3; VEEGAN 24.6", VEEGAN),
    ("gan-grid", "hq_fraction"): ("GAN 0.005; VEEGAN 0.40", VEEGAN),
}


def load_overhead():  # benchmarks/ is not a package
    spec = importlib.util.spec_from_file_location("unigen_overhead", ROOT / "benchmarks" / "overhead.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def show(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def run_spec(name: str, steps: int | None, seed: int, registry) -> tuple[dict[str, float], int, float, float]:
    path = ROOT / "specs" / f"{name}.yaml"
    full = compile_file(path, registry=registry).program.spec.train.steps
    n = min(full, steps) if steps else full
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = train_run(path, [f"train.seed={seed}"], out=f"{tmp}/run", steps=n, device="cpu", registry=registry, quiet=True)
        trained = time.perf_counter() - start
        metrics = dict(json.loads((run / "summary.json").read_text())["metrics"])
        start = time.perf_counter()
        metrics.update(evaluate_run(run, registry=registry)["metrics"])
        evaluated = time.perf_counter() - start
    return metrics, n, trained, evaluated


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="train each spec at most --quick-steps steps and time the overhead briefly")
    ap.add_argument("--quick-steps", type=int, default=300)
    ap.add_argument("--specs", nargs="*", help="spec names (default: every spec in specs/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--no-overhead", action="store_true", help="leave out the overhead rows")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    registry = default_registry()
    names = args.specs or [p.stem for p in sorted((ROOT / "specs").glob("*.yaml"))]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = ["| spec | steps | train s | eval s | metric | value | real-vs-real floor | published (same protocol) | source |", "|---|---:|---:|---:|---|---:|---:|---|---|"]
    summary = ["| spec | steps | train s | metrics (real-vs-real floor) | published, same protocol |", "|---|---:|---:|---|---|"]
    for name in names:
        metrics, n, trained, evaluated = run_spec(name, args.quick_steps if args.quick else None, args.seed, registry)
        keys = [k for k in SHOWN if k in metrics] or [k for k in metrics if not k.endswith("_floor")][:3]
        for i, k in enumerate(keys):
            published, source = PUBLISHED.get((name, k), ("—", ""))
            head = f"| {name} | {n} | {trained:.0f} | {evaluated:.0f} |" if i == 0 else "| | | | |"
            rows.append(f"{head} {k} | {show(metrics[k])} | {show(metrics.get(k + '_floor'))} | {published} | {source} |")
        heads = [k for k in HEADLINE if k in metrics][:4]
        cells = "; ".join(f"{k} {show(metrics[k])}" + (f" ({show(metrics[k + '_floor'])})" if k + "_floor" in metrics else "") for k in heads)
        pub = "; ".join(f"{k}: {PUBLISHED[(name, k)][0]}" for k in heads if (name, k) in PUBLISHED) or "—"
        summary.append(f"| {name} | {n} | {trained:.0f} | {cells} | {pub} |")
        print(f"{name}: {n} steps, {trained:.0f} s training, {evaluated:.0f} s evaluation; " + ", ".join(f"{k}={show(metrics[k])}" for k in keys), flush=True)
    parts = [
        "# unigen benchmark suite" + (" (quick mode: a smoke test, not results)" if args.quick else ""),
        "",
        f"`python benchmarks/run.py{' --quick' if args.quick else ''}`" + (f" (at most {args.quick_steps} steps per spec)" if args.quick else ""),
        "",
        "\n".join(summary),
        "",
        "Floors: the same statistic between the training and the test split's real images, in the feature space of a classifier trained on "
        "the training split, with as many samples: what real data scores. A generator far from the floor in either direction differs from "
        "the data (precision above its floor with recall near 0 is a collapse). Published values are given only where the protocol is the "
        f"one measured here ({VEEGAN}).",
        "",
        "## Every metric",
        "",
        "\n".join(rows),
    ]
    if not args.no_overhead:
        overhead = load_overhead()
        steps, repeats, warmup = (20, 5, 10) if args.quick else (50, 9, 50)
        orows = ["| model | unigen ms/step | plain ms/step | ratio |", "|---|---:|---:|---:|"]
        for model in overhead.SPECS:
            overhead.check_parity(model)
            u, p, ratio = overhead.measure(model, steps, repeats, warmup, overhead.CLOCKS["wall"])
            orows.append(f"| {model} | {u * 1e3:.3f} | {p * 1e3:.3f} | {ratio:.3f} |")
            print(f"overhead {model}: {ratio:.3f}", flush=True)
        parts += ["", "## Framework overhead", "", f"`Trainer.step()` against a plain PyTorch loop (benchmarks/overhead.py): median of {repeats} interleaved blocks of {steps} steps after {warmup} warm-up steps.", "", "\n".join(orows)]
    parts += ["", f"torch {torch.__version__}, {platform.machine()}, cpu, {args.threads} thread(s), seed {args.seed}; load average before: {load}.", ""]
    text = "\n".join(parts)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
