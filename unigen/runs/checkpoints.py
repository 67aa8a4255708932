"""Checkpoints: written atomically with a `last` pointer, loaded safely (tensors and plain data
only), the newest readable one found, and networks exported as safetensors."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from unigen.errors import UnigenError, exception_text
from unigen.runs.rundir import atomic_write, file_mode, not_regular, write_error


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def save_checkpoint(run: Path, state: dict[str, Any]) -> Path:
    """The state as `checkpoints/step_N.pt`, whole or not at all, then `checkpoints/last` moved
    to it. A write that fails (a full disk, a read-only file system) is R002, and the previous
    checkpoint and `last` stay as they were."""
    ckpt_dir = run / "checkpoints"
    path = ckpt_dir / checkpoint_name(state["step"])
    try:
        fd, tmp = tempfile.mkstemp(dir=ckpt_dir, prefix=".", suffix=".tmp")
    except OSError as exc:
        raise write_error(path, exc, " (the checkpoint)") from exc
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600 whatever the umask says
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, exc, " (the checkpoint)") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _point_last_at(ckpt_dir, path)
    return path


def _point_last_at(ckpt_dir: Path, path: Path) -> None:
    """`checkpoints/last` names `path`, which is whole by now."""
    pointer = ckpt_dir / "last"
    kind = not_regular(pointer, follow=False)
    if kind == "a directory":  # not a pointer unigen wrote: an empty one is replaced
        try:
            pointer.rmdir()
        except OSError:
            raise UnigenError.one("R002", f"`{pointer}` is a directory with files in it, where the run keeps the name of its newest checkpoint.", (), f"move `{pointer}` away; the checkpoint `{path}` is saved.", exit_code=1) from None
    elif kind:  # a fifo or the like in the run's own folder (reported when the run resumed)
        pointer.unlink(missing_ok=True)
    try:
        atomic_write(pointer, path.name + "\n")  # the pointer moves only after the file is whole
    except OSError as exc:
        raise write_error(pointer, exc, f" (it would name the checkpoint `{path.name}`, which is saved)") from exc


def checkpoints(run: Path) -> Iterator[Path]:
    """Checkpoints of a run, newest first."""
    yield from sorted((run / "checkpoints").glob("step_*.pt"), reverse=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state. Only tensors and plain data are unpickled (`weights_only=True`):
    a file that holds any other object is refused before anything in it runs, and so is a path
    that is no regular file (a fifo would block the read for ever)."""
    kind = not_regular(path)
    if kind:
        raise UnigenError.one("C001", f"`{path}` is {kind}, not a checkpoint file; unigen reads checkpoints from regular files only.", (), "point at a file under a run's checkpoints/ (`step_*.pt`).", exit_code=1)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnigenError.one("C001", f"checkpoint `{path}` cannot be loaded safely: {exception_text(exc)}.", (), "use another checkpoint; unigen loads tensors and plain data only.", exit_code=1) from None
    if not isinstance(state, dict) or "nets" not in state or "step" not in state:
        raise UnigenError.one("C001", f"`{path}` is not a unigen checkpoint (no `nets`/`step`).", (), "point at a file under a run's checkpoints/.", exit_code=1)
    problem = damaged(state)
    if problem:
        raise UnigenError.one("C001", f"checkpoint `{path}` is damaged: {problem}.", (), "use another checkpoint of the run (`checkpoints/` holds the earlier ones), or start afresh with another `--out`.", exit_code=1)
    return state


def damaged(state: dict[str, Any]) -> str:
    """What makes a loaded state unusable ("" when nothing): a step that is not a whole number
    of at least 0, weights or optimizer state that are not finite, a data position outside its
    order, a part of the wrong type. (What needs the networks and the data, `load_trainer_state`
    checks.)"""
    for check in (_bad_step, _bad_types, _bad_weights, _bad_batches, _bad_parts):
        problem = check(state)
        if problem:
            return problem
    return ""


