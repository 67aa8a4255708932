"""The run directory: every file a run leaves, written so that nothing half-done is read."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import stat
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml

from unigen.api.registry import Registry
from unigen.errors import UnigenError


def make_run_dir(name: str, out: str | Path | None, root: str = "runs", reuse: bool = False) -> Path:
    """A new run directory (`out`, or runs/<name>-<time>); with `reuse`, `out` is a run being
    resumed, and what it holds is kept."""
    if out:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise UnigenError.one("R002", f"`--out {path}` exists and is not a directory (a file or a device); a run writes a directory of files there.", (), "choose a new `--out` path (it is created), or an existing run directory.")
        if not reuse and path.exists() and any(path.iterdir()):
            raise UnigenError.one("R002", f"run directory `{path}` exists and is not empty; unigen never writes over a run.", (), "choose another `--out`, continue that run with `--resume auto`, or delete it first.")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{name}-{stamp}"
        i = 1
        while path.exists():
            i += 1
            path = Path(root) / f"{name}-{stamp}-{i}"
    if reuse:
        check_run_files(path)
    try:
        (path / "samples").mkdir(parents=True, exist_ok=True)
        (path / "checkpoints").mkdir(exist_ok=True)
    except OSError as exc:
        raise UnigenError.one("R002", f"cannot create run directory `{path}`: {exc}.", (), "check the path and its permissions.", exit_code=1) from None
    return path


# The files a run reads back or appends to when it continues; a fifo or a device in their place
# would block the run for ever (or feed it without end), so they are refused before any is opened.
RUN_FILES = ("spec.yaml", "spec.resolved.yaml", "program.txt", "env.json", "metrics.csv", "summary.json", "train.log", ".lock")


def check_run_files(run: Path) -> None:
    """R002 where one of a continued run's own files is there but is no regular file."""
    for name in RUN_FILES:
        kind = not_regular(Path(run) / name)
        if kind:
            raise UnigenError.one("R002", f"`{Path(run) / name}` is {kind}, where the run keeps its `{name}`; unigen reads and writes regular files only (a fifo would block it for ever).", (), f"move `{Path(run) / name}` away, then run the same command again.")


def not_regular(path: Path, follow: bool = True) -> str:
    """What `path` is where it exists but is no regular file ("" for a regular file or for
    nothing there): "a directory", "a fifo (named pipe)", "a character device", ... With
    `follow`, a symbolic link is what it points at; without, a link itself is fine."""
    try:
        mode = os.stat(path).st_mode if follow else os.lstat(path).st_mode
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return "a symbolic link that loops" if exc.errno == errno.ELOOP else f"unreadable ({exc.strerror or exc})"
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return ""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a fifo (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "no regular file"


def write_error(path: Path, exc: OSError, what: str = "") -> UnigenError:
    """R002 for a file of the run that cannot be written (a full disk, a read-only file system,
    a fifo or a directory in its place): exit 1, naming the file; what the run wrote before
    stays as it was."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free space on that disk"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = f"make `{path.parent}` writable (or move the run to a writable disk)"
    else:
        fix = f"move `{path}` away"
    return UnigenError.one(
        "R002",
        f"cannot write `{path}`{what}: {exc.strerror or exc}; the run stops, and what it wrote before (its checkpoints, `checkpoints/last`) is kept as it was.",
        (),
        f"{fix}, then run the same command with `--resume auto` to continue from the newest checkpoint.",
        exit_code=1,
    )


def write_run_file(path: Path, data: bytes | str) -> None:
    """`atomic_write` for a run's own files: a failure is R002 (`write_error`), not an OSError."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise write_error(path, exc) from exc


def remove_temporaries(run: Path) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in `run` and its
    checkpoints/ (`.NAME.*.tmp`); called while holding the run's lock. Returns what went."""
    gone = []
    for folder in (Path(run), Path(run) / "checkpoints", Path(run) / "samples"):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
            try:
                tmp.unlink()
                gone.append(tmp)
            except OSError:  # someone else's file, or already gone: harmless
                continue
    return gone


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc/self/status);
    elsewhere set and put back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets under the umask (0644 under 022), for files made by mkstemp."""
    return 0o666 & ~current_umask()


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `path` whole or not at all (a temporary file in its folder, then a rename). A path
    that is a directory, a fifo or a device is refused (OSError): a rename would replace it."""
    path = Path(path)
    kind = not_regular(path, follow=False)
    if kind:
        raise OSError(errno.EISDIR if kind == "a directory" else errno.EEXIST, f"it is {kind}, not a regular file", str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600 whatever the umask says
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def spec_identity(resolved: dict[str, Any]) -> dict[str, Any]:
    """What must match for a checkpoint to fit a spec: everything that shapes the networks, their
    optimizers and the data stream. Plain data (it is stored in checkpoints, which hold no objects)."""
    train = resolved.get("train") or {}
    keep = {k: resolved.get(k) for k in ("data", "variables", "networks", "edges", "phases")}
    keep["train"] = {k: train.get(k) for k in ("batch_size", "seed", "optim")}
    return json.loads(json.dumps(keep, sort_keys=True))


def spec_digest(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec_identity(resolved), sort_keys=True).encode()).hexdigest()[:16]


def spec_differences(stored: Any, current: Any, path: str = "", names: tuple[str, str] = ("checkpoint", "spec")) -> list[str]:
    """Where two (resolved) specs differ, as `dotted.path: checkpoint X, spec Y` lines."""

    def show(v: Any) -> str:
        text = json.dumps(v, sort_keys=True)
        return text if len(text) <= 60 else text[:57] + "..."

    where = path or "spec"
    if isinstance(stored, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in list(stored) + [k for k in current if k not in stored]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in current:
                out.append(f"{sub}: only in the {names[0]} ({show(stored[key])})")
            elif key not in stored:
                out.append(f"{sub}: only in the {names[1]} ({show(current[key])})")
            else:
                out.extend(spec_differences(stored[key], current[key], sub, names))
        return out
    if isinstance(stored, list) and isinstance(current, list):
        if len(stored) != len(current):
            if not any(isinstance(v, (dict, list)) for v in stored + current):
                return [f"{where}: {names[0]} {show(stored)}, {names[1]} {show(current)}"]
            return [f"{where}: {names[0]} has {len(stored)} items, {names[1]} has {len(current)}"]
        return [d for i, (a, b) in enumerate(zip(stored, current)) for d in spec_differences(a, b, f"{path}.{i}" if path else str(i), names)]
    return [] if stored == current else [f"{where}: {names[0]} {show(stored)}, {names[1]} {show(current)}"]


def env_info(registry: Registry, device: torch.device) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {d: version(d) for d in ("unigen", "torch", "pluggy", "pydantic", "networkx", "PyYAML", "numpy", "scikit-learn", "matplotlib", "safetensors")},
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "plugins": [{"name": p.name, "dist": p.dist, "version": p.version, "error": p.error} for p in registry.plugins],
    }
