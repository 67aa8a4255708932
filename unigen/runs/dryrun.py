"""`compile-and-train --dry-run`: build everything, run one batch of every phase, write nothing."""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from unigen.api.registry import Registry
from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.samples import save_samples
from unigen.training.seeds import SAMPLES_SEED_OFFSET
from unigen.training.trainer import NonFiniteLoss, Trainer, describe_nonfinite


def dry_run(spec_path: str, overrides: list[str], registry: Registry, device: str | None, out: TextIO) -> int:
    """Everything a run builds (data, networks, optimizers), one batch of each phase with its
    update, the metrics and a sample picture (into a temporary directory, then removed).
    Prints what ran; returns the exit status."""
    if device is not None:
        overrides = [*overrides, f"train.device={device}"]
    t0 = time.perf_counter()
    program = compile_file(spec_path, overrides, registry).program
    trainer = Trainer(program)
    model = trainer.model
    print(f"dry run of {spec_path} on {trainer.device}: one batch of every phase, nothing written", file=out)
    data = model.dataset
    sizes = ", ".join(f"{split} {len(next(iter(part.values())))}" for split, part in (("train", data.train), ("test", data.test)) if part)
    print(f"  data      {program.data.source}: {sizes}; batch {program.train.batch_size}", file=out)
    for name, net in model.nets.items():
        n = sum(p.numel() for p in net.parameters())
        print(f"  network   {name:<14} {program.networks[name].arch}, {n:,} parameters{'' if program.networks[name].trainable else ' (frozen)'}", file=out)
    for runner in trainer.runners:
        once = replace(runner, plan=replace(runner.plan, repeats=1))  # the same runner (index, optimizer, scaler), one update
        start = time.perf_counter()
        try:
            trainer.run_phase(once)
        except NonFiniteLoss as exc:
            raise UnigenError.one("R001", f"dry run: non-finite loss: {describe_nonfinite(exc.event)}.", (), "lower the learning rate or check the data for NaNs.", exit_code=1) from None
        ms = 1000 * (time.perf_counter() - start)
        values = ", ".join(f"{label} = {float(v):.4g}" for label, v in once.last.items())
        print(f"  phase     {runner.plan.name:<14} {values}; updated {', '.join(runner.plan.update)} ({ms:.0f} ms)", file=out)
        trainer.checks.clear()  # on a GPU finiteness is read below, from the values themselves
        bad = [label for label, v in once.last.items() if not math.isfinite(float(v))]
        if bad:
            raise UnigenError.one("R001", f"dry run: phase `{runner.plan.name}` gave a non-finite value for {', '.join(bad)}.", (), "lower the learning rate or check the data for NaNs.", exit_code=1)
    metrics = trainer.evaluate()
    print("  metrics   " + (", ".join(f"{k}={v:.4g}" for k, v in metrics.items()) or "(none applies)"), file=out)
    var = model.sampled_variable()
    if var is not None:
        with tempfile.TemporaryDirectory(prefix="unigen-dry-") as tmp:
            batch = {k: v[:64] for k, v in data.test.items()} if data.test else None
            n = 64  # enough to show the picture draws; a run draws `picture_count(model)`
            with trainer.fork_rng(program.train.seed + SAMPLES_SEED_OFFSET):
                x = model.generate(n, var, batch)
            save_samples(Path(tmp) / "samples.png", x, model, f"{program.name}  dry run")
        print(f"  samples   {n} of `{var}` drawn and plotted (to a temporary directory, removed)", file=out)
    print(f"ok in {time.perf_counter() - t0:.1f}s: the spec builds and every phase runs; train with the same command without --dry-run.", file=out)
    return 0
