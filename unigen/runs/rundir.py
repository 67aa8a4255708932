"""The run directory: every file a run leaves, written so that nothing half-done is read."""

from __future__ import annotations

import hashlib
import json
import os
import platform
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
    try:
        (path / "samples").mkdir(parents=True, exist_ok=True)
        (path / "checkpoints").mkdir(exist_ok=True)
    except OSError as exc:
        raise UnigenError.one("R002", f"cannot create run directory `{path}`: {exc}.", (), "check the path and its permissions.", exit_code=1) from None
    return path


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


def atomic_write(path: Path, data: bytes | str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
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
