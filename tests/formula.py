"""Shared by the formula tests (a compiled objective against the same formula written out in
plain PyTorch): models in float64 on the CPU, with their data, each dataset loaded once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from unigen.api.kinds import Dataset
from unigen.compiler.compiler import compile_file
from unigen.runs.driver import train_run
from unigen.training.data import load_dataset
from unigen.training.model import Model

SEED = 1234
TOL = 1e-5
CPU = torch.device("cpu")

_DATASETS: dict = {}


@pytest.fixture(autouse=True)
def float64():
    """Networks, priors and noise in float64, so the comparisons can be tight (autouse in every
    module that imports it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def model64(registry, path: Path, overrides=()) -> tuple:
    """The compiled program and its model in float64, data included."""
    program = compile_file(path, ["train.device=cpu", *overrides], registry).program
    key = str(program.data)  # the dataset and its options
    if key not in _DATASETS:
        ds = load_dataset(program)
        as64 = lambda d: {k: (v.double() if v.is_floating_point() else v) for k, v in d.items()}  # noqa: E731
        _DATASETS[key] = Dataset(as64(ds.train), as64(ds.test), ds.info)
    return program, Model(program, CPU, _DATASETS[key])


def with_batch(registry, path: Path, overrides=()) -> tuple:
    """`model64`, and a training batch of 32."""
    program, model = model64(registry, path, overrides)
    return program, model, {v: model.dataset.train[f][:32] for v, f in model.fields.items()}


def num(t: torch.Tensor) -> float:
    return t.detach().item()


def trained_summary(registry, path: Path, out: Path, keys: list[str], steps: int = 3) -> dict:
    """Trains a shipped spec a few steps in float32 (as the command line does) and returns its
    summary.json, having checked the step count and that each of `keys` is a finite metric."""
    torch.set_default_dtype(torch.float32)
    run = train_run(path, ["train.eval_samples=200"], out=str(out), steps=steps, device="cpu", registry=registry, quiet=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == steps
    for key in keys:
        assert key in summary["metrics"] and math.isfinite(summary["metrics"][key]), (path.stem, key, summary["metrics"])
    return summary
