"""What a plugin's code receives, as protocols: the contract between the core and plugins.

A term's `bind(site)` sees the model graph (`site.graph`, a `GraphView`) and its edge (an
`EdgeInfo`); its loss, called at every step of its phase, sees a `StepContext` (`ctx.p` and
`ctx.q`: the two traces; `ctx.net(name)`: a network as this phase runs it). A metric's
`applies(model)` and `compute(model)` see a `ModelView`. A dataset returns a `kinds.Dataset`
whose `info` travels to metrics and sample pictures. The core implements these protocols
(`unigen.graph.model.ModelGraph`, `unigen.training.model.Model`, `Trace`, `StepContext`); plugins
should rely on what is written here only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from unigen.errors import Path


@dataclass(frozen=True)
class EdgeInfo:
    """One edge of the spec, parsed: what terms and the runtime work from."""

    name: str
    kind: str  # generative | inference | adversarial | undirected
    parents: tuple[str, ...]  # for adversarial: the judged variables; for undirected: the joined ones
    child: str | None  # None for adversarial and undirected
    net: str
    dist: str | None
    objective: str | None
    options: dict[str, Any]
    index: int  # position in spec.edges
    real: tuple[tuple[str, str], ...] = ()  # adversarial: (trace, variable) judged real
    fake: tuple[tuple[str, str], ...] = ()  # adversarial: (trace, variable) judged fake
    port: str | None = None  # the entry point of a network with several (`net: g.a`)
    at: Path = ()  # where the spec declares it, when not `edges[index]` (a learned prior: variables.x.prior)

    @property
    def path(self) -> Path:
        return self.at or ("edges", self.index)

    @property
    def net_ref(self) -> str:
        """The network as the spec names it: `g` or `g.a`."""
        return f"{self.net}.{self.port}" if self.port else self.net

    @property
    def variables(self) -> tuple[str, ...]:
        return self.parents + ((self.child,) if self.child else ())


class GraphView(Protocol):
    """The spec's model graph, as terms and rules see it."""

    spec: Any  # the validated spec (`unigen.spec.models.Spec`): its networks, train settings...
    edges: list[EdgeInfo]
    no_gradient: frozenset[str]  # edges whose samples pass no gradient back (not reparameterised)

    @property
    def variables(self) -> dict[str, Any]: ...  # name -> the spec's variable (observed, shape, prior, data, mask)

    def edge(self, name: str) -> EdgeInfo | None: ...
    def of_kind(self, kind: str) -> list[EdgeInfo]: ...
    def into(self, var: str, kind: str) -> EdgeInfo | None: ...  # the generative or inference edge into `var`
    def p_source(self, var: str) -> str: ...  # how the p-trace gets `var`: edge, prior, sampler, data or none
    def q_source(self, var: str) -> str: ...  # how the q-trace gets `var`: data, edge, sampler or none
    def m_source(self, var: str) -> str: ...  # how the sampler trace gets `var`: sampler or none
    def nets_behind(self, var: str, trace: str, gradient: bool = True) -> set[str]: ...
    def nets_of(self, e: EdgeInfo) -> set[str]: ...
    def shape(self, var: str) -> tuple[int, ...]: ...
    def data_field(self, var: str) -> str: ...


class TraceView(Protocol):
    """The values of one side (p, q or m) for one batch, computed on first use: `trace[var]` is
    `var`'s value (the p-trace samples roots from their priors and follows generative edges;
    the q-trace takes observed variables from the batch and follows inference edges; the
    sampler trace m holds the chain of the model's undirected factors)."""

    side: str  # "p", "q" or "m"
    n: int  # rows
    values: dict[str, torch.Tensor]  # what is computed so far (a term may set values first)

    def __getitem__(self, var: str) -> torch.Tensor: ...
    def cond(self, edge: EdgeInfo) -> torch.distributions.Distribution: ...  # the edge's conditional at this trace's parents
    def prior(self, var: str) -> torch.distributions.Distribution: ...


class ModelView(Protocol):
    """A built model on its device: what metrics, and terms through `ctx.model`, may read.

    `energy` is the undirected part of the model (`kinds.EnergyView`; None without undirected
    factors): the total energy of its factors, each network called as the phase runs it."""

    program: Any  # the compiled `Program`: .graph (a GraphView), .kinds (the kinds it uses, as .get/.has), .data, .train, .variables
    device: torch.device
    nets: nn.ModuleDict  # the plain networks (call them through `ctx.net` in a loss)
    dataset: Any  # `kinds.Dataset` on the device: train, test, info
    fields: dict[str, str]  # observed variable -> its data field
    reparam: dict[str, bool]  # edge name -> whether its samples carry gradients
    energy: Any  # `kinds.EnergyView` of the undirected factors, or None

    def trace(self, side: str, batch: dict[str, torch.Tensor] | None, n: int) -> TraceView: ...
    def context(self, batch: dict[str, torch.Tensor] | None, n: int) -> StepContext: ...  # a fresh step context over another batch
    def observed_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...
    def sampled_variable(self) -> str | None: ...
    def generate(self, n: int, var: str, batch: dict[str, torch.Tensor] | None = None, fixed: dict[str, torch.Tensor] | None = None) -> torch.Tensor: ...


class StepContext(Protocol):
    """What a term's loss sees in one execution of its phase."""

    model: ModelView
    batch: dict[str, torch.Tensor] | None  # the observed variables of this step's data batch (None: the phase draws none)
    n: int  # rows of this step (the batch's, or the batch size when there is no data)

    @property
    def p(self) -> TraceView: ...
    @property
    def q(self) -> TraceView: ...
    def trace(self, side: str) -> TraceView: ...
    def net(self, name: str) -> Any: ...  # the network as this phase runs it (compiled, wrapped for several processes); `g.a`: port a of g (`EdgeInfo.net_ref`)


class RegistryView(Protocol):
    """The installed kinds, as a term's `site.registry` and a rule see them."""

    def has(self, kind: str, name: str) -> bool: ...
    def get(self, kind: str, name: str, path: Path = ()) -> Any: ...
    def names(self, kind: str) -> list[str]: ...
    def options(self, kind: str, name: str, options: dict[str, Any], path: Path) -> tuple[Any, list[Any]]: ...
    def all(self, kind: str) -> Iterable[Any]: ...
