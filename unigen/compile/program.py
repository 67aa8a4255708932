"""The compiler: a validated graph becomes a `Program`, a printable plan of phases."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from unigen.api.registry import Registry
from unigen.errors import Diagnostic, Path, UnigenError
from unigen.graph.model import ModelGraph, build_graph
from unigen.graph.rules import BoundRef, validate_graph
from unigen.spec.models import Spec
from unigen.spec.source import SourceMap


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


@dataclass(frozen=True)
class Program:
    spec: Spec
    graph: ModelGraph
    options: dict[Path, Any]  # validated options of registered kinds, by spec path
    phases: tuple[PhasePlan, ...]
    p_order: tuple[str, ...]
    q_order: tuple[str, ...]
    # What each adversarial link's objective says of itself (link name -> text): its call as
    # the program prints it (`name(options set)`), and a note on what else its discriminator
    # does (`Objective.note`; "" for nothing), which `unigen draw` shows too.
    calls: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def option(self, *path: str | int) -> Any:
        return self.options.get(tuple(path))

    def __str__(self) -> str:
        return format_program(self)


def compile_program(spec: Spec, registry: Registry, smap: SourceMap | None = None) -> Program:
    graph = build_graph(spec, registry)
    checked = validate_graph(graph, registry)
    if checked.diagnostics:
        diags = checked.diagnostics
        raise smap.error(diags) if smap else UnigenError(diags)
    nets = list(spec.networks)
    trainable = [n for n in nets if spec.networks[n].trainable]
    phases = []
    for phase in spec.phases:
        terms = tuple(checked.terms[phase.name])
        traces = frozenset().union(*(t.bound.traces for t in terms))
        p_needs_data = any(graph.p_source(v) == "data" for v in spec.variables)
        optim = phase.optim or spec.train.optim
        phases.append(PhasePlan(
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
        ))
    p_order = tuple(nx.lexicographical_topological_sort(graph.generative_dag()))
    q_order = tuple(nx.lexicographical_topological_sort(graph.inference_dag()))
    calls, notes = {}, {}
    for e in graph.of_kind("adversarial"):
        objective, options = registry.get("objectives", e.objective or ""), checked.options.get(e.path + ("objective",))
        calls[e.name] = _call(e.objective or "", objective.shown_options(options))
        notes[e.name] = objective.note(options)
    return Program(spec, graph, checked.options, tuple(phases), p_order, q_order, calls, notes)


def check_spec(spec: Spec, registry: Registry) -> list[Diagnostic]:
    graph = build_graph(spec, registry)
    return validate_graph(graph, registry).diagnostics


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return json.dumps(value) if isinstance(value, str) and " " in value else str(value)


def _call(name: str, options: Any) -> str:
    if options is None:
        return name
    # Only what the spec set differs from the kind's defaults; the defaults are in the docs.
    data = options.model_dump(exclude_defaults=True) if hasattr(options, "model_dump") else dict(options)
    return f"{name}({_fmt(data)})" if data else name


def format_program(program: Program) -> str:
    spec, graph = program.spec, program.graph
    lines = [f"program {spec.name}" + (f"  (family {spec.family})" if spec.family else "")]
    fields = program.option("data", "fields") or {}
    lines.append(f"  data      {_call(spec.data.source, program.option('data', 'source'))}: " + ", ".join(f"{k} {list(v)}" for k, v in fields.items()) + f"; batch {spec.train.batch_size}")
    lines.append("  variables")
    for name, var in spec.variables.items():
        role = "observed" if var.observed else "latent"
        extra = f", prior {var.prior}" if var.prior else ""
        bind = f", data {graph.data_field(name)}" if var.observed else ""
        bind += f", observed where {var.mask}" if var.observed and var.mask else ""
        lines.append(f"    {name:<10} {role} {list(var.shape)}{extra}{bind}")
    lines.append("  p-trace   " + _trace_line(program, "p"))
    lines.append("  q-trace   " + _trace_line(program, "q"))
    links = graph.of_kind("adversarial")
    for e in links:
        real = ", ".join(f"{t}.{v}" for t, v in e.real)
        fake = ", ".join(f"{t}.{v}" for t, v in e.fake)
        call = program.calls.get(e.name) or _call(e.objective or "", program.options.get(e.path + ("objective",)))
        note = program.notes.get(e.name, "")
        lines.append(f"  link      {e.name}: {e.net}({real}) real vs {e.net}({fake}) fake, objective {call}" + (f"; {note}" if note else ""))
    lines.append("  networks")
    sigs = program.option("network", "signatures") or {}
    for name, net in spec.networks.items():
        sig = sigs.get(name)
        shape = (", ".join(str(list(s)) for s in sig[0]) + " -> " + str(list(sig[1]))) if sig else "unused"
        frozen = ("" if net.trainable else "  (not trainable)") + (f"  (ema {net.ema:g})" if net.ema else "")
        lines.append(f"    {name:<14} {_call(net.arch, program.option('networks', name, 'arch'))}: {shape}{frozen}")
    for phase in program.phases:
        sched = f"x{phase.repeats} per step" + (f", every {phase.every} steps" if phase.every > 1 else "")
        lines.append("")
        lines.append(f"phase {phase.name}  ({sched})")
        for i, t in enumerate(phase.terms):
            lead = "loss   =" if i == 0 else "       +"
            lines.append(f"  {lead} {_fmt(t.weight)} * {t.label:<22} {t.bound.formula}")
        lines.append("  traces   " + (", ".join(sorted(phase.traces)) or "-") + ("" if phase.needs_data else "  (no data batch)"))
        lines.append("  update   " + ", ".join(phase.update) + f"  with {_call(phase.optim, phase.optim_options)}")
        lines.append("  frozen   " + (", ".join(phase.frozen) or "-"))
    return "\n".join(lines) + "\n"


def _trace_line(program: Program, side: str) -> str:
    graph = program.graph
    order = program.p_order if side == "p" else program.q_order
    parts = []
    for v in order:
        source = graph.p_source(v) if side == "p" else graph.q_source(v)
        if source == "none":
            continue
        if source == "prior":
            parts.append(f"{v} ~ {graph.variables[v].prior}")
        elif source == "data":
            parts.append(f"{v} ~ data")
        else:
            e = graph.into(v, "generative" if side == "p" else "inference")
            assert e is not None
            parts.append(f"{v} ~ {e.dist}({e.net}({', '.join(e.parents)}))")
    return "; ".join(parts) or "-"
