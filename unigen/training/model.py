"""Networks, traces and data on a device: what a compiled program runs on.

A trace is computed lazily, so a phase pays only for the values its terms read. The
p-trace samples roots from their priors and follows generative edges; the q-trace takes
observed variables from the data batch and follows inference edges. The variables of
undirected factors come from samplers: the q-trace's hidden units given the observed ones, the
sampler trace m's chain, and the p-trace's draws from a long run of the chain.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unigen.api.kinds import Arch, Dataset
from unigen.compiler.program import Program
from unigen.graph.model import EdgeInfo
from unigen.training.averages import Averages
from unigen.training.data import load_dataset, mask_key
from unigen.training.networks import build_networks


class Model(nn.Module):
    """The networks of a program, its distributions and its data, on one device."""

    def __init__(self, program: Program, device: torch.device, dataset: Dataset | None = None) -> None:
        super().__init__()
        self.program, self.device = program, device
        self.nets = nn.ModuleDict(build_networks(program, device))
        self.to(device)
        # What traces and terms call for each network: the plain modules, or during a training
        # step what the trainer's execution chose (compiled, wrapped for several processes).
        self.calls: dict[str, Any] = dict(self.nets.items())
        self.averages = Averages(self.nets, {n: net.ema for n, net in program.networks.items() if net.ema}, owner=self)
        self.edge_dist = {name: (e.kind, e.options, e.event_dims) for name, e in program.edges.items() if e.info.kind in ("generative", "inference")}
        self.evaluates = {name for name, e in program.edges.items() if getattr(e.kind, "evaluates", False)}
        self.priors = {v: node.prior_kind for v, node in program.variables.items() if node.prior_kind is not None}
        self.data_kind = program.data.kind  # the registered DatasetKind: how its samples are shown
        if dataset is None:
            dataset = load_dataset(program)
        self.dataset = Dataset(
            {k: v.to(device) for k, v in dataset.train.items()},
            {k: v.to(device) for k, v in dataset.test.items()},
            dataset.info,
        )
        self.fields = {v: node.field for v, node in program.variables.items() if node.field is not None}
        self._init_from_data()
        # Batches carry, beside each observed variable, the mask of a partially observed one.
        self.batch_fields = {**self.fields, **{mask_key(v): node.mask for v, node in program.variables.items() if node.observed and node.mask}}
        # How each trace produces each variable, resolved once: the hot path only looks up.
        self.sources: dict[str, dict[str, tuple[str, EdgeInfo | None]]] = {
            side: {v: _source(program, side, getattr(node, f"{side}_source"), v) for v, node in program.variables.items()}
            for side in ("p", "q", "m")
        }
        self.reparam = {name: entry[0].reparam for name, entry in self.edge_dist.items()}
        self._priors: dict[tuple[str, int], torch.distributions.Distribution] = {}
        # The undirected part: its energy, and the samplers' own tensors (persistent chains), by
        # trace, which checkpoints keep.
        self.energy = Energy(self) if program.factors else None
        self.sampler_state: dict[str, dict[str, torch.Tensor]] = {trace: {} for trace in program.samplers}

    def _init_from_data(self) -> None:
        """Each architecture's data-informed start (`Arch.init_from_data`), given the training
        values of the observed inputs of the first edge its network computes."""
        for name, net in self.program.networks.items():
            hook = getattr(type(net.kind), "init_from_data", None)
            if hook is None or hook is Arch.init_from_data:
                continue  # the default does nothing: no edge to look up
            edge = next(e.info for e in self.program.edges.values() if e.info.net == name)
            names = edge.parents if edge.kind != "adversarial" else tuple(v for _, v in edge.real)
            values = [self.dataset.train[self.fields[v]] if v in self.fields else None for v in names]
            with torch.no_grad():
                net.kind.init_from_data(self.nets[name], values, net.options)

    def prior(self, var: str, n: int) -> torch.distributions.Distribution:
        """p(var) for a batch of n; fixed priors are built once per batch size."""
        dist = self._priors.get((var, n))
        if dist is None:
            kind = self.priors[var]
            dist = kind.prior(self.program.variables[var].shape, n, self.device)
            if getattr(kind, "constant_prior", True):
                self._priors[(var, n)] = dist
        return dist

    def call(self, edge: EdgeInfo) -> Any:
        """The network of `edge` as this phase runs it, at the edge's port."""
        net = self.calls[edge.net]
        return net if edge.port is None else Port(net, edge.port)

    def trace(self, side: str, batch: dict[str, torch.Tensor] | None, n: int) -> "Trace":
        return Trace(self, side, batch, n)

    def context(self, batch: dict[str, torch.Tensor] | None, n: int) -> "StepContext":
        """A fresh step context over `batch` (n rows): how a metric, or a term that evaluates
        another batch, computes terms outside a training step."""
        return StepContext(self, batch, n)

    def observed_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The observed variables (and masks) of a split's fields, keyed as a batch is."""
        return {v: batch[f] for v, f in self.batch_fields.items() if f in batch}

    def sampled_variable(self) -> str | None:
        """The observed variable samples show: the first one the p-trace generates."""
        return self.program.sampled_variable()

    @torch.no_grad()
    def generate(self, n: int, var: str, batch: dict[str, torch.Tensor] | None = None, fixed: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Samples of `var` from the p-trace, as the mean of its last conditional where it has
        one; `fixed` sets some variables of the trace (a traversal, an interpolation)."""
        trace = self.trace("p", self.observed_batch(batch) if batch else None, n)
        trace.values.update(fixed or {})
        edge = self.sources["p"][var][1] if self.sources["p"][var][0] == "edge" else None
        if edge is None or edge.name in self.evaluates:  # a density evaluated on its value has no mean to show
            return trace[var]
        dist = trace.cond(edge)
        try:
            return dist.mean
        except NotImplementedError:
            return trace[var]


class Trace:
    """Lazily computed values of one side (p or q) for one batch."""

    __slots__ = ("model", "side", "batch", "n", "values", "conds")

    def __init__(self, model: Model, side: str, batch: dict[str, torch.Tensor] | None, n: int) -> None:
        self.model, self.side, self.batch, self.n = model, side, batch or {}, n
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
        if source in ("edge", "generative"):  # generative: a q-trace value completed through its generative edge
            assert edge is not None
            dist = self.cond(edge)
            return dist.rsample() if self.model.reparam[edge.name] else dist.sample()
        if source == "sampler":
            self._fill()
            return self.values[var]
        raise RuntimeError(f"the {self.side}-trace has no way to produce `{var}`")

    def _fill(self) -> None:
        """Every variable of the undirected factors that this trace's sampler fills, at once: the
        q-trace's hidden units given its observed ones, the sampler trace's chain, or (the p-trace)
        the model's own draws from a long run of the chain."""
        model, energy = self.model, self.model.energy
        assert energy is not None
        trace = "m" if self.side == "p" else self.side
        node = model.program.samplers[trace]
        data = {v: self.batch[v] for v in energy.observed if v in self.batch}
        given = {v: self[v] for v in energy.observed} if self.side == "q" else {}
        state = {} if self.side == "p" else model.sampler_state[trace]
        mode = "sample" if self.side == "p" else "train"
        values = node.kind.fill(energy, given, data, self.n, node.options, state, mode)
        for v, value in values.items():
            self.values.setdefault(v, value)

    def prior(self, var: str) -> torch.distributions.Distribution:
        return self.model.prior(var, self.n)

    def cond(self, edge: EdgeInfo) -> torch.distributions.Distribution:
        """The edge's conditional distribution, evaluated at this trace's parent values."""
        dist = self.conds.get(edge.name)
        if dist is None:
            kind, options, event_dims = self.model.edge_dist[edge.name]
            net = self.model.call(edge)
            parents = [self[p] for p in edge.parents]
            if edge.name in self.model.evaluates:  # the network scores the child's own value
                assert edge.child is not None
                shape = self.model.program.variables[edge.child].shape
                dist = kind.density(net, self.model.nets[edge.net], parents, shape, self.n, options)
            else:
                dist = kind.make(net(*parents), event_dims, options)
            self.conds[edge.name] = dist
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

    @property
    def m(self) -> Trace:
        return self.trace("m")

    def net(self, name: str) -> Any:
        """The network `name` as this phase runs it; `g.a` is port `a` of network `g` (an edge's `net_ref`)."""
        net, _, port = name.partition(".")
        return Port(self.model.calls[net], port) if port else self.model.calls[net]


class Port:
    """One entry point of a network with several: called as the network with `port=` set; its
    other attributes (parameters, layers) are the network's."""

    __slots__ = ("module", "port")

    def __init__(self, module: Any, port: str) -> None:
        self.module, self.port = module, port

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, port=self.port, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)


