"""The spec as a typed `networkx.MultiDiGraph`: variables are nodes, edges are typed.

Edge keys: `generative` and `inference` edges run parent -> child variable; an adversarial
link is a node of its own (`kind="link"`, named `link:<edge name>`) with `adversarial` edges
from each judged variable; an undirected factor is a node too (`kind="factor"`, named
`factor:<edge name>`) with `undirected` edges from each variable it joins. A learned prior
(`prior: {dist, net}`) is a generative edge without parents, declared at the variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import networkx as nx

from unigen.api.contexts import EdgeInfo
from unigen.errors import Diagnostic
from unigen.spec.models import NAME, Edge, Prior, Spec, Variable

if TYPE_CHECKING:
    from unigen.api.registry import Registry


_ARROW = re.compile(r"^\s*\[?\s*([^\]>-]*?)\s*\]?\s*->\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")


@dataclass
class ModelGraph:
    spec: Spec
    g: nx.MultiDiGraph
    edges: list[EdgeInfo]
    parse_errors: list[Diagnostic] = field(default_factory=list)
    # Edges whose samples carry no gradient to their network (a distribution with `reparam`
    # false: bernoulli, categorical); known when the graph is built with a registry.
    no_gradient: frozenset[str] = frozenset()

    # ---------------------------------------------------------------- lookups
    @property
    def variables(self) -> dict[str, Variable]:
        return self.spec.variables

    def edge(self, name: str) -> EdgeInfo | None:
        return next((e for e in self.edges if e.name == name), None)

    def of_kind(self, kind: str) -> list[EdgeInfo]:
        return [e for e in self.edges if e.kind == kind]

    def into(self, var: str, kind: str) -> EdgeInfo | None:
        return next((e for e in self.edges if e.kind == kind and e.child == var), None)

    def undirected_variables(self) -> list[str]:
        """The variables some undirected factor joins, in the spec's order."""
        joined = {v for e in self.edges if e.kind == "undirected" for v in e.parents}
        return [v for v in self.variables if v in joined]

    def sampler(self, trace: str) -> str | None:
        """The sampler kind that fills the variables of undirected factors in `trace` (m or q)."""
        entry = (self.spec.samplers or {}).get(trace)  # type: ignore[call-overload]
        return entry.kind if entry is not None else None

    def generative_dag(self) -> nx.DiGraph:
        dag = nx.DiGraph()
        dag.add_nodes_from(self.variables)
        dag.add_edges_from((u, v) for u, v, k in self.g.edges(keys=True) if k == "generative")
        return dag

    def inference_dag(self) -> nx.DiGraph:
        dag = nx.DiGraph()
        dag.add_nodes_from(self.variables)
        dag.add_edges_from((u, v) for u, v, k in self.g.edges(keys=True) if k == "inference")
        return dag

    def p_source(self, var: str) -> str:
        """How the p-trace gets `var`: `edge`, `prior`, `data` or `none`."""
        v = self.variables[var]
        if self.into(var, "generative"):
            return "edge"
        if v.prior_name:
            return "prior"
        if self.sampler("m") and var in self.undirected_variables():
            return "sampler"  # an undirected model's own draws: a long run of its chain
        return "data" if v.observed else "none"

    def q_source(self, var: str) -> str:
        """How the q-trace gets `var`: `data`, `edge`, `sampler`, `generative` or `prior` (a
        variable that opts into trace completion) or `none`."""
        v = self.variables[var]
        if v.observed:
            return "data"
        if self.into(var, "inference"):
            return "edge"
        if self.sampler("q") and var in self.undirected_variables():
            return "sampler"  # hidden units of undirected factors, inferred given the observed ones
        if v.complete:  # trace completion, opted into: noise from its prior, or its generative edge on q's values
            if self.into(var, "generative"):
                return "generative"
            if v.prior_name:
                return "prior"
        # A latent without an inference edge is absent from q(x, z): nothing infers it.
        return "none"

    def m_source(self, var: str) -> str:
        """How the sampler trace gets `var`: `sampler` (a variable of an undirected factor) or `none`."""
        return "sampler" if self.sampler("m") and var in self.undirected_variables() else "none"

    def nets_behind(self, var: str, trace: str, gradient: bool = True) -> set[str]:
        """Trainable networks a gradient can reach from `var`'s value in a trace (with
        `gradient=False`: every trainable network the value depends on, sampled or not)."""
        out: set[str] = set()
        stack, seen = [var], set()
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            source = {"p": self.p_source, "q": self.q_source, "m": self.m_source}[trace](cur)
            if source == "sampler":  # a sampler's values carry no gradient; they depend on the factors' networks
                if not gradient:
                    out |= {e.net for e in self.of_kind("undirected") if self._trainable(e.net)}
                continue
            if source not in ("edge", "generative"):
                continue
            e = self.into(cur, "generative" if trace == "p" or source == "generative" else "inference")
            assert e is not None
            if gradient and e.name in self.no_gradient:
                continue  # a sample that is not reparameterised: no gradient flows back through it
            if self._trainable(e.net):
                out.add(e.net)
            stack.extend(e.parents)
        return out

    def _trainable(self, name: str) -> bool:
        net = self.spec.networks.get(name)
        return net is not None and net.trainable

    def nets_of(self, e: EdgeInfo) -> set[str]:
        return {e.net} if self._trainable(e.net) else set()

    def shape(self, var: str) -> tuple[int, ...]:
        return tuple(self.variables[var].shape)

    def data_field(self, var: str) -> str:
        return self.variables[var].data or var


