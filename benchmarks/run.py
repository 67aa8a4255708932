"""The benchmark suite: every shipped spec trained and evaluated, and the framework overhead.

    python benchmarks/run.py [--quick] [--specs NAME ...] [--seeds S ...] [--jobs N] [--threads T]

Each spec in specs/ is trained with `compile-and-train` at its own settings (with `--quick`,
at most `--quick-steps` steps: a smoke test of the whole pipeline, not a result), then
evaluated with `unigen evaluate` (every metric that applies, the offline ones included).
The table lists each spec's headline metrics beside their real-vs-real floor where there is
one, and a published value where one exists on the same protocol, with its source. The
overhead rows come from benchmarks/overhead.py (unigen's `Trainer.step()` against the same
model as a plain PyTorch loop, checked equal first). Written to benchmarks/results/suite.md.

With several `--seeds`, each metric is the median over seeds and the spread its range
(min–max). `--jobs N` trains N runs at once in separate processes, one torch thread each; a
run that fails (a spec that needs a local dataset it cannot find, say) becomes a row saying
why, and the others go on.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import unigen

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


def run_spec(name: str, steps: int | None, seed: int, registry, options: tuple[str, ...] = ()) -> tuple[dict[str, float], int, float, float]:
    path = ROOT / "specs" / f"{name}.yaml"
    full = unigen.compile(path, registry=registry).train.steps
    n = min(full, steps) if steps else full
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = unigen.train(path, [f"train.seed={seed}"], out=f"{tmp}/run", steps=n, device="cpu", registry=registry)
        trained = time.perf_counter() - start
        metrics = dict(run.summary["metrics"])
        start = time.perf_counter()
        metrics.update(run.evaluate(options=list(options) or None))
        evaluated = time.perf_counter() - start
    return metrics, n, trained, evaluated


def _task(name: str, steps: int | None, seed: int, threads: int, options: tuple[str, ...] = ()) -> tuple[dict[str, float], int, float, float]:
    """One run in a worker process (its own registry and thread count)."""
    torch.set_num_threads(threads)
    return run_spec(name, steps, seed, unigen.default_registry(), options)


def run_all(names: list[str], seeds: list[int], steps: int | None, jobs: int, threads: int, options: tuple[str, ...] = ()) -> dict[tuple[str, int], object]:
    """(spec, seed) -> (metrics, steps, train s, eval s), or the exception the run raised."""
    tasks = [(name, seed) for name in names for seed in seeds]
    out: dict[tuple[str, int], object] = {}
    if jobs <= 1:
        for name, seed in tasks:
            try:
                out[(name, seed)] = _task(name, steps, seed, threads, options)
            except Exception as exc:  # reported as a row; the suite goes on
                out[(name, seed)] = exc
            report(name, seed, out[(name, seed)])
        return out
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_task, name, steps, seed, threads, options): (name, seed) for name, seed in tasks}
        for future in concurrent.futures.as_completed(futures):
            key = futures[future]
            try:
                out[key] = future.result()
            except Exception as exc:
                out[key] = exc
            report(*key, out[key])
    return out


def report(name: str, seed: int, result: object) -> None:
    if isinstance(result, Exception):
        print(f"{name} seed {seed}: failed: {type(result).__name__}: {first_line(result)}", flush=True)
    else:
        metrics, n, trained, evaluated = result  # type: ignore[misc]
        keys = [k for k in HEADLINE if k in metrics][:4]
        print(f"{name} seed {seed}: {n} steps, {trained:.0f} s training, {evaluated:.0f} s evaluation; " + ", ".join(f"{k}={show(metrics[k])}" for k in keys), flush=True)


def first_line(exc: Exception) -> str:
    return ((str(exc).strip().splitlines() or [""])[0])[:200].replace("|", "/")


def median_and_range(values: list[float]) -> tuple[float, str]:
    med = statistics.median(values)
    return med, ("" if len(values) < 2 else f"{show(min(values))}–{show(max(values))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="train each spec at most --quick-steps steps and time the overhead briefly")
    ap.add_argument("--quick-steps", type=int, default=300)
    ap.add_argument("--specs", nargs="*", help="spec names (default: every spec in specs/)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0], help="seeds (median and range over them)")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once, in separate processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--no-overhead", action="store_true", help="leave out the overhead rows")
    ap.add_argument("--option", action="append", default=[], metavar="METRIC.KEY=VALUE", help="a metric's option for the evaluations, as `unigen evaluate --option` takes it (repeatable)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.specs or [p.stem for p in sorted((ROOT / "specs").glob("*.yaml"))]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = run_all(names, args.seeds, args.quick_steps if args.quick else None, args.jobs, args.threads, tuple(args.option))
    many = len(args.seeds) > 1
    rows = ["| spec | steps | train s | eval s | metric | " + ("median | range" if many else "value | –") + " | real-vs-real floor | published (same protocol) | source |", "|---|---:|---:|---:|---|---:|---|---:|---|---|"]
    summary = ["| spec | steps | train s | metrics" + (" (median over seeds)" if many else "") + " (real-vs-real floor) | published, same protocol |", "|---|---:|---:|---|---|"]
    for name in names:
        done = [results[(name, s)] for s in args.seeds if not isinstance(results[(name, s)], Exception)]
        failed = [(s, results[(name, s)]) for s in args.seeds if isinstance(results[(name, s)], Exception)]
        if not done:
            s, exc = failed[0]
            summary.append(f"| {name} | – | – | failed: {type(exc).__name__}: {first_line(exc)} | — |")  # type: ignore[arg-type]
            continue
        per_seed = [r[0] for r in done]  # type: ignore[index]
        n = done[0][1]  # type: ignore[index]
        trained = statistics.median(r[2] for r in done)  # type: ignore[index]
        evaluated = statistics.median(r[3] for r in done)  # type: ignore[index]
        common = set.intersection(*(set(m) for m in per_seed))
        metrics: dict[str, float] = {}
        spread: dict[str, str] = {}
        for k in common:
            metrics[k], spread[k] = median_and_range([float(m[k]) for m in per_seed])
        keys = [k for k in SHOWN if k in metrics] or [k for k in sorted(metrics) if not k.endswith("_floor")][:3]
        for i, k in enumerate(keys):
            published, source = PUBLISHED.get((name, k), ("—", ""))
            head = f"| {name} | {n} | {trained:.0f} | {evaluated:.0f} |" if i == 0 else "| | | | |"
            rows.append(f"{head} {k} | {show(metrics[k])} | {spread[k]} | {show(metrics.get(k + '_floor'))} | {published} | {source} |")
        heads = [k for k in HEADLINE if k in metrics][:4]
        cells = "; ".join(f"{k} {show(metrics[k])}" + (f" [{spread[k]}]" if spread[k] else "") + (f" ({show(metrics[k + '_floor'])})" if k + "_floor" in metrics else "") for k in heads)
        if failed:
            cells += f"; {len(failed)} of {len(args.seeds)} seeds failed"
        pub = "; ".join(f"{k}: {PUBLISHED[(name, k)][0]}" for k in heads if (name, k) in PUBLISHED) or "—"
        summary.append(f"| {name} | {n} | {trained:.0f} | {cells} | {pub} |")
    parts = [
        "# unigen benchmark suite" + (" (quick mode: a smoke test, not results)" if args.quick else ""),
        "",
        f"`python benchmarks/run.py{' --quick' if args.quick else ''} --seeds {' '.join(map(str, args.seeds))} --jobs {args.jobs}`" + (f" (at most {args.quick_steps} steps per spec)" if args.quick else ""),
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
    parts += ["", f"torch {torch.__version__}, {platform.machine()}, cpu ({os.cpu_count()} cores), {args.threads} thread(s) per run, {args.jobs} run(s) at once, seeds {', '.join(map(str, args.seeds))}; train/eval s are medians over seeds; load average before: {load}.", ""]
    text = "\n".join(parts)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
