"""Validation rules of the GAN plugin.

- `identify` (G017): a link whose objective has `options: {identify: c}` (MAD-GAN) needs c to
  be a latent drawn from a discrete prior whose values can be listed (one-hot, a vector of k
  values), and every fake item to be generated from it, so that each fake sample has one value
  of c for the discriminator to tell.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from unigen.api.contexts import EdgeInfo, GraphView, RegistryView
from unigen.api.kinds import Rule
from unigen.errors import Diagnostic, did_you_mean

from .objectives import identified


class IdentifyRule(Rule):
    code = "G017"
    doc = "`options: {identify: c}` on an adversarial link names a categorical root latent that generates every fake item"

    def check(self, graph: GraphView, registry: RegistryView) -> Iterable[Diagnostic]:
        out: list[Diagnostic] = []
        for e in graph.of_kind("adversarial"):
            if not registry.has("objectives", e.objective or ""):
                continue
            options, problems = registry.options("objectives", e.objective or "", e.options, e.path + ("options",))
            c = identified(options) if not problems else None
            if c is not None:
                out.extend(_identify(graph, registry, e, c))
        return out


def _identify(graph: GraphView, registry: RegistryView, e: EdgeInfo, c: str) -> list[Diagnostic]:
    path = e.path + ("options", "identify")
    if c not in graph.variables:
        return [Diagnostic("G001", f"unknown variable `{c}`.", path, did_you_mean(c, list(graph.variables)))]
    var = graph.variables[c]
    listed = var.prior_name is not None and registry.has("distributions", var.prior_name) and getattr(registry.get("distributions", var.prior_name), "enumerable", False)
    if var.observed or not listed or len(var.shape) != 1:
        return [Diagnostic("G017", f"adversarial link `{e.name}` identifies `{c}`, which is not a latent with a discrete prior of listed values (such as `categorical`) and a shape [k]; the discriminator tells which of its k values produced each fake sample.", path, f"declare `{c}: {{prior: categorical, shape: [k]}}` (k generators), or remove `identify`.")]
    if graph.into(c, "generative") is not None:
        return [Diagnostic("G017", f"adversarial link `{e.name}` identifies `{c}`, which a generative edge produces; expected a root drawn from its categorical prior.", path, f"remove the generative edge into `{c}`, or identify a root latent.")]
    gen = _generative_dag(graph)
    missing = [f"{t}.{v}" for t, v in e.fake if t != "p" or not nx.has_path(gen, c, v)]
    if missing:
        return [Diagnostic("G017", f"adversarial link `{e.name}` identifies `{c}`, but its fake side {', '.join(missing)} is not generated from `{c}` in the p-trace, so a fake sample has no value of `{c}` to tell.", path, f"make `{c}` a parent of the generator's edge (e.g. `generative: \"{c}, z -> x\"`), or remove `identify`.")]
    return []


def _generative_dag(graph: GraphView) -> nx.DiGraph:
    dag = nx.DiGraph()
    dag.add_nodes_from(graph.variables)
    dag.add_edges_from((p, e.child) for e in graph.of_kind("generative") if e.child is not None for p in e.parents)
    return dag