def parse_arrow(text: str) -> tuple[tuple[str, ...], str] | None:
    m = _ARROW.match(text)
    if not m:
        return None
    parents = tuple(p.strip() for p in m.group(1).split(",") if p.strip())
    if not parents or not all(re.match(NAME, p) for p in parents):
        return None
    return parents, m.group(2)


def default_edge_name(kind: str, parents: tuple[str, ...], child: str | None) -> str:
    if kind == "generative":
        return f"p_{child}"
    if kind == "inference":
        return f"q_{child}"
    if kind == "undirected":
        return "f_" + "_".join(parents)
    return "adv_" + "_".join(parents)


def build_graph(spec: Spec, registry: "Registry | None" = None) -> ModelGraph:
    """The typed graph of a spec. With a registry, edges whose distribution samples without
    reparameterisation are known, so `nets_behind` stops at them."""
    g = nx.MultiDiGraph(name=spec.name)
    for name, var in spec.variables.items():
        g.add_node(name, kind="variable", observed=var.observed, shape=tuple(var.shape), prior=var.prior)
    edges: list[EdgeInfo] = []
    errors: list[Diagnostic] = []
    for i, e in enumerate(spec.edges):
        info = _parse_edge(e, i, errors)
        if info is not None:
            edges.append(info)
    edges += _learned_priors(spec, errors)
    for info in edges:
        if info.kind == "undirected":
            factor = f"factor:{info.name}"
            g.add_node(factor, kind="factor", net=info.net, edge=info.name)
            for v in info.parents:
                g.add_edge(v, factor, key="undirected", net=info.net, edge=info.name)
        elif info.kind == "adversarial":
            # `link:` keeps the node apart from a variable of the same name (`name: x` on a link).
            link = f"link:{info.name}"
            g.add_node(link, kind="link", net=info.net, objective=info.objective, edge=info.name)
            for side, refs in (("real", info.real), ("fake", info.fake)):
                for trace, v in refs:
                    g.add_edge(v, link, key="adversarial", net=info.net, edge=info.name, side=side, trace=trace)
        else:
            for p in info.parents:
                g.add_edge(p, info.child, key=info.kind, net=info.net, dist=info.dist, edge=info.name)
    blocked = frozenset(
        e.name for e in edges
        if registry is not None and e.kind in ("generative", "inference") and registry.has("distributions", e.dist or "")
        and not getattr(registry.get("distributions", e.dist or ""), "reparam", True)
    )
    return ModelGraph(spec, g, edges, errors, blocked)


