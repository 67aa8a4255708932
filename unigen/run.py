"""`compile-and-train`: spec file in, finished run directory out."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import UnigenError
from .program import Program, compile_program
from .registry import Registry, default_registry
from .rundir import MetricsLog, atomic_write, dump_yaml, env_info, make_run_dir, save_checkpoint, save_samples, spec_digest
from .spec import load_spec, spec_to_dict
from .trainer import Progress, Trainer, check_finite


@dataclass
class Compiled:
    program: Program
    given: dict[str, Any]
    resolved: dict[str, Any]


def compile_file(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None) -> Compiled:
    registry = registry or default_registry()
    spec, smap, given = load_spec(path, overrides, registry)
    program = compile_program(spec, registry, smap)
    return Compiled(program, given, spec_to_dict(spec))


def train_run(
    spec_path: str | Path,
    overrides: list[str] | None = None,
    out: str | None = None,
    steps: int | None = None,
    device: str | None = None,
    registry: Registry | None = None,
    quiet: bool = False,
) -> Path:
    registry = registry or default_registry()
    overrides = list(overrides or [])
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    if device is not None:
        overrides.append(f"train.device={device}")
    compiled = compile_file(spec_path, overrides, registry)
    program = compiled.program
    spec = program.spec
    trainer = Trainer(program, registry)  # data and networks before any file is written
    run = make_run_dir(spec.name, out)
    log = _logger(run, quiet)
    atomic_write(run / "spec.yaml", Path(spec_path).read_text(encoding="utf-8"))
    atomic_write(run / "spec.resolved.yaml", dump_yaml(compiled.resolved))
    atomic_write(run / "program.txt", str(program))
    atomic_write(run / "env.json", json.dumps(env_info(registry, trainer.device), indent=2))
    log.info("run %s on %s", run, trainer.device)
    digest = spec_digest(compiled.resolved)
    metrics = MetricsLog(run / "metrics.csv")
    sample_var = trainer.model.sampled_variable()
    tr = spec.train
    progress = Progress(tr.steps, log.info, quiet=quiet)
    start = time.perf_counter()
    fixed_batch = None
    if sample_var is not None and trainer.batches is not None:
        # Conditional models draw their conditioning values from one fixed test batch.
        fixed_batch = {k: v[: 64] for k, v in trainer.model.dataset.test.items()}

    def samples(tag: str) -> None:
        if sample_var is None:
            return
        torch.manual_seed(tr.seed + 777)
        x = trainer.model.generate(2500 if "modes" in trainer.model.dataset.info else 64, sample_var, fixed_batch)
        save_samples(run / "samples" / f"{tag}.png", x, trainer.model.dataset.info, f"{spec.name}  {tag}")

    def checkpoint() -> None:
        state = trainer.state_dict()
        state["spec_digest"] = digest
        save_checkpoint(run, state)

    summary: dict[str, Any] = {}
    try:
        while trainer.step_count < tr.steps:
            trainer.step()
            s = trainer.step_count
            if s % tr.log_every == 0 or s == tr.steps:
                check_finite(trainer)
                losses = trainer.losses()
                row: dict[str, Any] = {"step": s, "time_s": round(time.perf_counter() - start, 3), **losses}
                if tr.eval_every and s % tr.eval_every == 0 and s != tr.steps:
                    row.update(trainer.evaluate())
                metrics.add(row)
                progress.update(s, losses)
            if tr.sample_every and s % tr.sample_every == 0 and s != tr.steps:
                samples(f"step_{s:08d}")
            if tr.checkpoint_every and s % tr.checkpoint_every == 0 and s != tr.steps:
                checkpoint()
    finally:
        progress.close()
    elapsed = time.perf_counter() - start
    checkpoint()
    samples(f"step_{trainer.step_count:08d}")
    final = trainer.evaluate()
    metrics.add({"step": trainer.step_count, "time_s": round(elapsed, 3), **trainer.losses(), **final})
    summary = {
        "name": spec.name,
        "steps": trainer.step_count,
        "train_seconds": round(elapsed, 3),
        "seconds_per_step": round(elapsed / max(trainer.step_count, 1), 6),
        "device": str(trainer.device),
        "final_losses": trainer.losses(),
        "metrics": final,
    }
    atomic_write(run / "summary.json", json.dumps(summary, indent=2))
    log.info("done in %.1fs: %s", elapsed, ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
    _close(log)
    return run


def _logger(run: Path, quiet: bool) -> logging.Logger:
    log = logging.getLogger(f"unigen.run.{run}")
    log.setLevel(logging.INFO)
    log.propagate = False
    fh = logging.FileHandler(run / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(fh)
    return log


def _close(log: logging.Logger) -> None:
    for h in list(log.handlers):
        h.close()
        log.removeHandler(h)


__all__ = ["compile_file", "train_run", "UnigenError"]
