"""Computing metrics on a model: each in its own forked random stream, a plugin's failure
recorded instead of raised (a metric's bug must not cost a trained run)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from unigen.errors import UnigenError, first_line
from unigen.training.seeds import METRICS_SEED_OFFSET, fork_rng


@dataclass
class MetricResults:
    values: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # metric name -> what went wrong
    seconds: dict[str, float] = field(default_factory=dict)


def compute_metrics(model: Any, metrics: Iterable[tuple[str, Any, str]], seed: int, applicable_only: bool = True) -> MetricResults:
    """`metrics`: (name, metric, label) with label naming it in a failure (`metric `x``, or with
    its plugin). With `applicable_only`, a metric whose `applies(model)` is false is left out.
    Every metric draws the same fixed noise (seed + METRICS_SEED_OFFSET), whatever other
    metrics are installed or ran before it, and the caller's random streams go on undisturbed."""
    out = MetricResults()
    with torch.no_grad():
        for name, metric, label in metrics:
            start = time.perf_counter()
            try:
                if applicable_only and not metric.applies(model):
                    continue
                with fork_rng(model.device, seed + METRICS_SEED_OFFSET):
                    out.values.update(metric.compute(model))
            except UnigenError:
                raise
            except Exception as exc:  # one plugin's bug must not hide the other metrics
                out.failed[name] = f"{label} failed: {type(exc).__name__}: {first_line(exc)}"
            out.seconds[name] = round(time.perf_counter() - start, 3)
    return out