def _learned_priors(spec: Spec, errors: list[Diagnostic]) -> list[EdgeInfo]:
    """`prior: {dist, net}` of each variable, as the generative edge without parents it is."""
    out = []
    for v, var in spec.variables.items():
        if isinstance(var.prior, Prior):
            at = ("variables", v, "prior")
            net, port = _net_ref(var.prior.net, at + ("net",), errors)
            out.append(EdgeInfo(name=f"p_{v}", kind="generative", parents=(), child=v, net=net, dist=var.prior.dist, objective=None,
                                options=dict(var.prior.options), index=-1, port=port, at=at))
    return out


def _net_ref(text: str, path: tuple[str | int, ...], errors: list[Diagnostic]) -> tuple[str, str | None]:
    """`g` or `g.a` (port `a` of network `g`)."""
    net, dot, port = text.strip().partition(".")
    if dot and not (re.match(NAME, net) and re.match(NAME, port)):
        errors.append(Diagnostic("S002", f"network `{text}` is neither a network's name nor `network.port`.", path, "write e.g. `net: generator` or, for a port of a network with several, `net: generator.a`."))
    return net, (port if dot else None)


def _parse_edge(e: Edge, i: int, errors: list[Diagnostic]) -> EdgeInfo | None:
    kind = e.kind
    net, port = _net_ref(e.net, ("edges", i, "net"), errors)
    if kind == "undirected":
        raw = e.undirected
        items = [raw] if isinstance(raw, str) else list(raw or [])
        names = tuple(s.strip() for item in items for s in str(item).strip("()[] ").split(",") if s.strip())
        if len(names) < 2 or len(set(names)) != len(names) or not all(re.match(NAME, n) for n in names):
            errors.append(Diagnostic("S002", f"undirected factor `{raw}` must join two or more distinct variables.", ("edges", i, "undirected"), "write e.g. `undirected: [v, h]`."))
            return None
        return EdgeInfo(name=e.name or default_edge_name(kind, names, None), kind=kind, parents=names, child=None, net=net, dist=None, objective=None,
                        options=dict(e.options), index=i, port=port)
    if kind == "adversarial":
        raw = e.adversarial
        items = [raw] if isinstance(raw, str) else list(raw or [])
        names = tuple(s.strip() for item in items for s in str(item).strip("()[] ").split(",") if s.strip())
        if not names or not all(re.match(NAME, n) for n in names):
            errors.append(Diagnostic("S002", f"adversarial link `{raw}` must name a variable or a list of variables.", ("edges", i, "adversarial"), "write `adversarial: x` or `adversarial: [x, z]`."))
            return None
        parents, child = names, None
        sides = []
        bad = False  # every bad item is reported, not just the first
        for side, given, default in (("real", e.real, "q"), ("fake", e.fake, "p")):
            refs = [f"{default}.{n}" for n in names] if given is None else given
            parsed_side = []
            for j, ref in enumerate(refs):
                trace, _, var = ref.strip().partition(".")
                if trace not in ("p", "q") or not re.match(NAME, var):
                    errors.append(Diagnostic("S002", f"adversarial {side} side item `{ref}` is not `p.<variable>` or `q.<variable>`.", ("edges", i, side, j), "write e.g. `q.x` (inferred/data side) or `p.x` (generated side)."))
                    bad = True
                parsed_side.append((trace, var))
            sides.append(tuple(parsed_side))
        if bad:
            return None
        real, fake = sides
    else:
        parsed = parse_arrow(getattr(e, kind))
        if parsed is None:
            errors.append(Diagnostic("S002", f"{kind} edge `{getattr(e, kind)}` is not of the form `parent -> child`.", ("edges", i, kind), "write e.g. `z -> x` or `z, y -> x`."))
            return None
        parents, child = parsed
        real = fake = ()
    return EdgeInfo(
        name=e.name or default_edge_name(kind, parents, child),
        kind=kind,
        parents=parents,
        child=child,
        net=net,
        dist=(e.dist or "deterministic") if kind != "adversarial" else None,
        objective=e.objective if kind == "adversarial" else None,
        options=dict(e.options),
        index=i,
        real=real,
        fake=fake,
        port=port,
    )
