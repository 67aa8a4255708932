"""G021, measured: the network under an autoregressive density is causal in fact.

The core checks that the architecture declares `causal`; this rule builds the network on the
CPU in float64 and computes its Jacobian with respect to the child at one random input (and
random parents). Output element i (each of its n_params blocks) must have a zero derivative with
respect to every input element j >= i of the child, in the order of the child's flattened index;
the parents are free. Architectures that declare `causal` are measured (the core reports those
that do not), and the first dependency found is named. A zero derivative at one point can miss a path (a dead ReLU), so the
rule can pass a broken network but never fails a causal one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from unigen.api.contexts import EdgeInfo, GraphView, RegistryView
from unigen.api.kinds import Rule
from unigen.errors import Diagnostic

MAX_ROWS = 1024  # output elements whose gradients are computed; larger outputs are sampled evenly


class CausalRule(Rule):
    code = "G021"
    doc = "the network of an autoregressive density (`needs: causal`) is causal when built: output element i depends on no input element j >= i"

    def check(self, graph: GraphView, registry: RegistryView) -> Iterable[Diagnostic]:
        out: list[Diagnostic] = []
        for e in graph.of_kind("generative") + graph.of_kind("inference"):
            if not registry.has("distributions", e.dist or "") or getattr(registry.get("distributions", e.dist or ""), "needs", "") != "causal":
                continue
            problem = check_edge(graph, registry, e)
            if problem is not None:
                out.append(problem)
        return out


def check_edge(graph: GraphView, registry: RegistryView, e: EdgeInfo) -> Diagnostic | None:
    """The G021 diagnostic of one edge, or None (causal, or not buildable: the core reports that)."""
    spec_net = graph.spec.networks.get(e.net)
    if spec_net is None or e.child is None or not registry.has("networks", spec_net.arch):
        return None
    arch = registry.get("networks", spec_net.arch)
    if not getattr(arch, "causal", False):
        return None  # the core's G021 says the architecture does not declare it
    options, problems = registry.options("networks", spec_net.arch, spec_net.options, ("networks", e.net))
    if problems:
        return None
    child = tuple(graph.shape(e.child))
    n_params = getattr(registry.get("distributions", e.dist or ""), "n_params", 1)
    inputs = [child] + [tuple(graph.shape(p)) for p in e.parents]
    output = (child[0] * n_params,) + child[1:]
    if arch.check(inputs, output, options):
        return None  # G012, from the core
    try:
        found = first_violation(build(arch, inputs, output, options, e.port), inputs, e.port)
    except Exception:  # an architecture that cannot be built here is reported when it is built for training
        return None
    if found is None:
        return None
    i, j = found
    where = f"network `{e.net}` ({spec_net.arch}) under {e.dist} density `{e.name}`"
    what = "is not causal although its architecture declares it"
    return Diagnostic(
        "G021",
        f"{where} {what}: output element {i} depends on input element {j}, at or after it; expected each output to see only earlier elements (elements of `{e.child}` counted from 0 in the order of its flattened index).",
        e.path + ("net",),
        "mask the network so that output i sees inputs 0..i-1 only (MADE's masks, PixelCNN's mask A on the first layer then mask B), or use a causal architecture such as `made` or `pixelcnn`.",
    )


def build(arch: Any, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: Any, port: str | None) -> nn.Module:
    """The network in float64 on the CPU, in its own random stream (validation draws nothing
    from the training's), with every all-zero parameter made random so it hides no path."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with torch.device("cpu"):
            module = arch.build_ports({port: (inputs, output)}, options) if port else arch.build(inputs, output, options)
        module = module.double().eval()
        with torch.no_grad():
            for p in module.parameters():
                if p.is_floating_point() and not p.any():
                    p.normal_(0.0, 0.1)
    return module


def _grad(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d out / d x, zeros where out does not depend on x at all."""
    if not out.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(out, x, retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def first_violation(module: nn.Module, inputs: list[tuple[int, ...]], port: str | None = None) -> tuple[int, int] | None:
    """The first output element i (child's flattened order) whose value depends on an input
    element j >= i, and the first such j; None when every output sees only earlier elements."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, *inputs[0]), generator=gen, dtype=torch.float64)
    parents = [torch.rand((1, *s), generator=gen, dtype=torch.float64) for s in inputs[1:]]
    d = math.prod(inputs[0])
    kwargs = {"port": port} if port else {}

    def f(v: torch.Tensor) -> torch.Tensor:
        return module(v.view(1, *inputs[0]), *parents, **kwargs).reshape(-1)

    flat = x.reshape(-1).requires_grad_(True)
    with torch.enable_grad():
        y = f(flat)
        rows = torch.arange(y.numel()) if y.numel() <= MAX_ROWS else torch.linspace(0, y.numel() - 1, MAX_ROWS).round().long().unique()
        # One backward pass per output row: plain autograd, no functorch warm-up at every compile.
        jac = torch.stack([_grad(y[r], flat) for r in rows.tolist()])
    jac = jac.detach().abs()
    tol = 1e-10 * (1.0 + float(jac.max()))
    element = rows % d  # output o is a parameter of child element o mod D
    ahead = torch.arange(d)[None, :] >= element[:, None]  # j >= i
    bad = (jac > tol) & ahead
    if not bool(bad.any()):
        return None
    hits = bad.nonzero()
    order = torch.argsort(element[hits[:, 0]] * d + hits[:, 1])  # the smallest i, then the smallest j
    r, j = hits[order[0]].tolist()
    return int(element[r]), int(j)
