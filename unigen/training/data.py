"""The data a program trains on: the dataset loaded and checked, and shuffled batches on the device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from unigen.api.kinds import Dataset
from unigen.compiler.program import Program
from unigen.errors import UnigenError
from unigen.training.networks import _exc_text


def mask_key(var: str) -> str:
    """The batch key of a partially observed variable's mask (1: the row observes it)."""
    return f"{var}.mask"


def observed_rows(batch: dict[str, torch.Tensor], var: str, n: int) -> torch.Tensor | None:
    """A boolean per row: does the row observe `var`? None when every row does."""
    mask = batch.get(mask_key(var))
    return None if mask is None else mask.reshape(n, -1)[:, 0] > 0.5


class Batches:
    """Shuffled epochs over tensors that already live on the device."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator, shard: tuple[int, int] = (0, 1),
                 fresh: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> None:
        self.tensors = tensors
        self.fresh = fresh or {}  # batch key -> the dataset's draw of its rows for each batch
        self.n = len(next(iter(tensors.values())))
        self.batch_size = min(batch_size, self.n)
        self.generator = generator
        # (rank, processes): every process draws the same global batch and keeps its slice.
        self.shard = shard
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = self.n

    def next(self) -> dict[str, torch.Tensor]:
        if self._pos + self.batch_size > self.n:
            self._order = torch.randperm(self.n, generator=self.generator).to(next(iter(self.tensors.values())).device)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        rank, size = self.shard
        if size > 1:
            idx = idx.tensor_split(size)[rank]
        batch = {k: v.index_select(0, idx) for k, v in self.tensors.items()}
        for k, draw in self.fresh.items():
            batch[k] = draw(batch[k])
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"order": self._order.cpu(), "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order = state["order"].to(next(iter(self.tensors.values())).device)
        self._pos = int(state["pos"])


def load_dataset(program: Program) -> Dataset:
    """The dataset of the spec, checked: both splits hold rows, every field the spec reads is
    there with its declared shape, and no floating-point field holds a NaN or an infinity."""
    name = program.data.source
    try:
        dataset = program.data.kind.load(program.data.options)
    except UnigenError:
        raise
    except (OSError, ValueError) as exc:
        raise UnigenError.one("D001", f"dataset `{name}` cannot be loaded: {exc}.", ("data",), "check the dataset's path and options.") from None
    except Exception as exc:  # a dataset plugin's own failure, named
        raise UnigenError.one("D001", f"dataset `{name}` cannot be loaded: {_exc_text(exc)}.", ("data",), "check the dataset's options; if they are right, report it to the dataset plugin's authors.") from exc
    declared = program.data.fields
    bound = {v.field: v.name for v in program.variables.values() if v.field is not None}
    fields = [*bound, *(v.mask for v in program.variables.values() if v.observed and v.mask)]
    check_dataset(name, dataset, {f: declared.get(f) for f in fields}, bound)
    return dataset


def check_dataset(name: str, dataset: Any, needed: dict[str, Any], continuous: dict[str, str] | None = None) -> None:
    """D001 unless both splits hold rows of equal count, the `needed` fields (name -> declared
    shape of one row, or None) are there, the `continuous` ones (field -> the variable bound to
    it) hold floating-point numbers, and every floating-point value is finite."""
    problems: list[str] = []
    for split in ("train", "test"):
        fields = getattr(dataset, split, None)
        problems += _dtype_problems(split, fields if isinstance(fields, dict) else {}, continuous or {})
    splits = {"train": getattr(dataset, "train", None), "test": getattr(dataset, "test", None)}
    for split, fields in splits.items():
        if not isinstance(fields, dict):
            problems.append(f"its {split} split is {type(fields).__name__}, not a mapping of field names to tensors")
            continue
        if not fields:
            problems.append(f"its {split} split is empty (no fields)")
            continue
        rows: dict[str, int] = {}
        for field, value in fields.items():
            if not isinstance(value, torch.Tensor):
                problems.append(f"field `{field}` of its {split} split is {type(value).__name__}, not a tensor")
                continue
            if value.dim() == 0:
                problems.append(f"field `{field}` of its {split} split is a single number, not rows")
                continue
            rows[field] = len(value)
            if value.is_floating_point() or value.is_complex():
                bad = ~torch.isfinite(value.detach())
                if bad.any():
                    per_row = bad.reshape(len(value), -1).any(1)
                    first = int(per_row.nonzero()[0, 0])
                    nans = int(torch.isnan(value.detach()).sum())
                    what = f"{nans} NaN value{'s' if nans != 1 else ''}" if nans else ""
                    infs = int(bad.sum()) - nans
                    what += (" and " if what and infs else "") + (f"{infs} infinite value{'s' if infs != 1 else ''}" if infs else "")
                    problems.append(f"field `{field}` of its {split} split holds {what} (in {int(per_row.sum())} of {len(value)} rows, the first row {first}); expected finite numbers")
        empty = [f for f, n in rows.items() if n == 0]
        if empty:
            problems.append(f"its {split} split is empty (field{'s' if len(empty) > 1 else ''} {', '.join(f'`{f}`' for f in empty)} {'have' if len(empty) > 1 else 'has'} 0 rows)")
        elif len(set(rows.values())) > 1:
            problems.append(f"the fields of its {split} split have different numbers of rows ({', '.join(f'`{f}` {n}' for f, n in rows.items())})")
        for field, shape in needed.items():
            if field not in fields:
                problems.append(f"its {split} split has no field `{field}`, which the spec reads (it has: {', '.join(f'`{f}`' for f in fields)})")
            elif shape is not None and isinstance(fields[field], torch.Tensor) and fields[field].dim() > 0 and tuple(fields[field].shape[1:]) != tuple(shape):
                problems.append(f"field `{field}` of its {split} split has rows of shape {list(fields[field].shape[1:])}, but the dataset declares {list(shape)}")
    if problems:
        diags = [UnigenError.one("D001", f"dataset `{name}`: {p}.", ("data",), _data_hint(p)).diagnostics[0] for p in problems]
        raise UnigenError(diags)


def _dtype_problems(split: str, fields: dict[str, Any], continuous: dict[str, str]) -> list[str]:
    """A field bound to a variable feeds networks and densities, which compute in floating
    point: integer or boolean values there would fail inside the first step's matrix products."""
    out = []
    for field, var in continuous.items():
        value = fields.get(field)
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            out.append(f"field `{field}` of its {split} split holds {str(value.dtype).removeprefix('torch.')} values, but variable `{var}` reads it as continuous values; expected a floating-point tensor (float32)")
    return out


def _data_hint(problem: str) -> str:
    if "floating-point tensor" in problem:
        return "convert the field in the dataset plugin's `load` (`tensor.float()`; class labels as a one-hot float tensor), or report it to the plugin's authors."
    if "NaN" in problem or "infinite" in problem:
        return "clean the data (drop or impute those rows) before training; a NaN in the data turns every loss into NaN."
    if "empty" in problem:
        return "check the dataset's options (sizes, paths, split fractions): each split needs at least one row."
    return "fix the dataset plugin's `load` so that it returns what its `fields` declare."