def _bad_step(state: dict[str, Any]) -> str:
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"its `step` is {step!r}; expected a whole number of at least 0"
    seconds = state.get("train_seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return f"its `train_seconds` is {seconds!r}; expected a number of seconds of at least 0"
    return ""


def _nonfinite(obj: Any, where: str) -> list[str]:
    """Where `obj` (tensors in dicts and lists) holds NaN or infinite values."""
    if isinstance(obj, torch.Tensor):
        return [where] if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else []
    if isinstance(obj, float):
        return [where] if math.isnan(obj) else []
    if isinstance(obj, dict):
        return [w for k, v in obj.items() for w in _nonfinite(v, f"{where}.{k}")]
    if isinstance(obj, (list, tuple)):
        return [w for i, v in enumerate(obj) for w in _nonfinite(v, f"{where}.{i}")]
    return []


def _bad_weights(state: dict[str, Any]) -> str:
    nets = state.get("nets")
    if not isinstance(nets, dict) or not all(isinstance(v, torch.Tensor) for v in nets.values()):
        return "its `nets` is not a mapping of parameter names to tensors"
    ema = state.get("ema")
    if ema is not None and (not isinstance(ema, dict) or not all(isinstance(v, torch.Tensor) for v in ema.values())):
        return "its averaged networks (`ema`) are not a mapping of parameter names to tensors"
    bad = [k for k, v in nets.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        return f"its weights hold NaN or infinite values ({', '.join(f'`{k}`' for k in bad[:3])}{', ...' if len(bad) > 3 else ''}); a run never saves such a state as good"
    bad = [w for key in ("ema", "optimizers", "samplers") for w in _nonfinite(state.get(key), key)]
    if bad:
        return f"it holds NaN or infinite values ({', '.join(f'`{k}`' for k in bad[:3])}{', ...' if len(bad) > 3 else ''}); a run never saves such a state as good"
    return ""


def _bad_batches(state: dict[str, Any]) -> str:
    batches = _part(state, "batches")
    if batches:
        order, pos = batches.get("order"), batches.get("pos")
        if not isinstance(order, torch.Tensor) or order.dtype not in (torch.int64, torch.int32) or order.dim() != 1:
            return "its data order (`batches.order`) is not a list of row indices"
        if isinstance(pos, bool) or not isinstance(pos, int) or pos < 0 or (len(order) and pos > len(order)):
            return f"its data position (`batches.pos`) is {pos!r}; expected a whole number from 0 to {len(order)}"
        if len(order) and (int(order.min()) < 0):
            return "its data order (`batches.order`) holds negative row indices"
    return ""


def _part(state: dict[str, Any], key: str) -> Any:
    """A part of the state, `{}` where it is absent (once `_bad_types` has passed it)."""
    value = state.get(key)
    return {} if value is None else value


# The parts a resumed run reads besides the weights, and what each must be where present.
PARTS: dict[str, tuple[type, str]] = {
    "optimizers": (dict, "a mapping of phases to optimizer states"),
    "batches": (dict, "a mapping of the data order and position"),
    "rng": (dict, "a mapping of random streams"),
    "nonfinite": (dict, "a mapping of counts"),
    "health": (dict, "a mapping"),
    "samplers": (dict, "a mapping of traces to chains"),
    "scalers": (dict, "a mapping of phases to scaler states"),
    "best": (dict, "a mapping"),
    "losses": (dict, "a mapping of phases to their terms' last values"),
    "spec_identity": (dict, "a mapping of spec keys"),
    "spec_digest": (str, "a string"),
}


def _bad_types(state: dict[str, Any]) -> str:
    for key, (kind, what) in PARTS.items():
        value = state.get(key)
        if value is not None and not isinstance(value, kind):
            return f"its `{key}` is {_show(value)}; expected {what}"
    return ""


def _bad_parts(state: dict[str, Any]) -> str:
    counts = _part(state, "nonfinite")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        return f"its counts of non-finite losses (`nonfinite`) are {_show(counts)}; expected whole numbers"
    health = _part(state, "health")
    streaks, warnings = health.get("streaks"), health.get("warnings")
    if not isinstance(streaks, (dict, type(None))) or not isinstance(warnings, (list, type(None))) or not all(isinstance(w, dict) for w in warnings or []):
        return "its health record (`health`) is not a mapping of `streaks` and a list of `warnings`"
    if not all(isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()) for v in _part(state, "samplers").values()):
        return "its sampler chains (`samplers`) are not mappings of tensors"
    if not all(isinstance(v, dict) and all(isinstance(t, torch.Tensor) and t.numel() == 1 for t in v.values()) for v in _part(state, "losses").values()):
        return "its last losses (`losses`) are not mappings of terms to values"
    best = _part(state, "best")
    value = best.get("value")
    if (value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)))) or not isinstance(best.get("step"), (int, type(None))) or not isinstance(best.get("checkpoint"), (str, type(None))):
        return f"its best checkpoint so far (`best`) is {_show(best)}; expected a metric's value, a step and a file name"
    try:
        json.dumps(state.get("spec_identity"))
    except (TypeError, ValueError):
        return "its spec identity (`spec_identity`) is not plain data"
    return ""


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, torch.Tensor) else f"a tensor of shape {list(value.shape)}"
    return text if len(text) <= 60 else text[:57] + "..."


