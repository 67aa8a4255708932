"""Training throughput (samples/s): unigen's `Trainer.step()` against a plain PyTorch loop of the
same model, in full precision, with bfloat16 autocast, and through torch.compile.

    python benchmarks/throughput.py [--quick] [--device cpu|cuda] [--variants fp32 bf16 compiled]

The plain loops are those of benchmarks/overhead.py (same networks, initial weights, batches,
optimizers and per-step work; their parity with unigen is checked there and again here in
fp32). Variants:

- fp32: as shipped.
- bf16: unigen with `train.precision=bf16` (autocast around each term's forward); the plain
  loop with its step under `torch.autocast(dtype=torch.bfloat16)`.
- compiled: unigen with `train.compile=true` (each network through torch.compile); the plain
  loop with each network through torch.compile. torch.compile cannot differentiate twice
  (double backward), so a spec with an R1 penalty runs this variant with `r1` set to 0 in
  both loops, and says so.

Samples/s is the global batch size times steps per second; each figure is the median over
interleaved timed blocks after an untimed warm-up (which also pays torch.compile's
compilation). Results go to stdout and benchmarks/results/throughput-<device>.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead  # noqa: E402  (the plain loops)

import unigen
from unigen import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # throughput-<device>.md
SPECS = overhead.SPECS
VARIANTS = ("fp32", "bf16", "compiled")


@contextlib.contextmanager
def compiled_plain_nets() -> Iterator[None]:
    """The plain loops build their networks through `overhead.plain_net`: compile each."""
    original = overhead.plain_net

    def plain_net(trainer: Trainer, name: str) -> torch.nn.Module:
        return torch.compile(original(trainer, name))  # type: ignore[return-value]

    overhead.plain_net = plain_net  # type: ignore[assignment]
    try:
        yield
    finally:
        overhead.plain_net = original  # type: ignore[assignment]


def make(name: str, variant: str, device: str) -> tuple[Callable[[], None], Callable[[], None], int, str]:
    """unigen's step, the plain step, the batch size, and a note on the variant."""
    overrides = [f"train.device={device}", *overhead.OVERRIDES.get(name, [])]
    note = ""
    if variant == "bf16":
        overrides.append("train.precision=bf16")
    if variant == "compiled":
        overrides.append("train.compile=true")
        if name in ("gan-ring", "dcgan-digits"):
            overrides.append("edges.1.options.r1=0")
            note = "r1=0 (torch.compile has no double backward)"
    registry = unigen.default_registry()
    program = unigen.compile(SPECS[name], overrides, registry=registry)
    trainer = Trainer(program)
    with compiled_plain_nets() if variant == "compiled" else contextlib.nullcontext():
        plain, _ = overhead.PLAIN[name](trainer)
    if variant == "bf16":
        inner = plain
        kind = trainer.device.type

        def plain() -> None:
            with torch.autocast(kind, dtype=torch.bfloat16):
                inner()

    return trainer.step, plain, program.train.batch_size, note


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def block(step: Callable[[], None], n: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - start) / n


def measure(name: str, variant: str, device: str, steps: int, repeats: int, warmup: int) -> tuple[float, float, float, str]:
    """Samples/s of unigen and of the plain loop (medians), and the median of unigen/plain
    over adjacent block pairs."""
    u_step, p_step, batch, note = make(name, variant, device)
    block(u_step, warmup, device)
    block(p_step, warmup, device)
    u_times: list[float] = []
    p_times: list[float] = []
    for r in range(repeats):
        order = [(u_step, u_times), (p_step, p_times)]
        for step, out in order if r % 2 == 0 else order[::-1]:
            out.append(block(step, steps, device))
    ratio = statistics.median(p / u for u, p in zip(u_times, p_times))  # throughput ratio unigen/plain
    return batch / statistics.median(u_times), batch / statistics.median(p_times), ratio, note


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short blocks and warm-up (a smoke run, not a measurement)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="*", default=list(SPECS), choices=list(SPECS))
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=None, help="steps per timed block (default 30; 5 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timed blocks per loop (default 7; 3 with --quick)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 20; 3 with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/throughput-<device>.md")
    args = ap.parse_args(argv)
    steps = args.steps or (5 if args.quick else 30)
    repeats = args.repeats or (3 if args.quick else 7)
    warmup = args.warmup or (3 if args.quick else 20)
    torch.set_num_threads(args.threads)
    for name in args.models:  # like for like: the fp32 losses agree step for step
        overhead.check_parity(name)

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    for name in args.models:
        base: float | None = None
        for variant in args.variants:
            try:
                u, p, ratio, note = measure(name, variant, args.device, steps, repeats, warmup)
            except Exception as exc:  # a variant the device or torch cannot run is reported, not fatal
                cause = exc.__cause__ or exc
                first = (str(cause).strip().splitlines() or [""])[0][:160].replace("|", "/")
                rows.append(f"| {name} | {variant} | – | – | – | – | failed: {type(cause).__name__}: {first} |")
                print(f"{name} {variant} failed:", file=sys.stderr)
                traceback.print_exception(cause, file=sys.stderr)
                continue
            if variant == "fp32":
                base = u
            vs = f"{u / base:.2f}" if base else "–"
            rows.append(f"| {name} | {variant} | {u:,.0f} | {p:,.0f} | {ratio:.2f} | {vs} | {note} |")
            print(rows[-1], flush=True)
    table = "\n".join(["| model | variant | unigen samples/s | plain samples/s | unigen/plain | vs unigen fp32 | note |", "|---|---|---:|---:|---:|---:|---|", *rows])
    command = "python benchmarks/throughput.py" + (" --quick" if args.quick else "") + f" --device {args.device} --threads {args.threads}" + (f" --steps {args.steps}" if args.steps else "") + (f" --repeats {args.repeats}" if args.repeats else "") + (f" --warmup {args.warmup}" if args.warmup else "")
    setup = (
        f"torch {torch.__version__}, {platform.machine()}, {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else f", {args.threads} thread(s)")
        + f"; median of {repeats} interleaved blocks of {steps} steps after {warmup} warm-up steps; unigen/plain: median over adjacent block pairs of the throughput ratio; load average before: {load}"
    )
    print()
    print(table)
    print()
    print(setup)
    out = args.out or RESULTS / f"throughput-{args.device}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# Training throughput: unigen vs a plain PyTorch loop\n\n`{command}`\n\n{table}\n\n{setup}.\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
