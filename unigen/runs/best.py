"""`train.best`: which evaluated checkpoint is the best by one metric, kept as `checkpoints/best`.

The keeper is told each evaluation's metrics; when one improves on the best so far, the run
saves a checkpoint at that step and the keeper points `checkpoints/best` at it (atomically).
The best value so far travels in every checkpoint, so a resumed run keeps comparing with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unigen.runs.rundir import atomic_write


class BestKeeper:
    def __init__(self, metric: str, mode: str, warn: Callable[[str], None], state: dict[str, Any] | None = None) -> None:
        self.metric, self.mode, self.warn = metric, mode, warn
        self.value: float | None = None
        self.step: int | None = None
        self.checkpoint: str | None = None
        if state and state.get("metric") == metric and state.get("mode") == mode:
            self.value, self.step, self.checkpoint = state.get("value"), state.get("step"), state.get("checkpoint")
        self._warned = False

    def improves(self, step: int, metrics: dict[str, Any]) -> bool:
        """Whether these metrics beat the best so far (and, if so, they become the best)."""
        value = metrics.get(self.metric)
        if value is None:
            if not self._warned:
                self._warned = True
                known = ", ".join(f"`{k}`" for k in metrics) or "none"
                self.warn(f"E006 `train.best.metric` is `{self.metric}`, but the evaluation at step {step} did not compute it (it computed: {known}); no best checkpoint is kept. Hint: name one of those, or add the metric's name to the spec's `metrics`.")
            return False
        value = float(value)
        if not math.isfinite(value):
            return False
        if self.value is not None and (value >= self.value if self.mode == "min" else value <= self.value):
            return False
        self.value, self.step = value, step
        return True

    def mark(self, run: Path, checkpoint: Path) -> None:
        self.checkpoint = checkpoint.name
        atomic_write(run / "checkpoints" / "best", checkpoint.name + "\n")

    def state(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "value": self.value, "step": self.step, "checkpoint": self.checkpoint}