# `checkpoints/last` holds one file name; anything longer is not a pointer unigen wrote.
POINTER_LIMIT = 256


def newest_checkpoint(run: Path) -> tuple[Path, dict[str, Any], list[str]]:
    """The checkpoint `checkpoints/last` points at, or, where that one cannot be read, the
    newest readable one before it. Returns its path, its state and a warning per fallback."""
    ckpt_dir = run / "checkpoints"
    if not ckpt_dir.is_dir():
        raise UnigenError.one("R002", f"`{run}` is not a unigen run directory (it has no checkpoints/).", (), "point `--out` or `--resume` at a directory written by `unigen compile-and-train`.", exit_code=2)
    warnings: list[str] = []
    order = list(checkpoints(run))
    pointer = ckpt_dir / "last"
    if pointer.is_symlink() or pointer.exists():
        try:
            if not pointer.is_file():  # a directory, a fifo (which would block a read), a looping link
                raise ValueError("it is not a regular file")
            with pointer.open("rb") as f:
                raw = f.read(POINTER_LIMIT + 1)
            if len(raw) > POINTER_LIMIT:
                raise ValueError(f"it is longer than a checkpoint's name ({POINTER_LIMIT} bytes at most)")
            target = ckpt_dir / raw.decode("utf-8").strip()
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


def resolve_checkpoint(source: Path, *, run_dir: bool = True) -> tuple[Path, dict[str, Any], list[str], Path | None] | None:
    """`source` as a run directory (its newest readable checkpoint; only with `run_dir`) or as a
    checkpoint file: the checkpoint's path, its state, a warning per fallback, and the run
    directory it belongs to (a file under `RUN/checkpoints/` belongs to RUN, another to none).
    None where `source` is neither: each caller says so in its own words."""
    if run_dir and source.is_dir():
        path, state, warnings = newest_checkpoint(source)
        return path, state, warnings, source
    if source.is_file() or (os.path.lexists(source) and not source.is_dir()):  # a fifo, a device, a looping link: C001
        return source, load_checkpoint(source), [], source.parent.parent if source.parent.name == "checkpoints" else None
    return None


def export_weights(source: str | Path, output: str | Path | None = None) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """Write the networks' weights of a run's newest readable checkpoint (or of a checkpoint
    file) as safetensors: one tensor per `network.parameter` key, as in the checkpoint's `nets`.
    Returns the file written, the checkpoint's state and the tensors."""
    from safetensors.torch import save

    source = Path(source)
    found = resolve_checkpoint(source)
    if found is None:
        raise UnigenError.one("R002", f"`{source}` is neither a run directory nor a checkpoint file.", (), "pass a directory written by `unigen compile-and-train`, or a checkpoint under its checkpoints/.")
    path, state, warnings, run = found
    for text in warnings:
        print(f"warning: {text}", file=sys.stderr)
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
