"""The progress line of a training run: a bar that fits the terminal, log lines otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import Any


def duration(seconds: float) -> str:
    """`1:02:03`, `2:03` or `7s`: how long, as a person reads it."""
    s = max(int(round(seconds)), 0)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}" if m else f"{s}s"


class Progress:
    """A one-line progress bar on a terminal (redrawn in place, never wider than the terminal,
    with the rate and the time left); plain log lines otherwise."""

    def __init__(self, total: int, log: Callable[[str], None], stream: Any = None, quiet: bool = False, first: int = 0,
                 columns: Callable[[], int] | None = None) -> None:
        self.total, self.log, self.quiet, self.first = total, log, quiet, first
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.columns = columns or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self.start = time.perf_counter()

    def update(self, step: int, losses: dict[str, float]) -> None:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = (step - self.first) / elapsed
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        left = f"ETA {duration(eta)}" if eta == eta else "ETA ?"
        values = "  ".join(f"{k}={v:.4g}" for k, v in losses.items())
        text = f"step {step}/{self.total}  {values}  {rate:.1f} it/s  {left}"
        if self.tty:
            self.stream.write("\r" + self.line(step, values, f"{rate:.1f} it/s {left}") + "\x1b[K")
        elif not self.quiet:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.log(text)

    def line(self, step: int, values: str, tail: str) -> str:
        """The bar, the step, the rate and ETA, then as many of the losses as fit in one line
        one column short of the terminal's width (a full line would wrap on some terminals)."""
        width = max(self.columns() - 1, 20)
        head = f"{step}/{self.total} {tail}"
        bar_width = min(30, max(width - len(head) - 3, 0) // 2)
        done = int(bar_width * step / max(self.total, 1))
        bar = ("[" + "#" * done + "." * (bar_width - done) + "] ") if bar_width >= 5 else ""
        line = bar + head
        room = width - len(line) - 2
        if values and room > 8:
            line += "  " + (values if len(values) <= room else values[: room - 1] + "…")
        return line[:width]

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
