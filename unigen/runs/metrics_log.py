"""metrics.csv, the run's own table of logged steps: new columns widen it, a resumed run keeps
the rows up to its checkpoint, and a torn last line is dropped."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from unigen.errors import UnigenError
from unigen.runs.rundir import not_regular, write_error, write_run_file


class MetricsLog:
    """metrics.csv: one row per logged step; new columns widen the file, old rows kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = ["step", "time_s"]

    @classmethod
    def resume(cls, path: Path, step: int, final: bool = False) -> "MetricsLog":
        """The rows of an existing metrics.csv up to `step` (later ones are replayed by the
        resumed run); a torn last line (a crash mid-write) is dropped. With `final` (`step` is
        the run's last, so the resumed run only evaluates and finishes again), the row of
        `step` goes too: the finish writes it again, with the losses and the final metrics."""
        log = cls(path)
        kind = not_regular(path)
        if kind:  # a fifo would block the read for ever
            raise UnigenError.one("R002", f"`{path}` is {kind}, where the run keeps its metrics.csv.", (), f"move `{path}` away, then run the same command again.")
        if not path.exists():
            return log
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UnigenError.one("R002", f"`{path}` cannot be read back ({type(exc).__name__}: {exc}); a resumed run keeps its rows up to the checkpoint.", (), f"move `{path}` away (the resumed run then starts a new one), then run the same command again.", exit_code=1) from None
        kept = [r for r in rows if _whole(r) and (_int(r.get("step")) or 0) <= step]
        if final:
            kept = [r for r in kept if _int(r.get("step")) != step]
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
            return
        try:  # a row cut short by a full disk is a torn last line, which a resumed run drops
            with self.path.open("a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, self.columns).writerow(row)
        except OSError as exc:
            raise write_error(self.path, exc) from exc

    def _rewrite(self) -> None:
        lines: list[str] = []

        class _Sink:
            def write(self, s: str) -> None:
                lines.append(s)

        writer = csv.DictWriter(_Sink(), self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_run_file(self.path, "".join(lines))


def _int(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _whole(row: dict[Any, Any]) -> bool:
    """A row read back whole: no missing or surplus fields, and a step."""
    return None not in row and all(v is not None for v in row.values()) and _int(row.get("step")) is not None
