"""The compiler: a spec file (and overrides) in, the validated spec and its `Program` out.

`compile_file` runs the pipeline: load the spec (`unigen.spec.load`), build its graph
(`unigen.graph.model`), check it (`unigen.graph.rules`), bind the phases' terms
(`unigen.compiler.binding`), and resolve every kind and option into the program's nodes. Every
problem of the checks and the binding is reported at once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from unigen.api.registry import Registry, default_registry
from unigen.compiler.binding import BoundRef, bind_phases
from unigen.compiler.program import DataNode, EdgeNode, Kinds, MetricNode, NetworkNode, PhasePlan, Program, SamplerNode, VariableNode, call
from unigen.errors import UnigenError
from unigen.graph.model import ModelGraph, build_graph
from unigen.graph.rules import check_graph, edge_signature
from unigen.spec.load import load_spec
from unigen.spec.models import Spec, spec_to_dict
from unigen.spec.source import SourceMap


@dataclass
class Compiled:
    program: Program
    given: dict[str, Any]  # the spec file's document, as written
    resolved: dict[str, Any]  # the spec after family defaults and overrides (spec.resolved.yaml)
    path: Path


def compile_file(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None) -> Compiled:
    registry = registry or default_registry()
    spec, smap, given = load_spec(path, overrides, registry)
    program = compile_spec(spec, registry, smap)
    return Compiled(program, given, spec_to_dict(spec), Path(path))


def compile_spec(spec: Spec, registry: Registry, smap: SourceMap | None = None) -> Program:
    """The program of a validated spec; UnigenError with every problem the rules and the
    binding of terms find (located in the file when `smap` is given)."""
    graph = build_graph(spec, registry)
    diagnostics, bindable = check_graph(graph, registry)
    terms: dict[str, list[BoundRef]] = {}
    if bindable:  # terms bind only on names that resolve and edges that parse
        terms, unbound = bind_phases(graph, registry)
        diagnostics += unbound
    if diagnostics:
        raise smap.error(diagnostics) if smap else UnigenError(diagnostics)
    return build_program(graph, registry, terms)


def _options(registry: Registry, kind: str, name: str, options: dict[str, Any]) -> Any:
    value, problems = registry.options(kind, name, options, ())
    assert not problems, "validation checked every kind's options"
    return value


def build_program(graph: ModelGraph, registry: Registry, terms: dict[str, list[BoundRef]]) -> Program:
    """The resolved nodes of a checked graph with its bound terms."""
    spec = graph.spec
    data_options = _options(registry, "datasets", spec.data.source, spec.data.options)
    data_kind = registry.get("datasets", spec.data.source)
    data = DataNode(spec.data.source, data_kind, data_options, {k: tuple(v) for k, v in data_kind.fields(data_options).items()}, spec.train.batch_size)
    variables = {
        name: VariableNode(name, var.observed, tuple(var.shape), var.prior_name, registry.get("distributions", var.prior_name) if var.prior_name else None,
                           graph.data_field(name) if var.observed else None, var.mask, graph.p_source(name), graph.q_source(name), graph.m_source(name))
        for name, var in spec.variables.items()
    }
    edges = {e.name: _edge_node(graph, registry, e) for e in graph.edges}
    networks = _network_nodes(graph, registry, edges)
    trainable = [n for n, net in networks.items() if net.trainable]
    p_needs_data = any(v.p_source == "data" for v in variables.values())
    phases = tuple(_phase_plan(phase, tuple(terms[phase.name]), spec, registry, trainable, p_needs_data) for phase in spec.phases)
    metrics = tuple(MetricNode(e.name, _configured(registry, e.name, e.obj, spec), e.plugin, getattr(e.obj, "during_training", True), getattr(e.obj, "fallback", False)) for e in registry.all("metrics"))
    samplers = {trace: SamplerNode(trace, entry.kind, registry.get("samplers", entry.kind), _options(registry, "samplers", entry.kind, entry.options))
                for trace, entry in (spec.samplers or {}).items()}
    used = [("datasets", data.source, data.kind)] + [("networks", n.arch, n.kind) for n in networks.values()]
    used += [("objectives" if e.info.kind == "adversarial" else "distributions", e.info.objective or e.info.dist or "", e.kind) for e in edges.values()]
    used += [("distributions", v.prior, v.prior_kind) for v in variables.values() if v.prior]
    used += [("optimizers", p.optim, p.make_optimizer) for p in phases] + [("metrics", m.name, m.metric) for m in metrics]
    used += [("samplers", node.sampler, node.kind) for node in samplers.values()]
    return Program(
        kinds=Kinds({(kind, name): obj for kind, name, obj in used}),
        name=spec.name, family=spec.family, data=data, variables=variables, edges=edges, networks=networks, phases=phases,
        p_order=tuple(nx.lexicographical_topological_sort(graph.generative_dag())),
        q_order=tuple(nx.lexicographical_topological_sort(graph.inference_dag())),
        train=spec.train, metrics=metrics, metric_names=tuple(m.metric for m in spec.metric_refs()) if spec.metrics is not None else None, graph=graph,
        samplers=samplers, factors=tuple(e.name for e in graph.edges if e.kind == "undirected"),
    )


def _configured(registry: Registry, name: str, metric: Any, spec: Any) -> Any:
    """The registered metric, or a copy of it carrying the options the spec gives it (the
    registry's own object is shared, so it is never changed)."""
    ref = next((m for m in spec.metric_refs() if m.metric == name and m.options), None)
    if ref is None:
        return metric
    configured = copy.copy(metric)
    configured.options = _options(registry, "metrics", name, ref.options)
    return configured


def _edge_node(graph: ModelGraph, registry: Registry, e: Any) -> EdgeNode:
    if e.kind == "adversarial":
        objective = registry.get("objectives", e.objective or "")
        options = _options(registry, "objectives", e.objective or "", e.options)
        return EdgeNode(e, objective, options, call=call(e.objective or "", objective.shown_options(options)), note=objective.note(options))
    if e.kind == "undirected":
        return EdgeNode(e, None, None)
    assert e.child is not None
    return EdgeNode(e, registry.get("distributions", e.dist or ""), _options(registry, "distributions", e.dist or "", e.options), len(graph.shape(e.child)))


def _network_nodes(graph: ModelGraph, registry: Registry, edges: dict[str, EdgeNode]) -> dict[str, NetworkNode]:
    spec, out = graph.spec, {}
    for name, net in spec.networks.items():
        signatures: dict[str, tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]] = {}
        for e in graph.edges:  # every network computes an edge (G002); one shape per port (G012)
            if e.net == name and (e.port or "") not in signatures:
                inputs, output = edge_signature(graph, registry, e, edges[e.name].options if e.kind != "undirected" else None)
                signatures[e.port or ""] = (tuple(tuple(s) for s in inputs), tuple(output))
        options = _options(registry, "networks", net.arch, net.options)
        kind = registry.get("networks", net.arch)
        ports = {p: signatures[p] for p in kind.ports(options) if p in signatures} if "" not in signatures else {}
        inputs, output = signatures.get("", next(iter(signatures.values())))
        out[name] = NetworkNode(name, net.arch, kind, options, inputs, output, net.trainable, net.ema, ports)
    return out


def _phase_plan(phase: Any, terms: tuple[BoundRef, ...], spec: Spec, registry: Registry, trainable: list[str], p_needs_data: bool) -> PhasePlan:
    traces = frozenset().union(*(t.bound.traces for t in terms))
    optim = phase.optim or spec.train.optim
    return PhasePlan(
        name=phase.name,
        terms=terms,
        update=tuple(phase.update),
        frozen=tuple(n for n in trainable if n not in phase.update),
        optim=optim.kind,
        optim_options={"lr": optim.lr, **optim.options},
        repeats=phase.repeats,
        every=phase.every,
        traces=traces,
        needs_data="q" in traces or ("p" in traces and p_needs_data),
        make_optimizer=registry.get("optimizers", optim.kind),
    )
