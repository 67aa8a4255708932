"""The `Program`: what a spec compiles to, as resolved nodes that each print themselves.

Every node carries the registered kind it uses (a dataset, a distribution, an architecture,
an objective, an optimizer, a metric) with its checked options, so that training consumes the
program alone, never the spec or the registry. `str(program)` is the text `unigen compile`
prints and the golden tests compare.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from unigen.api.contexts import EdgeInfo
from unigen.compiler.binding import BoundRef
from unigen.graph.model import ModelGraph


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return json.dumps(value) if isinstance(value, str) and " " in value else str(value)


def set_options(options: Any) -> str:
    """`a=1, b=2`: the options that differ from the kind's defaults ("" for none)."""
    if options is None:
        return ""
    return _fmt(options.model_dump(exclude_defaults=True) if hasattr(options, "model_dump") else dict(options))


def call(name: str, options: Any) -> str:
    """`name(options set)`: only what the spec set differs from the kind's defaults."""
    shown = set_options(options)
    return f"{name}({shown})" if shown else name


@dataclass(frozen=True)
class DataNode:
    source: str
    kind: Any  # the registered `DatasetKind`
    options: Any
    fields: dict[str, tuple[int, ...]]  # field -> shape of one row, as the dataset declares them
    batch_size: int

    def __str__(self) -> str:
        return f"{call(self.source, self.options)}: " + ", ".join(f"{k} {list(v)}" for k, v in self.fields.items()) + f"; batch {self.batch_size}"


@dataclass(frozen=True)
class VariableNode:
    name: str
    observed: bool
    shape: tuple[int, ...]
    prior: str | None  # the prior's distribution name, for a latent root
    prior_kind: Any  # the registered `Dist` of the prior, or None
    field: str | None  # the data field of an observed variable
    mask: str | None  # the data field marking the rows that observe it
    p_source: str  # how the p-trace gets it: edge, prior, sampler, data or none
    q_source: str  # how the q-trace gets it: data, edge, sampler, generative or prior (trace completion) or none
    m_source: str = "none"  # how the sampler trace gets it: sampler or none

    def __str__(self) -> str:
        role = "observed" if self.observed else "latent"
        extra = f", prior {self.prior}" if self.prior else ""
        bind = f", data {self.field}" if self.observed else ""
        bind += f", observed where {self.mask}" if self.observed and self.mask else ""
        return f"{self.name:<10} {role} {list(self.shape)}{extra}{bind}"


@dataclass(frozen=True)
class EdgeNode:
    """An edge with its kind resolved: a distribution (generative and inference edges) or an
    adversarial objective (links), and the options checked against it."""

    info: EdgeInfo
    kind: Any
    options: Any
    event_dims: int = 0  # the child's event dimensions (distributions)
    call: str = ""  # links: how the objective prints itself
    note: str = ""  # links: what else the discriminator does (`Objective.note`)

    @property
    def name(self) -> str:
        return self.info.name

    def __str__(self) -> str:
        e = self.info
        if e.kind == "undirected":
            return f"{e.name}: energy {e.net_ref}({', '.join(e.parents)})"
        if e.kind != "adversarial":
            own = [e.child] if getattr(self.kind, "evaluates", False) else []
            shown = set_options(self.options)  # `x ~ normal(decoder(z); variance=fixed, scale=0.1)`
            return f"{e.child} ~ {e.dist}({e.net_ref}({', '.join([*own, *e.parents])}){'; ' + shown if shown else ''})"
        real = ", ".join(f"{t}.{v}" for t, v in e.real)
        fake = ", ".join(f"{t}.{v}" for t, v in e.fake)
        return f"{e.name}: {e.net_ref}({real}) real vs {e.net_ref}({fake}) fake, objective {self.call}" + (f"; {self.note}" if self.note else "")


@dataclass(frozen=True)
class NetworkNode:
    name: str
    arch: str
    kind: Any  # the registered `Arch`
    options: Any
    inputs: tuple[tuple[int, ...], ...]
    output: tuple[int, ...]
    trainable: bool = True
    ema: float | None = None
    # A network with several entry points: port -> (input shapes, output shape) of each port an
    # edge uses; empty for a network called one way (`inputs` -> `output`).
    ports: dict[str, tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]] = field(default_factory=dict)

    def build(self) -> nn.Module:
        if self.ports:
            return self.kind.build_ports({p: ([tuple(s) for s in i], tuple(o)) for p, (i, o) in self.ports.items()}, self.options)  # type: ignore[no-any-return]
        return self.kind.build([tuple(s) for s in self.inputs], tuple(self.output), self.options)  # type: ignore[no-any-return]

    def __str__(self) -> str:
        def sig(inputs: tuple[tuple[int, ...], ...], output: tuple[int, ...]) -> str:
            return ", ".join(str(list(s)) for s in inputs) + " -> " + str(list(output))

        shape = "; ".join(f"{p}: {sig(*s)}" for p, s in self.ports.items()) if self.ports else sig(self.inputs, self.output)
        frozen = ("" if self.trainable else "  (not trainable)") + (f"  (ema {self.ema:g})" if self.ema else "")
        return f"{self.name:<14} {call(self.arch, self.options)}: {shape}{frozen}"


@dataclass(frozen=True)
class SamplerNode:
    """What fills the variables of undirected factors in one trace: the sampler trace `m` or the q-trace."""

    trace: str
    sampler: str
    kind: Any  # the registered `Sampler`
    options: Any

    def __str__(self) -> str:
        return call(self.sampler, self.options)


