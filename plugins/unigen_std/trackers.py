"""The built-in trackers: metrics.csv (every run) and TensorBoard (`--tensorboard`)."""

from __future__ import annotations

import importlib.util
import numbers
from typing import Any

from unigen.runs.metrics_log import MetricsLog
from unigen.runs.trackers import RunStart, Tracker


class CSVTracker(Tracker):
    doc = "metrics.csv in the run directory: one row per logged step; new columns widen the file"
    always = True
    critical = True

    def __init__(self) -> None:
        self.log: MetricsLog | None = None

    def on_start(self, start: RunStart) -> None:
        path = start.run / "metrics.csv"
        # A resumed run keeps the rows up to its checkpoint; later ones are replayed.
        self.log = MetricsLog.resume(path, start.first_step) if start.resumed else MetricsLog(path)

    def last_time(self) -> float:
        return self.log.last_time() if self.log is not None else 0.0

    def on_metrics(self, step: int, row: dict[str, Any]) -> None:
        assert self.log is not None, "on_start comes first"
        self.log.add(row)


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
