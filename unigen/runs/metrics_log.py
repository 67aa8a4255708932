"""metrics.csv, the run's own table of logged steps: new columns widen it, a resumed run keeps
the rows up to its checkpoint, and a torn last line is dropped."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from unigen.runs.rundir import atomic_write


class MetricsLog:
    """metrics.csv: one row per logged step; new columns widen the file, old rows kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = ["step", "time_s"]

    @classmethod
    def resume(cls, path: Path, step: int) -> "MetricsLog":
        """The rows of an existing metrics.csv up to `step` (later ones are replayed by the
        resumed run); a torn last line (a crash mid-write) is dropped."""
        log = cls(path)
        if not path.exists():
            return log
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = list(reader)
        kept = [r for r in rows if _whole(r) and (_int(r.get("step")) or 0) <= step]
        log.columns.extend(c for c in header if c not in log.columns)
        log.rows = kept
        if len(kept) != len(rows) or header != log.columns:
            log._rewrite()
        return log

    def last_time(self) -> float:
        try:
            return float(self.rows[-1]["time_s"]) if self.rows else 0.0
        except (KeyError, TypeError, ValueError):
            return 0.0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        self.columns.extend(new)
        if new or not self.path.exists():
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)

    def _rewrite(self) -> None:
        lines: list[str] = []

        class _Sink:
            def write(self, s: str) -> None:
                lines.append(s)

        writer = csv.DictWriter(_Sink(), self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path, "".join(lines))


def _int(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _whole(row: dict[Any, Any]) -> bool:
    """A row read back whole: no missing or surplus fields, and a step."""
    return None not in row and all(v is not None for v in row.values()) and _int(row.get("step")) is not None