@dataclass(frozen=True)
class MetricNode:
    name: str
    metric: Any  # the registered `Metric`
    plugin: str
    during_training: bool  # computed at the run's evaluations (else only by `unigen evaluate`)
    fallback: bool = False  # computed after the last step when the spec names no metrics and no quick one applies


@dataclass(frozen=True)
class PhasePlan:
    name: str
    terms: tuple[BoundRef, ...]
    update: tuple[str, ...]
    frozen: tuple[str, ...]
    optim: str
    optim_options: dict[str, Any]
    repeats: int
    every: int
    traces: frozenset[str]
    needs_data: bool
    make_optimizer: Callable[..., Any] | None = None  # the registered optimizer: (params, **options)

    def __str__(self) -> str:
        sched = f"x{self.repeats} per step" + (f", every {self.every} steps" if self.every > 1 else "")
        lines = [f"phase {self.name}  ({sched})"]
        for i, t in enumerate(self.terms):
            lead = "loss   =" if i == 0 else "       +"
            lines.append(f"  {lead} {_fmt(t.weight)} * {t.label:<22} {t.bound.formula}")
        lines.append("  traces   " + (", ".join(sorted(self.traces)) or "-") + ("" if self.needs_data else "  (no data batch)"))
        lines.append("  update   " + ", ".join(self.update) + f"  with {call(self.optim, self.optim_options)}")
        lines.append("  frozen   " + (", ".join(self.frozen) or "-"))
        return "\n".join(lines)


@dataclass(frozen=True)
class Kinds:
    """The registered kinds a program uses, by kind and name (`kinds.get("distributions",
    "normal")`): what a metric looks up where a term's `bind` had `site.registry`."""

    entries: dict[tuple[str, str], Any]

    def has(self, kind: str, name: str) -> bool:
        return (kind, name) in self.entries

    def get(self, kind: str, name: str, path: tuple[str | int, ...] = ()) -> Any:
        return self.entries[(kind, name)]


@dataclass(frozen=True)
class Program:
    name: str
    family: str | None
    data: DataNode
    variables: dict[str, VariableNode]
    edges: dict[str, EdgeNode]  # by edge name, in the spec's order
    networks: dict[str, NetworkNode]
    phases: tuple[PhasePlan, ...]
    p_order: tuple[str, ...]  # the variables in the order the p-trace computes them
    q_order: tuple[str, ...]
    train: Any  # the training settings (`unigen.spec.models.Train`: steps, batch size, seed, ...)
    metrics: tuple[MetricNode, ...]  # every registered metric, in name order
    metric_names: tuple[str, ...] | None  # the spec's `metrics` (each computed, applicable or not); None: all that apply
    kinds: Kinds
    # The checked model graph that terms were bound on: what plugins' metrics read as a
    # `GraphView` (`model.program.graph`). Training itself reads the nodes above.
    graph: ModelGraph = field(repr=False)
    samplers: dict[str, SamplerNode] = field(default_factory=dict)  # trace (m, q) -> what fills its undirected variables
    factors: tuple[str, ...] = ()  # the undirected factors' edge names

    def into(self, var: str, kind: str) -> EdgeNode | None:
        """The generative or inference edge into `var`, resolved."""
        return next((e for e in self.edges.values() if e.info.kind == kind and e.info.child == var), None)

    def links(self) -> list[EdgeNode]:
        return [e for e in self.edges.values() if e.info.kind == "adversarial"]

    def sampled_variable(self) -> str | None:
        """The observed variable samples show: the first one the p-trace generates."""
        return next((v.name for v in self.variables.values() if v.observed and v.p_source in ("edge", "sampler")), None)

    def trace_line(self, side: str) -> str:
        parts, tail = [], ""
        order = {"p": self.p_order, "q": self.q_order}.get(side, tuple(self.variables))
        sampled = [v for v, node in self.variables.items() if getattr(node, f"{side}_source") == "sampler"]
        if sampled:
            factors = " + ".join(f"{self.edges[f].info.net_ref}({', '.join(self.edges[f].info.parents)})" for f in self.factors)
            what = {"p": " (a long run of the chain)", "m": " (the chain)", "q": ""}[side]
            tail = f"{', '.join(sampled)} ~ {self.samplers['m' if side == 'p' else side]}[energy {factors}]{what}"
        for v in order:
            node = self.variables[v]
            source = getattr(node, f"{side}_source")
            if source == "prior":
                parts.append(f"{v} ~ {node.prior}")
            elif source == "data":
                parts.append(f"{v} ~ data")
            elif source in ("edge", "generative"):
                edge = self.into(v, "generative" if side == "p" or source == "generative" else "inference")
                assert edge is not None
                parts.append(str(edge))
        parts += [tail] if tail else []
        return "; ".join(parts) or "-"

    def __str__(self) -> str:
        lines = [f"program {self.name}" + (f"  (family {self.family})" if self.family else ""), f"  data      {self.data}", "  variables"]
        lines += [f"    {v}" for v in self.variables.values()]
        lines += ["  p-trace   " + self.trace_line("p"), "  q-trace   " + self.trace_line("q")]
        if "m" in self.samplers:
            lines += ["  m-trace   " + self.trace_line("m")]
        lines += [f"  link      {e}" for e in self.links()]
        lines += ["  networks"] + [f"    {n}" for n in self.networks.values()]
        for phase in self.phases:
            lines += ["", str(phase)]
        return "\n".join(lines) + "\n"