class Energy:
    """The undirected factors of a model as one energy (`kinds.EnergyView`): each factor's
    network called, at its port, as the phase runs it."""

    def __init__(self, model: Model) -> None:
        program = model.program
        self.model = model
        self.factors = [program.edges[f].info for f in program.factors]
        joined = {v for e in self.factors for v in e.parents}
        self.variables = {v: node.shape for v, node in program.variables.items() if v in joined}
        self.observed = tuple(v for v in self.variables if program.variables[v].observed)
        self.device = model.device  # where a sampler builds chains that start from noise
        self.dtype = torch.get_default_dtype()

    def energy(self, values: dict[str, torch.Tensor], only: str | None = None) -> torch.Tensor:
        """(n,): the sum of the factors' energies at `values` (with `only`, of the factors that join it)."""
        total: torch.Tensor | None = None
        for e in self.factors:
            if only is not None and only not in e.parents:
                continue
            out = self.model.call(e)(*[values[v] for v in e.parents])
            out = out.reshape(len(out), -1).sum(1)
            total = out if total is None else total + out
        assert total is not None, "every variable of `variables` is joined by a factor"
        return total

    def field(self, var: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """-dE/d`var` at `values`, detached: for binary units of a multilinear energy, the logits of
        `var`'s units given the others."""
        with torch.enable_grad():
            x = values[var].detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.energy({**values, var: x}, only=var).sum(), x)
        return -grad.detach()


def _source(program: Program, side: str, source: str, var: str) -> tuple[str, EdgeInfo | None]:
    """How `side`'s trace produces `var`, with the edge it follows (a trace-completed q value
    follows its generative edge)."""
    kind = "generative" if side == "p" or source == "generative" else "inference" if side == "q" else ""
    return source, _info(program.into(var, kind))


def _info(edge: Any) -> EdgeInfo | None:
    return None if edge is None else edge.info  # type: ignore[no-any-return]
