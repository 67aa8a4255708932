"""The run directory: every file a run leaves, written so that nothing half-done is read."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import sys
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


def make_run_dir(name: str, out: str | Path | None, root: str = "runs", reuse: bool = False) -> Path:
    """A new run directory (`out`, or runs/<name>-<time>); with `reuse`, `out` is a run being
    resumed, and what it holds is kept."""
    if out:
        path = Path(out)
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


# ----------------------------------------------------------------- checkpoints


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def save_checkpoint(run: Path, state: dict[str, Any]) -> Path:
    ckpt_dir = run / "checkpoints"
    name = checkpoint_name(state["step"])
    fd, tmp = tempfile.mkstemp(dir=ckpt_dir, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
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
    """A checkpoint's state. Only tensors and plain data are unpickled (`weights_only=True`):
    a file that holds any other object is refused before anything in it runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnigenError.one("C001", f"checkpoint `{path}` cannot be loaded safely: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}.", (), "use another checkpoint; unigen loads tensors and plain data only.", exit_code=1) from None
    if not isinstance(state, dict) or "nets" not in state or "step" not in state:
        raise UnigenError.one("C001", f"`{path}` is not a unigen checkpoint (no `nets`/`step`).", (), "point at a file under a run's checkpoints/.", exit_code=1)
    return state


def newest_checkpoint(run: Path) -> tuple[Path, dict[str, Any], list[str]]:
    """The checkpoint `checkpoints/last` points at, or, where that one cannot be read, the
    newest readable one before it. Returns its path, its state and a warning per fallback."""
    ckpt_dir = run / "checkpoints"
    if not ckpt_dir.is_dir():
        raise UnigenError.one("R002", f"`{run}` is not a unigen run directory (it has no checkpoints/).", (), "point `--out` or `--resume` at a directory written by `unigen compile-and-train`.", exit_code=2)
    warnings: list[str] = []
    order = list(checkpoints(run))
    pointer = ckpt_dir / "last"
    if pointer.exists():
        try:
            target = ckpt_dir / pointer.read_text(encoding="utf-8").strip()
            if target.parent != ckpt_dir or not target.name.startswith("step_"):
                raise ValueError(f"it names `{target.name}`")
        except (OSError, ValueError) as exc:
            warnings.append(f"checkpoints/last in `{run}` is unreadable ({exc}); using the newest checkpoint instead.")
        else:
            # Those after `last` were never pointed at: a crash may have cut them short.
            later = [p for p in order if p.name > target.name]
            order = [target] + [p for p in order if p.name < target.name] + later
    failed: list[str] = []
    for path in order:
        if not path.exists():
            failed.append(f"`{path.name}` is missing")
            continue
        try:
            state = load_checkpoint(path)
        except UnigenError as exc:
            failed.append(f"`{path.name}` is unreadable ({exc.diagnostics[0].message.rstrip('.')})")
            continue
        if failed:
            warnings.append("; ".join(failed) + f"; falling back to `{path.name}` (step {state['step']}).")
        return path, state, warnings
    if failed:
        raise UnigenError.one("C001", f"no readable checkpoint in `{ckpt_dir}`: " + "; ".join(failed) + ".", (), "start afresh with another `--out`.", exit_code=1)
    raise UnigenError.one("C001", f"`{ckpt_dir}` holds no checkpoint, so there is nothing to resume.", (), "start afresh with another `--out` (a run checkpoints at its end, and every `train.checkpoint_every` steps).", exit_code=1)


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
        grid = torch.full((rows * (h + 1) + 1, cols * (w + 1) + 1), 0.5)  # grey borders: white is ink
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


# ---------------------------------------------------------------------- export


def export_weights(source: str | Path, output: str | Path | None = None) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """Write the networks' weights of a run's newest readable checkpoint (or of a checkpoint
    file) as safetensors: one tensor per `network.parameter` key, as in the checkpoint's `nets`.
    Returns the file written, the checkpoint's state and the tensors."""
    from safetensors.torch import save

    source = Path(source)
    if source.is_dir():
        path, state, warnings = newest_checkpoint(source)
        for text in warnings:
            print(f"warning: {text}", file=sys.stderr)
        run: Path | None = source
    elif source.is_file():
        path, state = source, load_checkpoint(source)
        run = source.parent.parent if source.parent.name == "checkpoints" else None
    else:
        raise UnigenError.one("R002", f"`{source}` is neither a run directory nor a checkpoint file.", (), "pass a directory written by `unigen compile-and-train`, or a checkpoint under its checkpoints/.")
    nets = state.get("nets")
    tensors = {str(k): v.detach().cpu().contiguous().clone() for k, v in nets.items() if isinstance(v, torch.Tensor)} if isinstance(nets, dict) else {}
    ema = state.get("ema")
    if tensors and isinstance(ema, dict):  # averaged networks (`ema:`) as `ema.network.parameter`
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous().clone() for k, v in ema.items() if isinstance(v, torch.Tensor)})
    if not tensors:
        raise UnigenError.one("C001", f"checkpoint `{path}` holds no network weights to export.", (), "export a checkpoint written by `unigen compile-and-train`.", exit_code=1)
    if output is None:
        out = (run / "weights.safetensors") if run is not None else path.with_suffix(".safetensors")
    else:
        out = Path(output)
    metadata = {"format": "unigen-weights", "step": str(state.get("step")), "checkpoint": str(path)}
    if isinstance(state.get("spec_digest"), str):
        metadata["spec_digest"] = state["spec_digest"]
    try:
        atomic_write(out, save(tensors, metadata))
    except OSError as exc:
        raise UnigenError.one("R002", f"cannot write `{out}`: {exc.strerror or exc}.", (), "choose another `-o FILE.safetensors` in a directory that exists and is writable.", exit_code=1) from None
    return out, state, tensors
