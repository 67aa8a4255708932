"""Autoregressive densities on the binarised digits: the held-out exact negative log-likelihood of
MADE (`specs/made-digits.yaml`) and the gated PixelCNN (`specs/pixelcnn-digits.yaml`) at their
best checkpoints, against independent Bernoulli pixels at their training means.

    OMP_NUM_THREADS=1 python benchmarks/autoregressive.py --seed 0

Each spec is trained in full by `unigen.train` at its own settings (only `train.seed` changes);
the NLL is `test_nelbo` at `checkpoints/best` (the lowest of the spec's evaluations), which for a
model without latents is the exact -log p(x) averaged over the test split, in nats. The table is
printed and written to benchmarks/results/autoregressive.md, its values to autoregressive.json.

    OMP_NUM_THREADS=1 python benchmarks/autoregressive.py --check

`--check` trains the stored table's specs again at its seed (writing nothing) and exits 1 with
a table of what moved when a value left its tolerance: the NLLs by 0.02 nats, the best step and
the parameter count exactly (TOLERANCE below; the runs are bit-deterministic on the CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
RESULTS = common.RESULTS
SCRIPT = "benchmarks/autoregressive.py"
SPECS = ("made-digits", "pixelcnn-digits")
# --check: how far a value may move from the stored one (nats for the NLLs).
TOLERANCE = {"best": 0.02, "final": 0.02, "best_step": 0, "steps": 0, "parameters": 0, "baseline": 0.01}

NOTE = """
Digits: scikit-learn's 8x8 digits, binarised at 0.5, the project's fixed split (1,438 training and
359 test images). NLL: -log p(x) in nats per image, averaged over the test split; exact for these
models (no latents, so the ELBO is the log-likelihood). `best` is the lowest held-out NLL among
the evaluations every `eval_every` steps (checkpoints/best), `final` the value after the last step.
The baseline is p(x) = prod_i Bernoulli(x_i; m_i) with m_i the training mean of pixel i (clamped to
[1e-6, 1 - 1e-6]; no test pixel is on where every training pixel is off, so the clamp changes
nothing here). Wall time: the whole `unigen.train` call (compiling, training, evaluations, sample
pictures, checkpoints), with the torch threads given; it depends on the machine's load.

Literature, for orientation only: binarised MNIST is 28x28 (784 pixels) and not comparable with
these 64-pixel digits. van den Oord et al. (2016, "Pixel Recurrent Neural Networks") report
81.30 nats for PixelCNN and 80.54 / 79.20 for PixelRNN (Row LSTM / Diagonal BiLSTM) on
binarised MNIST; Germain et al. (2015) report 88.04 for MADE. (These values were quoted in the
task, not checked against the papers here.)
"""


def baseline_nll(train: torch.Tensor, test: torch.Tensor) -> float:
    """Test NLL of independent Bernoulli pixels at their training means, in nats per image."""
    p = train.double().mean(0).clamp(1e-6, 1 - 1e-6)
    t = test.double()
    return float(-(t * p.log() + (1 - t) * (1 - p).log()).sum(1).mean())


def train_one(name: str, seed: int, steps: int | None = None) -> dict:
    def read(run) -> dict:  # noqa: ANN001
        dataset = run.model.dataset
        return {"baseline": baseline_nll(dataset.train["x"], dataset.test["x"]), "parameters": sum(p.numel() for p in run.model.nets.parameters())}

    done = common.train(name, seed, steps=steps, then=read)
    best = done.summary.get("best") or {}
    return {
        "name": name,
        "best": float(best["value"]),
        "best_step": int(best["step"]),
        "final": float(done.metrics["test_nelbo"]),
        "steps": int(done.summary["steps"]),
        "train_seconds": float(done.summary["train_seconds"]),
        "seconds": done.seconds,
        **done.extra,
    }


def measure(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.specs:
        row = train_one(name, args.seed, args.steps)
        print(f"{name}: best test_nelbo {row['best']:.3f} at step {row['best_step']}, final {row['final']:.3f}, baseline {row['baseline']:.3f} ({row['seconds']:.0f} s)", flush=True)
        rows.append(row)
    return rows


def values(rows: list[dict], seed: int) -> dict[str, float]:
    return {common.key(r["name"], seed, k): r[k] for r in rows for k in TOLERANCE}


def render(rows: list[dict], seed: int, threads: int, load: float) -> str:
    baseline = rows[0]["baseline"]
    lines = [
        f"Seed {seed}; torch {torch.__version__}, {threads} thread(s), {platform.machine()} CPU with {os.cpu_count()} cores, load average {load:.1f} at the start.",
        "",
        "| model | parameters | held-out NLL, best (nats) | at step | final | steps | train s | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| independent Bernoulli (training means) | 64 | {baseline:.2f} | | | | | |",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['parameters']:,} | {r['best']:.2f} | {r['best_step']} | {r['final']:.2f} | {r['steps']} | {r['train_seconds']:.0f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n" + NOTE


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--specs", nargs="+", default=list(SPECS), choices=SPECS)
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: the spec's own)")
    ap.add_argument("--out", default=str(RESULTS / "autoregressive.md"))
    ap.add_argument("--check", action="store_true", help=common.CHECK_HELP)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.check:
        def rerun(stored: dict) -> dict[str, float]:
            again = common.again(ap, stored, args)
            return values(measure(again), again.seed)

        return common.check(args.out, SCRIPT, TOLERANCE, rerun)
    load = os.getloadavg()[0]
    rows = measure(args)
    text = render(rows, args.seed, args.threads, load)
    print(text)
    command = ("python benchmarks/autoregressive.py " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    common.write(args.out, text, script=SCRIPT, command=command, opts=common.options(args), values=values(rows, args.seed), tolerance=TOLERANCE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
