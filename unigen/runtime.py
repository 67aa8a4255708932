"""Networks, traces and data on a device: what a compiled program runs on.

A trace is computed lazily, so a phase pays only for the values its terms read. The
p-trace samples roots from their priors and follows generative edges; the q-trace takes
observed variables from the data batch and follows inference edges.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .ema import Averages
from .errors import UnigenError
from .graph import EdgeInfo
from .kinds import Dataset
from .program import Program
from .registry import Registry


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UnigenError.one("S002", "`train.device` is `cuda`, but no CUDA device is available.", ("train", "device"), "use `--device auto` or `--device cpu`.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def mask_key(var: str) -> str:
    """The batch key of a partially observed variable's mask (1: the row observes it)."""
    return f"{var}.mask"


def observed_rows(batch: dict[str, torch.Tensor], var: str, n: int) -> torch.Tensor | None:
    """A boolean per row: does the row observe `var`? None when every row does."""
    mask = batch.get(mask_key(var))
    return None if mask is None else mask.reshape(n, -1)[:, 0] > 0.5


class Batches:
    """Shuffled epochs over tensors that already live on the device."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator, shard: tuple[int, int] = (0, 1)) -> None:
        self.tensors = tensors
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
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"order": self._order.cpu(), "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order = state["order"].to(next(iter(self.tensors.values())).device)
        self._pos = int(state["pos"])


class Model(nn.Module):
    """The networks of a program, its distributions and its data, on one device."""

    def __init__(self, program: Program, registry: Registry, device: torch.device, dataset: Dataset | None = None) -> None:
        super().__init__()
        self.program, self.registry, self.device = program, registry, device
        spec, graph = program.spec, program.graph
        self.nets = nn.ModuleDict(build_networks(program, registry, device))
        self.to(device)
        # What traces and terms call for each network: the plain modules, or during a training
        # step what the trainer's execution chose (compiled, wrapped for several processes).
        self.calls: dict[str, Any] = dict(self.nets.items())
        self.averages = Averages(self.nets, {n: net.ema for n, net in spec.networks.items() if net.ema}, owner=self)
        self.edge_dist = {e.name: (registry.get("distributions", e.dist), program.options.get(e.path + ("dist",)), len(graph.shape(e.child))) for e in graph.edges if e.kind != "adversarial" and e.child}
        self.priors = {v: registry.get("distributions", var.prior) for v, var in spec.variables.items() if var.prior}
        self.objectives = {e.name: (registry.get("objectives", e.objective), program.options.get(e.path + ("objective",))) for e in graph.of_kind("adversarial")}
        if dataset is None:
            dataset = load_dataset(program, registry)
        self.dataset = Dataset(
            {k: v.to(device) for k, v in dataset.train.items()},
            {k: v.to(device) for k, v in dataset.test.items()},
            dataset.info,
        )
        self.fields = {v: graph.data_field(v) for v, var in spec.variables.items() if var.observed}
        # Batches carry, beside each observed variable, the mask of a partially observed one.
        self.batch_fields = {**self.fields, **{mask_key(v): var.mask for v, var in spec.variables.items() if var.observed and var.mask}}
        # How each trace produces each variable, resolved once: the hot path only looks up.
        self.sources: dict[str, dict[str, tuple[str, EdgeInfo | None]]] = {
            "p": {v: (graph.p_source(v), graph.into(v, "generative")) for v in spec.variables},
            "q": {v: (graph.q_source(v), graph.into(v, "inference")) for v in spec.variables},
        }
        self.reparam = {name: entry[0].reparam for name, entry in self.edge_dist.items()}
        self._priors: dict[tuple[str, int], torch.distributions.Distribution] = {}

    def prior(self, var: str, n: int) -> torch.distributions.Distribution:
        """p(var) for a batch of n; fixed priors are built once per batch size."""
        dist = self._priors.get((var, n))
        if dist is None:
            kind = self.priors[var]
            dist = kind.prior(self.program.graph.shape(var), n, self.device)
            if getattr(kind, "constant_prior", True):
                self._priors[(var, n)] = dist
        return dist

    def trace(self, side: str, batch: dict[str, torch.Tensor] | None, n: int) -> "Trace":
        return Trace(self, side, batch, n)

    def observed_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The observed variables (and masks) of a split's fields, keyed as a batch is."""
        return {v: batch[f] for v, f in self.batch_fields.items() if f in batch}

    def sampled_variable(self) -> str | None:
        """The observed variable samples show: the first one the p-trace generates."""
        graph = self.program.graph
        for v, var in self.program.spec.variables.items():
            if var.observed and graph.p_source(v) == "edge":
                return v
        return None

    @torch.no_grad()
    def generate(self, n: int, var: str, batch: dict[str, torch.Tensor] | None = None, fixed: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Samples of `var` from the p-trace, as the mean of its last conditional where it has
        one; `fixed` sets some variables of the trace (a traversal, an interpolation)."""
        trace = self.trace("p", self.observed_batch(batch) if batch else None, n)
        trace.values.update(fixed or {})
        edge = self.program.graph.into(var, "generative")
        if edge is None:
            return trace[var]
        dist = trace.cond(edge)
        try:
            return dist.mean
        except NotImplementedError:
            return trace[var]


class Trace:
    """Lazily computed values of one side (p or q) for one batch."""

    __slots__ = ("model", "side", "batch", "n", "values", "conds", "graph")

    def __init__(self, model: Model, side: str, batch: dict[str, torch.Tensor] | None, n: int) -> None:
        self.model, self.side, self.batch, self.n = model, side, batch or {}, n
        self.graph = model.program.graph
        self.values: dict[str, torch.Tensor] = {}
        self.conds: dict[str, torch.distributions.Distribution] = {}

    def __getitem__(self, var: str) -> torch.Tensor:
        value = self.values.get(var)
        if value is None:
            value = self.values[var] = self._compute(var)
        return value

    def _compute(self, var: str) -> torch.Tensor:
        source, edge = self.model.sources[self.side][var]
        if source == "data":
            if var not in self.batch:
                raise RuntimeError(f"the {self.side}-trace needs `{var}` from the data batch, but this phase drew no batch")
            return self.batch[var]
        if source == "prior":
            dist = self.prior(var)
            return dist.rsample() if dist.has_rsample else dist.sample()
        if source == "edge":
            assert edge is not None
            dist = self.cond(edge)
            return dist.rsample() if self.model.reparam[edge.name] else dist.sample()
        raise RuntimeError(f"the {self.side}-trace has no way to produce `{var}`")

    def prior(self, var: str) -> torch.distributions.Distribution:
        return self.model.prior(var, self.n)

    def cond(self, edge: EdgeInfo) -> torch.distributions.Distribution:
        """The edge's conditional distribution, evaluated at this trace's parent values."""
        dist = self.conds.get(edge.name)
        if dist is None:
            kind, options, event_dims = self.model.edge_dist[edge.name]
            out = self.model.calls[edge.net](*[self[p] for p in edge.parents])
            dist = self.conds[edge.name] = kind.make(out, event_dims, options)
        return dist


class StepContext:
    """What a term's loss sees: the model and the traces of one phase execution."""

    __slots__ = ("model", "batch", "n", "_traces")

    def __init__(self, model: Model, batch: dict[str, torch.Tensor] | None, n: int) -> None:
        self.model, self.batch, self.n = model, batch, n
        self._traces: dict[str, Trace] = {}

    def trace(self, side: str) -> Trace:
        t = self._traces.get(side)
        if t is None:
            t = self._traces[side] = Trace(self.model, side, self.batch, self.n)
        return t

    @property
    def p(self) -> Trace:
        return self.trace("p")

    @property
    def q(self) -> Trace:
        return self.trace("q")

    def net(self, name: str) -> Any:
        return self.model.calls[name]


def memory_bytes(device: torch.device) -> int | None:
    """The memory of the device networks are trained on (None when unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError, RuntimeError):
        return None


# Training holds each parameter about four times: the weights, their gradients and two moments
# of an optimizer such as Adam.
TRAINING_COPIES = 4


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    return f"{nbytes:.3g} EiB"


def build_networks(program: Program, registry: Registry, device: torch.device) -> dict[str, nn.Module]:
    """Every network of the program, built by its architecture from its edge's shapes.

    Each is built first on the `meta` device, which allocates nothing: a network too large for
    the machine (`hidden: [10000000]`) is refused (G016) instead of exhausting its memory. An
    architecture that fails to build is reported with the network's name, also G016.
    """
    spec = program.spec
    sigs = program.option("network", "signatures")
    sizes: dict[str, int] = {}
    for name, net in spec.networks.items():
        inputs, output = sigs[name]
        arch = registry.get("networks", net.arch)
        try:
            with torch.device("meta"):
                probe = arch.build(list(inputs), tuple(output), program.option("networks", name, "arch"))
            sizes[name] = sum(t.numel() * t.element_size() for t in list(probe.parameters()) + list(probe.buffers()))
        except Exception:  # an architecture that cannot be built on `meta` is built for real below
            continue
    limit = memory_bytes(device)
    total = sum(sizes.values())
    if limit is not None and total * TRAINING_COPIES > limit:
        name = max(sizes, key=lambda n: sizes[n])
        where = "this GPU's" if device.type == "cuda" else "this machine's"
        raise UnigenError.one(
            "G016",
            f"the networks would hold {_size(total)} of parameters (`{name}` alone {_size(sizes[name])}), and training them needs about {TRAINING_COPIES} times that, more than {where} {_size(limit)} of memory; expected networks that fit.",
            ("networks", name),
            f"make `{name}` smaller (its options, e.g. `hidden`, or the shapes of the variables on its edges).",
        )
    nets: dict[str, nn.Module] = {}
    for name, net in spec.networks.items():
        inputs, output = sigs[name]
        arch = registry.get("networks", net.arch)
        try:
            nets[name] = arch.build(list(inputs), tuple(output), program.option("networks", name, "arch"))
        except Exception as exc:  # whatever the architecture raises, the user sees which network
            raise UnigenError.one(
                "G016",
                f"network `{name}` ({net.arch}) cannot be built for {', '.join(str(list(s)) for s in inputs)} -> {list(output)}: {_exc_text(exc)}; expected options the architecture accepts.",
                ("networks", name),
                "check the network's options and the shapes of the variables on its edges.",
            ) from exc
    return nets


def _exc_text(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}".rstrip(": ").rstrip(".")


def load_dataset(program: Program, registry: Registry) -> Dataset:
    """The dataset of the spec, checked: both splits hold rows, every field the spec reads is
    there with its declared shape, and no floating-point field holds a NaN or an infinity."""
    spec = program.spec
    name = spec.data.source
    kind = registry.get("datasets", name)
    try:
        dataset = kind.load(program.option("data", "source"))
    except UnigenError:
        raise
    except (OSError, ValueError) as exc:
        raise UnigenError.one("D001", f"dataset `{name}` cannot be loaded: {exc}.", ("data",), "check the dataset's path and options.") from None
    except Exception as exc:  # a dataset plugin's own failure, named
        raise UnigenError.one("D001", f"dataset `{name}` cannot be loaded: {_exc_text(exc)}.", ("data",), "check the dataset's options; if they are right, report it to the dataset plugin's authors.") from exc
    declared = program.option("data", "fields") or {}
    fields = [program.graph.data_field(v) for v, var in spec.variables.items() if var.observed]
    fields += [var.mask for var in spec.variables.values() if var.observed and var.mask]
    check_dataset(name, dataset, {f: declared.get(f) for f in fields})
    return dataset


def check_dataset(name: str, dataset: Any, needed: dict[str, Any]) -> None:
    """D001 unless both splits hold rows of equal count, the `needed` fields (name -> declared
    shape of one row, or None) are there, and every floating-point value is finite."""
    problems: list[str] = []
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


def _data_hint(problem: str) -> str:
    if "NaN" in problem or "infinite" in problem:
        return "clean the data (drop or impute those rows) before training; a NaN in the data turns every loss into NaN."
    if "empty" in problem:
        return "check the dataset's options (sizes, paths, split fractions): each split needs at least one row."
    return "fix the dataset plugin's `load` so that it returns what its `fields` declare."
