"""One process trains in a run directory at a time: `RUN/.lock`, held with an advisory
`flock` for as long as the run trains. The kernel drops the lock when its process ends, however
it ends (kill -9 included), so a lock left by a dead process never blocks a restart; the file
names the process that holds it, for the message the second one gets (R002)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO, Any

from unigen.errors import UnigenError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, run: Path) -> None:
        self.path = Path(run) / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Hold the lock, or raise R002 naming the process that holds it."""
        if fcntl is None:
            return self
        try:
            f = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise UnigenError.one("R002", f"cannot open `{self.path}` to lock the run directory: {exc.strerror or exc}.", (), "check the run directory's permissions.", exit_code=1) from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            f.close()
            raise UnigenError.one(
                "R002",
                f"run directory `{self.path.parent}` is in use: {owner} is training in it; two processes would interleave its metrics, log and checkpoints.",
                (),
                "wait for that run to finish (or stop it), then run the same command again; or train into another `--out`.",
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            try:
                self._file.close()  # closing drops the flock; the file stays, unlocked
            finally:
                self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
