"""SIGINT and SIGTERM during training: finish the step, save a checkpoint, exit with R003."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """SIGINT/SIGTERM during training: the first sets a flag (the step finishes, a checkpoint
    is saved); a second one stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
