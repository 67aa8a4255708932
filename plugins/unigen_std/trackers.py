"""The built-in tracker: TensorBoard (`--tensorboard`). metrics.csv is the core's own file."""

from __future__ import annotations

import importlib.util
import numbers
from typing import Any

from unigen.runs.trackers import RunStart, Tracker


class TensorBoardTracker(Tracker):
    doc = "TensorBoard event files in RUN/tensorboard (scalars per logged step; needs the `tensorboard` package)"

    def __init__(self) -> None:
        self.writer: Any = None

    @classmethod
    def unavailable(cls) -> str:
        if importlib.util.find_spec("tensorboard") is None:
            return "`--tensorboard` needs the `tensorboard` package, which is not installed (`pip install tensorboard`)"
        return ""

    def on_start(self, start: RunStart) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(start.run / "tensorboard"), purge_step=start.first_step if start.resumed else None)

    def on_metrics(self, step: int, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "step" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()

    def on_end(self, summary: dict[str, Any]) -> None:
        metrics = summary.get("metrics", {})
        self.writer.add_text("summary", "\n".join(f"- {k}: {v}" for k, v in metrics.items()) or "(no metrics)", summary.get("steps", 0))
        self.writer.close()
