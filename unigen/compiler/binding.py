"""Binding terms: each term a phase names is attached to its edge, its options are checked,
and its plugin's `bind` returns the loss, what it reads and what its gradient reaches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unigen.api.kinds import Bound, Site, TermError
from unigen.api.registry import Registry, validate_options
from unigen.errors import Diagnostic, Path
from unigen.graph.model import EdgeInfo, ModelGraph


@dataclass(frozen=True)
class BoundRef:
    """A phase's term after binding: what the compiler puts into the program."""

    term: str
    edge: EdgeInfo | None
    weight: float
    bound: Bound
    path: Path

    @property
    def label(self) -> str:
        return self.term + (f"@{self.edge.name}" if self.edge else "")


def bind_phases(graph: ModelGraph, registry: Registry) -> tuple[dict[str, list[BoundRef]], list[Diagnostic]]:
    """The bound terms of every phase (phase name -> terms), and what kept terms from binding
    (G014, G015, G016) or from reaching a network their phase updates (G010)."""
    spec = graph.spec
    terms: dict[str, list[BoundRef]] = {}
    d: list[Diagnostic] = []
    for i, phase in enumerate(spec.phases):
        path: Path = ("phases", i)
        bound = [b for j, ref in enumerate(phase.term_refs()) if (b := _bind(graph, registry, ref, path + ("terms", j), d)) is not None]
        terms[phase.name] = bound
        if bound and len(bound) == len(phase.terms):  # no terms at all is G009 already
            d.extend(_unreached(graph, phase, path, bound))
    return terms, d


def _unreached(graph: ModelGraph, phase: Any, path: Path, bound: list[BoundRef]) -> list[Diagnostic]:
    """G010: networks the phase updates that the gradient of its terms cannot reach."""
    spec, out = graph.spec, []
    reach = set().union(*(b.bound.reaches for b in bound))
    for n in phase.update:
        if n in spec.networks and spec.networks[n].trainable and n not in reach:
            sampled = [e for e in graph.edges if e.net == n and e.name in graph.no_gradient]
            why = "".join(f"; its edge `{e.name}` samples `{e.dist}`, which passes no gradient back to it" for e in sampled)
            out.append(Diagnostic("G010", f"phase `{phase.name}` updates `{n}`, but the gradient of its terms ({', '.join(b.label for b in bound)}) cannot reach it (they reach: {', '.join(sorted(reach)) or 'nothing'}){why}.", path + ("update",), f"add a term whose value depends on `{n}`, or drop `{n}` from `update`" + (", or give its edge a reparameterised `dist` (`deterministic`, `normal`)." if sampled else ".")))
    return out


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _bind(graph: ModelGraph, registry: Registry, ref: Any, path: Path, d: list[Diagnostic]) -> BoundRef | None:
    if not registry.has("terms", ref.term):
        return None
    term = registry.get("terms", ref.term)
    edge = None
    if term.target is not None:
        if ref.on is not None:
            edge = graph.edge(ref.on)
            if edge is None:
                return None
            if edge.kind != term.target:
                d.append(Diagnostic("G015", f"term `{ref.term}` attaches to {_a(term.target)} edge, but `{ref.on}` is {edge.kind}.", path, f"name {_a(term.target)} edge: " + (", ".join(f"`{e.name}`" for e in graph.of_kind(term.target)) or "the graph has none") + "."))
                return None
        else:
            candidates = graph.of_kind(term.target)
            if len(candidates) != 1:
                what = "none" if not candidates else ", ".join(f"`{e.name}`" for e in candidates)
                d.append(Diagnostic("G015", f"term `{ref.term}` attaches to {_a(term.target)} edge, and the graph has {what}; expected exactly one, or `@<edge>`.", path, f"write `{ref.term}@<edge>` to choose one." if candidates else f"add {_a(term.target)} edge."))
                return None
            edge = candidates[0]
    elif ref.on is not None:
        d.append(Diagnostic("G015", f"term `{ref.term}` applies to the whole model and takes no `@{ref.on}`.", path, f"write `{ref.term}`."))
        return None
    model = getattr(term, "Options", None)
    if model is not None:
        options, diags = validate_options(model, ref.options, path + ("options",), f"term `{ref.term}`")
        if diags:
            d.extend(diags)
            return None
    elif ref.options:
        d.append(Diagnostic("G016", f"term `{ref.term}` takes no options.", path + ("options",), "remove them."))
        return None
    else:
        options = None
    try:
        bound = term.bind(Site(graph, edge, options, registry))
    except TermError as exc:
        d.append(Diagnostic("G014", f"term `{ref.term}`{' on `' + edge.name + '`' if edge else ''}: {exc.message}", path, exc.hint))
        return None
    return BoundRef(ref.term, edge, ref.weight, bound, path)
