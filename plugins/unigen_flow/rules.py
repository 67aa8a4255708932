"""Validation rule of the flow plugin.

- `invertible` (G021): an edge whose distribution needs an invertible network (`flow`) is
  computed by a module that keeps the variable's shape, gives `x` back from
  `inverse(forward(x)[0])` and a log-determinant that matches its Jacobian's. (That the
  architecture declares `invertible` at all is the core's G021.) The module is built on the CPU
  in float64, its parameters moved off their initial values (a coupling starts as the identity,
  which would hide a wrong inverse), and tried on random rows; the global random streams are left
  as they were.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from unigen.api.contexts import EdgeInfo, GraphView, RegistryView
from unigen.api.kinds import Rule
from unigen.errors import Diagnostic

TOLERANCE = 1e-6
JACOBIAN_MAX_DIM = 64  # above this many coordinates the log-determinant is not checked (cost D^3)
ROWS = 3


class InvertibleRule(Rule):
    code = "G021"
    doc = "the invertible network of a density that needs one (`flow`) keeps the variable's shape, inverts, and gives its Jacobian's log-determinant"

    def check(self, graph: GraphView, registry: RegistryView) -> Iterable[Diagnostic]:
        out: list[Diagnostic] = []
        for e in graph.of_kind("generative") + graph.of_kind("inference"):
            if e.child is None or e.port is not None or not registry.has("distributions", e.dist or ""):
                continue
            dist = registry.get("distributions", e.dist or "")
            if getattr(dist, "needs", "") != "invertible":
                continue
            problem = _problem(graph, registry, e, dist)
            if problem:
                out.append(Diagnostic("G021", f"edge `{e.name}` evaluates `{e.child}` with distribution `{e.dist}`, which needs an invertible network, but network `{e.net}` {problem[0]}", e.path + ("net",), problem[1]))
        return out


def _problem(graph: GraphView, registry: RegistryView, e: EdgeInfo, dist: Any) -> tuple[str, str] | None:
    """(what is wrong with the edge's network, hint), or None when it fits."""
    net = graph.spec.networks.get(e.net)
    if net is None or not registry.has("networks", net.arch):
        return None  # unknown names are the core's G001
    arch = registry.get("networks", net.arch)
    if not getattr(arch, "invertible", False):
        return None  # an architecture that does not declare `invertible` is the core's G021
    options, problems = registry.options("networks", net.arch, net.options, ("networks", e.net))
    if problems:
        return None  # bad options are the core's G016
    assert e.child is not None
    child = tuple(graph.shape(e.child))
    inputs = [child] + [tuple(graph.shape(p)) for p in e.parents]
    output = (child[0] * dist.n_params,) + child[1:]
    if output != child:
        return (f"would map `{e.child}` {list(child)} to {list(output)}: a flow whose shapes do not invert.", f"a flow maps a variable onto itself: its output is the variable's shape {list(child)}; use a distribution with one parameter per element (such as `flow`).")
    if arch.check(inputs, output, options):
        return None  # shapes the architecture refuses are the core's G012
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return _numeric(arch, inputs, output, options, net.arch)
    except Exception as exc:  # a module that fails on a random input is reported, not raised
        return (f"(`{net.arch}`) fails on a random input of shape {list(child)}: {type(exc).__name__}: {exc}.", "fix the architecture, or the shapes of the edge's variables.")


def _numeric(arch: Any, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: Any, name: str) -> tuple[str, str] | None:
    """Build the module in float64, move its parameters by about a tenth of their layer's scale
    (so that a coupling is no longer the identity, yet the map stays well conditioned), and
    check its shapes, inverse and log-determinant on random rows."""
    module = arch.build(inputs, output, options).double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p) / math.sqrt(math.prod(p.shape[1:])))  # about a tenth of a layer's own scale
    x = torch.randn(ROWS, *inputs[0], dtype=torch.float64)
    parents = [torch.randn(ROWS, *s, dtype=torch.float64) for s in inputs[1:]]
    with torch.no_grad():
        result = module(x, *parents)
        if not (isinstance(result, tuple) and len(result) == 2):
            return (f"(`{name}`) does not return (u, log|det du/dx|) from `module(x, *parents)`.", "an invertible architecture returns the noise and one log-determinant per row.")
        u, logdet = result
        if tuple(u.shape) != tuple(x.shape) or tuple(logdet.shape) != (ROWS,):
            return (f"(`{name}`) maps rows of shape {list(x.shape[1:])} to u of shape {list(u.shape[1:])} and a log-determinant of shape {list(logdet.shape)}: a flow whose shapes do not invert.", f"u must have the variable's shape {list(x.shape[1:])} and the log-determinant one value per row.")
        back = module.inverse(u, *parents)
        err = float((back - x).abs().max()) if back.shape == x.shape else math.inf
    if not err <= TOLERANCE:
        return (f"(`{name}`) does not invert: inverse(forward(x)) differs from x by {err:.3g} (more than {TOLERANCE:g}).", "check the architecture's `inverse` against its forward map.")
    d = math.prod(inputs[0])
    if d > JACOBIAN_MAX_DIM:
        return None
    for i in range(ROWS):
        row = [p[i : i + 1] for p in parents]
        jac = torch.autograd.functional.jacobian(lambda v, row=row: module(v.view(1, *inputs[0]), *row)[0].flatten(), x[i].flatten())
        exact = float(torch.linalg.slogdet(jac)[1])
        got = float(logdet[i])
        if not abs(got - exact) <= TOLERANCE * (1 + abs(exact)):
            return (f"(`{name}`) gives log|det du/dx| = {got:.6g} where the Jacobian's is {exact:.6g}.", "check the architecture's log-determinant: it is the sum of the log-scales of the coordinates it moves.")
    return None
