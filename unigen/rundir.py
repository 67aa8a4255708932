"""The run directory: every file a run leaves, written so that nothing half-done is read."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml

from .errors import UnigenError
from .registry import Registry


def make_run_dir(name: str, out: str | None, root: str = "runs") -> Path:
    if out:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
            raise UnigenError.one("R002", f"run directory `{path}` exists and is not empty; unigen never writes over a run.", (), "choose another `--out`, or delete the old run first.")
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


def spec_digest(resolved: dict[str, Any]) -> str:
    """What must match for a checkpoint to fit a spec: everything that shapes the networks."""
    keep = {k: resolved.get(k) for k in ("variables", "networks", "edges")}
    keep["phases"] = [{"name": p.get("name"), "update": p.get("update")} for p in resolved.get("phases", [])]
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def env_info(registry: Registry, device: torch.device) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {d: version(d) for d in ("unigen", "torch", "pluggy", "pydantic", "networkx", "PyYAML", "numpy", "scikit-learn", "matplotlib")},
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "plugins": [{"name": p.name, "dist": p.dist, "version": p.version, "error": p.error} for p in registry.plugins],
    }


class MetricsLog:
    """metrics.csv: one row per logged step; new columns widen the file, old rows kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = ["step", "time_s"]

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


# ----------------------------------------------------------------- checkpoints


def save_checkpoint(run: Path, state: dict[str, Any]) -> Path:
    ckpt_dir = run / "checkpoints"
    name = f"step_{state['step']:08d}.pt"
    fd, tmp = tempfile.mkstemp(dir=ckpt_dir, prefix=".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, ckpt_dir / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write(ckpt_dir / "last", name + "\n")  # the pointer moves only after the file is whole
    return ckpt_dir / name


def checkpoints(run: Path) -> Iterator[Path]:
    """Checkpoints of a run, newest first."""
    yield from sorted((run / "checkpoints").glob("step_*.pt"), reverse=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnigenError.one("C001", f"checkpoint `{path}` cannot be loaded safely: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}.", (), "use another checkpoint; unigen loads tensors and plain data only.", exit_code=1) from None
    if not isinstance(state, dict) or "nets" not in state or "step" not in state:
        raise UnigenError.one("C001", f"`{path}` is not a unigen checkpoint (no `nets`/`step`).", (), "point at a file under a run's checkpoints/.", exit_code=1)
    return state


# --------------------------------------------------------------------- pictures


def save_samples(path: Path, samples: torch.Tensor, info: dict[str, Any], title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = samples.detach().float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    image_shape = info.get("image_shape")
    if image_shape is not None:
        h, w = image_shape[-2], image_shape[-1]
        imgs = samples.reshape(len(samples), -1, h, w)[:64, 0].clamp(0, 1)
        n = len(imgs)
        cols = 8
        rows = max(1, (n + cols - 1) // cols)
        grid = torch.ones(rows * (h + 1) + 1, cols * (w + 1) + 1)
        for i in range(n):
            r, c = divmod(i, cols)
            grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = imgs[i]
        fig, ax = plt.subplots(figsize=(4, 4 * rows / cols + 0.3))
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        pts = samples.reshape(len(samples), -1)[:, :2].numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, color="tab:blue", label="samples")
        modes = info.get("modes")
        if modes is not None:
            m = torch.as_tensor(modes).cpu().numpy()
            ax.scatter(m[:, 0], m[:, 1], s=40, marker="x", color="tab:red", label="true modes")
            span = float(abs(m).max()) * 1.4 + 0.2
            ax.set_xlim(-span, span)
            ax.set_ylim(-span, span)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    buf = _png(fig)
    plt.close(fig)
    atomic_write(path, buf)


def _png(fig: Any) -> bytes:
    import io

    b = io.BytesIO()
    fig.savefig(b, format="png", dpi=100)
    return b.getvalue()
