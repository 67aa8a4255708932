"""The progress line of a training run: a bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


class Progress:
    """A one-line progress bar on a terminal; plain log lines otherwise."""

    def __init__(self, total: int, log: Callable[[str], None], stream: Any = None, quiet: bool = False, first: int = 0) -> None:
        self.total, self.log, self.quiet, self.first = total, log, quiet, first
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.start = time.perf_counter()

    def update(self, step: int, losses: dict[str, float]) -> None:
        rate = (step - self.first) / max(time.perf_counter() - self.start, 1e-9)
        text = f"step {step}/{self.total}  " + "  ".join(f"{k}={v:.4g}" for k, v in losses.items()) + f"  {rate:.1f} it/s"
        if self.tty:
            width = 30
            done = int(width * step / max(self.total, 1))
            self.stream.write("\r[" + "#" * done + "." * (width - done) + "] " + text[:150])
        elif not self.quiet:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.log(text)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
