"""Structural rules over the model graph. Every problem is collected; none stops the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch

from unigen.api.registry import Registry
from unigen.errors import Diagnostic, Path, did_you_mean, exception_text
from unigen.graph.model import EdgeInfo, ModelGraph


@dataclass
class Checked:
    """What one validation pass has found so far, and the options it checked on the way
    (rules read them: a dataset's fields, a network's shapes); the compiler resolves options
    and binds terms itself."""

    diagnostics: list[Diagnostic]
    options: dict[Path, Any]  # checked options of every registered kind used, by spec path


def validate_graph(graph: ModelGraph, registry: Registry) -> list[Diagnostic]:
    """Every problem the rules find (the core's, then the plugins' registered rules), none
    stopping the others. Binding terms is the compiler's (`unigen.compiler.binding`)."""
    return check_graph(graph, registry)[0]


def check_graph(graph: ModelGraph, registry: Registry) -> tuple[list[Diagnostic], bool]:
    """`validate_graph`'s diagnostics, and whether every edge parses and every name resolves
    (terms can be bound only then)."""
    out = Checked(list(graph.parse_errors), {})
    names_ok = _names(graph, registry, out)
    _variables(graph, registry, out)
    # Structure is judged on names that resolve and edges that parse: an edge dropped for a
    # bad arrow would make its network look unused, its variables unconnected, and so on.
    if names_ok and not graph.parse_errors:
        _structure(graph, registry, out)
        _shapes(graph, registry, out)
        _phases(graph, registry, out)
        for entry in registry.all("rules"):
            try:
                out.diagnostics.extend(entry.obj.check(graph, registry))
            except Exception as exc:  # a broken rule must not hide the others' findings
                out.diagnostics.append(Diagnostic("P001", f"validation rule `{entry.name}` of plugin `{entry.plugin}` failed: {type(exc).__name__}: {exc}.", hint="report it to the plugin's authors."))
    return out.diagnostics, names_ok and not graph.parse_errors


def _unknown(out: Checked, what: str, name: str, choices: list[str], path: Path) -> None:
    out.diagnostics.append(Diagnostic("G001", f"unknown {what} `{name}`.", path, did_you_mean(name, choices)))


def _names(graph: ModelGraph, registry: Registry, out: Checked) -> bool:
    """G001 (unknown names), S003, G013 (a name used twice), G016 (options of the kinds):
    everything else is judged only when these hold. True when they do."""
    before = len(out.diagnostics)
    _kind_names(graph, registry, out)
    _edge_names(graph, registry, out)
    _phase_names(graph, registry, out)
    _samplers(graph, registry, out)
    for i, m in enumerate(graph.spec.metrics or []):
        if isinstance(m, str):
            _kind(registry, out, "metrics", m, {}, ("metrics", i))
        else:
            _kind(registry, out, "metrics", m.metric, m.options, ("metrics", i, "metric"), ("metrics", i, "options"))
    return len(out.diagnostics) == before


def _kind(registry: Registry, out: Checked, kind: str, name: str, options: dict[str, Any], path: Path, options_path: Path | None = None) -> None:
    """A registered kind named at `path`, with its options checked (kept in `out.options`)."""
    if not registry.has(kind, name):
        out.diagnostics.append(registry.unknown(kind, name, path))
        return
    value, diags = registry.options(kind, name, options, options_path if options_path is not None else path[:-1])
    out.diagnostics.extend(diags)
    out.options[path] = value


def _kind_names(graph: ModelGraph, registry: Registry, out: Checked) -> None:
    """The dataset (and the fields it declares), the priors and the networks' architectures."""
    spec = graph.spec
    _kind(registry, out, "datasets", spec.data.source, spec.data.options, ("data", "source"))
    fields: dict[str, tuple[int, ...]] = {}
    if ("data", "source") in out.options and out.options[("data", "source")] is not None:
        try:
            fields = dict(registry.get("datasets", spec.data.source).fields(out.options[("data", "source")]))
        except Exception as exc:
            out.diagnostics.append(Diagnostic("D001", f"dataset `{spec.data.source}` cannot describe its fields: {exc}.", ("data",)))
    out.options[("data", "fields")] = fields
    for vname, var in spec.variables.items():
        if var.prior_name is not None:
            if not registry.has("distributions", var.prior_name):
                out.diagnostics.append(registry.unknown("distributions", var.prior_name, ("variables", vname, "prior")))
            elif not registry.get("distributions", var.prior_name).can_be_prior:
                priors = [e.name for e in registry.all("distributions") if e.obj.can_be_prior]
                learned = [e.name for e in registry.all("distributions") if getattr(e.obj, "evaluates", False)]
                hint = did_you_mean(var.prior_name, priors)
                if getattr(registry.get("distributions", var.prior_name), "evaluates", False):
                    hint = f"its network evaluates the value: write `prior: {{dist: {var.prior_name}, net: <network>}}`."
                elif learned:
                    hint += f" A learned prior names its network: `prior: {{dist: {learned[0]}, net: <network>}}`."
                out.diagnostics.append(Diagnostic("G001", f"distribution `{var.prior_name}` cannot be a prior; expected one that can sample a root without parents.", ("variables", vname, "prior"), hint))
    for nname, net in spec.networks.items():
        _kind(registry, out, "networks", net.arch, net.options, ("networks", nname, "arch"))


def _edge_names(graph: ModelGraph, registry: Registry, out: Checked) -> None:
    """Each edge's variables, network, distribution or objective, and its name."""
    spec = graph.spec
    variables, networks = list(spec.variables), list(spec.networks)
    seen_edges: dict[str, EdgeInfo] = {}
    for e in graph.edges:
        reported: set[str] = set()  # `adversarial: xx` names xx as judged, real and fake: one report
        for v in e.variables:
            if v not in spec.variables and v not in reported:
                reported.add(v)
                _unknown(out, "variable", v, variables, e.path + (e.kind,))
        for side, refs in (("real", e.real), ("fake", e.fake)):
            given = e.index >= 0 and getattr(spec.edges[e.index], side, None) is not None
            for j, (_, v) in enumerate(refs):
                if v not in spec.variables and v not in reported:
                    reported.add(v)
                    _unknown(out, "variable", v, variables, e.path + ((side, j) if given else (e.kind,)))
        if e.net not in spec.networks:
            _unknown(out, "network", e.net, networks, e.path + ("net",))
        else:
            _port(graph, registry, out, e)
        _edge_kind(registry, out, e)
        prev = seen_edges.get(e.name)
        # Two unnamed edges of one kind into one variable share a default name; the
        # structure rule reports that as what it is (two edges into the variable).
        defaulted = prev is not None and prev.kind == e.kind in ("generative", "inference") and _unnamed(graph, prev) and _unnamed(graph, e)
        if prev is not None and not defaulted:
            out.diagnostics.append(Diagnostic("G013", f"two edges are named `{e.name}` (edges {prev.index} and {e.index}); expected distinct names.", e.path, "give one of them a distinct `name:`."))
        seen_edges.setdefault(e.name, e)


def _unnamed(graph: ModelGraph, e: EdgeInfo) -> bool:
    """Whether the edge carries its default name (a learned prior always does)."""
    return e.index < 0 or graph.spec.edges[e.index].name is None


def _port(graph: ModelGraph, registry: Registry, out: Checked, e: EdgeInfo) -> None:
    """G023: `net: g.a` names a port that g's architecture has; a network with ports is used through one."""
    net = graph.spec.networks[e.net]
    options = out.options.get(("networks", e.net, "arch"))
    if not registry.has("networks", net.arch) or options is None:
        return
    ports = tuple(registry.get("networks", net.arch).ports(options))
    path = e.path + ("net",)
    if e.port is not None and not ports:
        out.diagnostics.append(Diagnostic("G023", f"edge `{e.name}` calls port `{e.port}` of network `{e.net}`, but its architecture `{net.arch}` has no ports.", path, f"write `net: {e.net}`."))
    elif e.port is not None and e.port not in ports:
        listed = ", ".join(f"`{p}`" for p in ports)
        out.diagnostics.append(Diagnostic("G023", f"network `{e.net}` ({net.arch}) has no port `{e.port}`; its ports are {listed}.", path, did_you_mean(e.port, list(ports)) or f"write e.g. `net: {e.net}.{ports[0]}`."))
    elif e.port is None and ports:
        listed = ", ".join(f"`{p}`" for p in ports)
        out.diagnostics.append(Diagnostic("G023", f"network `{e.net}` ({net.arch}) has several ports ({listed}), and edge `{e.name}` names none.", path, f"write e.g. `net: {e.net}.{ports[0]}`."))


def _samplers(graph: ModelGraph, registry: Registry, out: Checked) -> None:
    """Each sampler's kind and options, and whether it can fill the trace it is given."""
    for trace, entry in (graph.spec.samplers or {}).items():
        path: Path = ("samplers", trace, "kind")
        _kind(registry, out, "samplers", entry.kind, entry.options, path)
        if registry.has("samplers", entry.kind):
            can = sorted(getattr(registry.get("samplers", entry.kind), "traces", ()))
            if trace not in can:
                fits = [x.name for x in registry.all("samplers") if trace in getattr(x.obj, "traces", ())]
                out.diagnostics.append(Diagnostic("G022", f"sampler `{entry.kind}` cannot fill the {_TRACE_NAMES[trace]}; it fills {' and '.join(_TRACE_NAMES[t] for t in can) or 'no trace'}.", path,
                                                  f"use one that does: {', '.join(f'`{n}`' for n in fits)}." if fits else "install a plugin with a sampler that does."))


_TRACE_NAMES = {"m": "sampler trace `m`", "q": "q-trace `q`"}


def _edge_kind(registry: Registry, out: Checked, e: EdgeInfo) -> None:
    if e.kind == "undirected":
        return  # an energy: its network is all it has
    if e.kind == "adversarial" and not e.objective:
        out.diagnostics.append(Diagnostic("S003", f"adversarial edge `{e.name}` has no `objective`; expected one of: {', '.join(registry.names('objectives'))}.", e.path, "add `objective: <name>`, one of the objectives listed."))
    elif e.kind == "adversarial":
        _kind(registry, out, "objectives", e.objective or "", e.options, e.path + ("objective",), e.path + ("options",))
    else:
        _kind(registry, out, "distributions", e.dist or "", e.options, e.path + ("dist",), e.path + ("options",))
        if registry.has("distributions", e.dist or "") and not getattr(registry.get("distributions", e.dist or ""), "can_be_edge", True):
            edge_kinds = [x.name for x in registry.all("distributions") if getattr(x.obj, "can_be_edge", True)]
            out.diagnostics.append(Diagnostic("G001", f"distribution `{e.dist}` is a prior only and cannot be an edge's output.", e.path + ("dist",), did_you_mean(e.dist or "", edge_kinds)))


def _phase_names(graph: ModelGraph, registry: Registry, out: Checked) -> None:
    """Each phase's name, the networks it updates, its terms and its optimizer."""
    spec = graph.spec
    networks = list(spec.networks)
    seen_phases: set[str] = set()
    for i, phase in enumerate(spec.phases):
        if phase.name in seen_phases:
            out.diagnostics.append(Diagnostic("G013", f"two phases are named `{phase.name}`.", ("phases", i, "name"), "rename one."))
        seen_phases.add(phase.name)
        for j, n in enumerate(phase.update):
            if n not in spec.networks:
                _unknown(out, "network", n, networks, ("phases", i, "update", j))
            elif n in phase.update[:j]:
                out.diagnostics.append(Diagnostic("G013", f"phase `{phase.name}` lists network `{n}` twice in `update`; its optimizer would hold the same parameters twice.", ("phases", i, "update", j), "list each network once."))
        for j, ref in enumerate(phase.term_refs()):
            if not registry.has("terms", ref.term):
                out.diagnostics.append(registry.unknown("terms", ref.term, ("phases", i, "terms", j)))
            if ref.on is not None and graph.edge(ref.on) is None:
                _unknown(out, "edge", ref.on, [e.name for e in graph.edges], ("phases", i, "terms", j))
        optim = phase.optim or spec.train.optim
        optim_path: Path = ("phases", i, "optim", "kind") if phase.optim else ("train", "optim", "kind")
        before_optim = len(out.diagnostics)
        _kind(registry, out, "optimizers", optim.kind, optim.options, optim_path)
        if len(out.diagnostics) == before_optim and optim_path in out.options:
            _try_optimizer(registry, optim.kind, optim.lr, optim.options, optim_path[:-1], out)


def _try_optimizer(registry: Registry, name: str, lr: float, options: dict[str, Any], path: Path, out: Checked) -> None:
    """Build the optimizer once on a dummy parameter: torch checks ranges the options' types do
    not (`betas` in [0, 1), `eps` >= 0, ...), and the user hears of them before training.

    torch's optimizers check their values before they look at the parameters, and adding a
    parameter group imports torch's compiler stack (1.5 s), which validating a spec has no use for:
    so the first try has no parameters, and only when that fails otherwise than on the empty list
    (another optimizer's way) is the dummy parameter tried."""
    make = registry.get("optimizers", name)
    try:
        make([], lr=lr, **options)
        return
    except ValueError as exc:
        if "empty parameter list" in str(exc):
            return
    except Exception:  # noqa: BLE001 - judged by the real try below
        pass
    try:
        make([torch.nn.Parameter(torch.zeros(1))], lr=lr, **options)
    except Exception as exc:  # whatever the optimizer rejects, reported with its options
        out.diagnostics.append(Diagnostic("G016", f"optimizer `{name}` refuses its options: {exception_text(exc)}; expected values it accepts.", path, "fix the value it names (see torch.optim for each option's range)."))


def _structure(graph: ModelGraph, registry: Registry, out: Checked) -> None:
    spec, d = graph.spec, out.diagnostics
    used = {e.net for e in graph.edges}
    for nname in spec.networks:
        if nname not in used:
            d.append(Diagnostic("G002", f"network `{nname}` is used by no edge; expected every network to compute an edge.", ("networks", nname), "attach it to an edge with `net: " + nname + "` or delete it."))
    for kind in ("generative", "inference"):
        seen: dict[str, EdgeInfo] = {}
        for e in graph.of_kind(kind):
            assert e.child is not None
            if e.child in seen:
                d.append(Diagnostic("G013", f"variable `{e.child}` has two {kind} edges (edges {seen[e.child].index} and {e.index}).", e.path, "merge their parents into one edge: `a, b -> " + e.child + "`."))
            seen.setdefault(e.child, e)
            if e.child in e.parents:
                d.append(Diagnostic("G003", f"{kind} edge `{e.name}` points `{e.child}` at itself; expected a parent other than the child.", e.path + (kind,), "remove the self-loop."))
    gen = graph.generative_dag()
    for kind, dag in (("generative", gen), ("inference", graph.inference_dag())):
        acyclic = dag.copy()
        acyclic.remove_edges_from(list(nx.selfloop_edges(acyclic)))  # self-loops are reported above
        try:
            cycle = nx.find_cycle(acyclic)
        except nx.NetworkXNoCycle:
            continue
        names = [u for u, _ in cycle] + [cycle[0][0]]
        e = next(x for x in graph.of_kind(kind) if x.child == cycle[0][1])
        if kind == "generative":
            what, hint = "p(x, z) must factor along a DAG", "reverse or remove one of these edges; a recognition direction belongs in an `inference` edge."
        else:
            what, hint = "q(z | x) must factor along a DAG", "reverse or remove one of these edges; a generating direction belongs in a `generative` edge."
        d.append(Diagnostic("G003", f"the {kind} edges form a cycle: " + " -> ".join(names) + f"; {what}.", e.path + (kind,), hint))
    fields = out.options.get(("data", "fields"), {})
    for vname, var in spec.variables.items():
        if not var.observed:
            continue
        if var.prior is None and not _used_anywhere(graph, vname):  # so no generative parent either
            d.append(Diagnostic("G005", f"observed variable `{vname}` has no generative parent and is used by no edge; expected it to be generated, judged or inferred from.", ("variables", vname), "connect it with an edge or delete it."))
        elif fields and graph.data_field(vname) not in fields:
            # A generative parent does not make data optional: the q-trace reads every
            # observed variable from the batch, whatever generates it in the p-trace.
            d.append(Diagnostic("G005", f"observed variable `{vname}` has no data: dataset `{spec.data.source}` has no field `{graph.data_field(vname)}`; expected one of its fields.", ("variables", vname), f"bind it with `data: <field>` to one of: {', '.join(sorted(fields))}; or make it latent."))
    _undirected(graph, out)
    _inferences(graph, out)
    _links(graph, out)


def _inferences(graph: ModelGraph, out: Checked) -> None:
    """G006: every inference edge approximates a posterior, or is a step of a supervised chain."""
    d, gen = out.diagnostics, graph.generative_dag()
    inf = graph.inference_dag()
    for e in graph.of_kind("inference"):
        assert e.child is not None
        explains = any(nx.has_path(gen, e.child, p) for p in e.parents)
        if not (explains or _supervised(graph, inf, e)):
            d.append(Diagnostic("G006", f"inference edge `{e.name}` ({', '.join(e.parents)} -> {e.child}) approximates no posterior: no generative path leads from `{e.child}` to {', '.join('`' + p + '`' for p in e.parents)}, and it is no step of a supervised chain between observed variables.", e.path + ("inference",), f"add a generative edge from `{e.child}` towards the variables it is inferred from, or make it a supervised edge between observed variables (possibly through latent features, `x -> h -> y`)."))


def _links(graph: ModelGraph, out: Checked) -> None:
    """G007, G014, G008: both sides of every adversarial link can be compared and produced, and
    something trainable stands behind the fake one."""
    d = out.diagnostics
    for e in graph.of_kind("adversarial"):
        if len(e.real) != len(e.fake):
            d.append(Diagnostic("G007", f"adversarial link `{e.name}` compares {len(e.real)} real variable(s) with {len(e.fake)} fake one(s).", e.path, "give both sides the same number of variables."))
            continue
        for (tr, vr), (tf, vf) in zip(e.real, e.fake):
            if graph.shape(vr) != graph.shape(vf):
                d.append(Diagnostic("G007", f"adversarial link `{e.name}` compares `{tr}.{vr}` of shape {list(graph.shape(vr))} with `{tf}.{vf}` of shape {list(graph.shape(vf))}.", e.path, "judge variables of the same shape on both sides."))
        for trace, v in e.real + e.fake:
            source = graph.p_source(v) if trace == "p" else graph.q_source(v)
            if source == "none":  # (a q-trace value may also come through trace completion)
                d.append(Diagnostic("G014", f"adversarial link `{e.name}` needs `{v}` in the {trace}-trace, which has no way to produce it.", e.path, f"add {'a generative' if trace == 'p' else 'an inference'} edge into `{v}`."))
        # Whatever learns from a link stands behind one of its sides: a generator behind the fake
        # side (GANs), or an encoder behind the real side — AVB's implicit posterior q(z|x, eps)
        # is judged as the real side against the prior's draws, and learns by moving it.
        behind = set().union(*(graph.nets_behind(v, t, gradient=False) for t, v in e.fake + e.real))
        if not behind:
            d.append(Diagnostic("G008", f"adversarial link `{e.name}`: nothing trainable stands behind its fake side ({', '.join(t + '.' + v for t, v in e.fake)}) nor its real side ({', '.join(t + '.' + v for t, v in e.real)}), so no generator or encoder can learn from it.", e.path,
                                "judge a variable produced by a trainable network, e.g. `p.x` with a generative edge `z -> x` (a GAN), or `q.z` with an inference edge (AVB's encoder behind the real side)."))


def _undirected(graph: ModelGraph, out: Checked) -> None:
    """G022: undirected factors need their samplers: `m` draws the model's own chain (what CD and
    PCD compare the data with), `q` infers their hidden units given the observed ones."""
    factors, d = graph.of_kind("undirected"), out.diagnostics
    if not factors:
        for trace in graph.spec.samplers or {}:
            d.append(Diagnostic("G022", f"sampler `{trace}` fills the variables of undirected factors, and the spec has none.", ("samplers", trace), "remove `samplers`, or add a factor such as `{undirected: [v, h], net: rbm}`."))
        return
    if graph.sampler("m") is None:
        e = factors[0]
        d.append(Diagnostic("G022", f"undirected factor `{e.name}` ({', '.join(e.parents)}) has no sampler: nothing draws the model's own values, which training compares the data with.", e.path,
                            "add `samplers: {m: {kind: gibbs, steps: 1}}` (contrastive divergence; `persistent: true` for PCD)."))
    hidden = [v for v in graph.undirected_variables() if not graph.variables[v].observed and graph.into(v, "inference") is None]
    if hidden and graph.sampler("q") is None:
        names = ", ".join(f"`{v}`" for v in hidden)
        d.append(Diagnostic("G022", f"the hidden {'unit' if len(hidden) == 1 else 'units'} {names} of undirected factors {'has' if len(hidden) == 1 else 'have'} no inference: the q-trace cannot fill {'it' if len(hidden) == 1 else 'them'} given the data.", ("variables", hidden[0]),
                            "add `samplers: {q: {kind: mean_field}}` (exact for one hidden layer, mean-field for more)."))


def _supervised(graph: ModelGraph, inf: nx.DiGraph, e: EdgeInfo) -> bool:
    """A supervised step: every parent is observed or inferred, and the child is observed (a
    label) or a learnt representation (`x -> h -> y`, h the features of a predictor of y)."""
    spec = graph.spec
    assert e.child is not None
    if not all(spec.variables[p].observed or graph.q_source(p) == "edge" for p in e.parents):
        return False
    return spec.variables[e.child].observed or representation(graph, e.child)


def representation(graph: ModelGraph, var: str) -> bool:
    """A latent that only the q-trace computes: no prior and no generative edge in or out, but
    an inference edge into it (learnt features). The p-trace never needs it, so it needs no prior."""
    v = graph.spec.variables[var]
    if v.observed or v.prior or graph.into(var, "inference") is None or var in graph.undirected_variables():
        return False
    return not any(e.child == var or var in e.parents for e in graph.of_kind("generative"))


def _used_anywhere(graph: ModelGraph, var: str) -> bool:
    return any(var in e.variables or any(v == var for _, v in e.real + e.fake) for e in graph.edges)


def _variables(graph: ModelGraph, registry: Registry, out: Checked) -> None:
    """Checks of single variables: they hold whatever else is wrong, so they always run."""
    spec, d = graph.spec, out.diagnostics
    fields = out.options.get(("data", "fields"), {})
    for vname, var in spec.variables.items():
        if not var.observed and graph.into(vname, "generative") is None and var.prior is None and not representation(graph, vname) and vname not in graph.undirected_variables():
            d.append(Diagnostic("G004", f"latent root `{vname}` has no prior, so the p-trace cannot sample it; expected a prior or a generative edge into it.", ("variables", vname), f"add `prior: normal` (or `categorical`) to `{vname}`, or a generative edge into it."))
        field = graph.data_field(vname)
        if var.observed and field in fields and tuple(fields[field]) != tuple(var.shape):
            d.append(Diagnostic("G012", f"observed variable `{vname}` has shape {list(var.shape)} but dataset `{spec.data.source}` gives `{field}` with shape {list(fields[field])}.", ("variables", vname, "shape"), f"write `shape: {list(fields[field])}`, or change the dataset's options."))
        if var.prior_name is not None and registry.has("distributions", var.prior_name):
            for msg in registry.get("distributions", var.prior_name).check(tuple(var.shape)):
                d.append(Diagnostic("G012", f"prior `{var.prior_name}` of `{vname}`: {msg}", ("variables", vname, "shape"), f"change the shape of `{vname}` or its prior."))
        if var.mask is not None:
            if not var.observed:
                d.append(Diagnostic("G020", f"latent variable `{vname}` has a `mask`, which marks the rows that observe a variable; a latent one is observed in none.", ("variables", vname, "mask"), f"write `observed: true` on `{vname}`, or remove `mask`."))
            elif fields and var.mask not in fields:
                d.append(Diagnostic("G020", f"the mask of `{vname}` is the data field `{var.mask}`, which dataset `{spec.data.source}` does not have; expected one of its fields.", ("variables", vname, "mask"), f"use one of: {', '.join(sorted(fields))}; or set the options of dataset `{spec.data.source}` that make it provide a mask" + _dataset_options(registry, spec.data.source) + "."))


def _shapes(graph: ModelGraph, registry: Registry, out: Checked) -> None:
    spec, d = graph.spec, out.diagnostics
    signature: dict[str, tuple[Any, EdgeInfo]] = {}
    for e in graph.edges:
        if e.kind in ("generative", "inference"):
            assert e.child is not None and e.dist is not None
            for msg in registry.get("distributions", e.dist).check(graph.shape(e.child)):
                d.append(Diagnostic("G012", f"edge `{e.name}`: distribution `{e.dist}` on `{e.child}` {list(graph.shape(e.child))}: {msg}", e.path + ("dist",), f"change the shape of `{e.child}` or the edge's `dist`."))
        inputs, output = edge_signature(graph, registry, e, out.options.get(e.path + ("objective" if e.kind == "adversarial" else "dist",)))
        sig = (inputs, output)
        ref = e.net_ref
        if ref in signature and signature[ref][0] != sig:
            first = signature[ref][1]
            what = f"port `{e.port}` of network `{e.net}`" if e.port else f"network `{e.net}`"
            d.append(Diagnostic("G012", f"{what} computes edge `{first.name}` ({_sig(signature[ref][0])}) and edge `{e.name}` ({_sig(sig)}); one {'port' if e.port else 'network'} needs one shape.", e.path + ("net",),
                                "use a separate network for each shape" + (", or another port." if e.port else ".")))
            continue
        signature.setdefault(ref, (sig, e))
        net = spec.networks[e.net]
        options = out.options.get(("networks", e.net, "arch"))
        if options is None:
            continue
        _evaluated(graph, registry, e, out)
        for msg in registry.get("networks", net.arch).check(inputs, output, options):
            d.append(Diagnostic("G012", f"network `{e.net}` ({net.arch}) on edge `{e.name}`: {msg}", ("networks", e.net), "change the network's options or the shapes of the edge's variables."))
    _ports_together(graph, registry, signature, out)


def _ports_together(graph: ModelGraph, registry: Registry, signature: dict[str, tuple[Any, EdgeInfo]], out: Checked) -> None:
    """G012: what an architecture with ports says of its ports' shapes taken together."""
    for name, net in graph.spec.networks.items():
        ports = {ref.partition(".")[2]: sig for ref, (sig, _) in signature.items() if ref.partition(".")[0] == name and "." in ref}
        options = out.options.get(("networks", name, "arch"))
        if not ports or options is None or not registry.has("networks", net.arch):
            continue
        for msg in getattr(registry.get("networks", net.arch), "check_ports", lambda s, o: [])({p: (list(i), o) for p, (i, o) in ports.items()}, options):
            out.diagnostics.append(Diagnostic("G012", f"network `{name}` ({net.arch}), its ports {', '.join(f'`{p}`' for p in ports)}: {msg}", ("networks", name), "change the network's options or the shapes of the variables on the edges of its ports."))


_NEEDS = {
    "causal": ("causal", "an autoregressive density scores a value in one pass, so each output element may see only the elements before it"),
    "invertible": ("invertible", "a flow scores a value through its inverse and the log-determinant of its Jacobian"),
}


def _evaluated(graph: ModelGraph, registry: Registry, e: EdgeInfo, out: Checked) -> None:
    """G021: a learned prior names a density its network evaluates, on a network of the kind
    that density needs (causal, invertible) as its architecture declares; the plugins' rules check
    the built network itself (the mask's order, the inverse)."""
    if e.kind not in ("generative", "inference") or not registry.has("distributions", e.dist or ""):
        return
    dist = registry.get("distributions", e.dist or "")
    arch = graph.spec.networks[e.net].arch
    if e.index < 0 and not getattr(dist, "evaluates", False):
        learned = [x.name for x in registry.all("distributions") if getattr(x.obj, "evaluates", False)]
        d = Diagnostic("G021", f"the learned prior of `{e.child}` is `{e.dist}`, whose network does not evaluate the variable's value, so it is no density of `{e.child}` alone.", e.path + ("dist",),
                       (f"use one that does: {', '.join(f'`{n}`' for n in learned)}; " if learned else "") + f"or a fixed prior, `prior: {e.dist}`.")
        out.diagnostics.append(d)
        return
    need = getattr(dist, "needs", "")
    if need in _NEEDS and not getattr(registry.get("networks", arch), _NEEDS[need][0], False):
        fits = [x.name for x in registry.all("networks") if getattr(x.obj, _NEEDS[need][0], False)]
        out.diagnostics.append(Diagnostic("G021", f"`{e.dist}` on edge `{e.name}` needs {'an' if need[0] in 'aeiou' else 'a'} {need} network, and `{e.net}` ({arch}) is not {need}: {_NEEDS[need][1]}.", ("networks", e.net, "arch"),
                                          f"use {'an' if need[0] in 'aeiou' else 'a'} {need} architecture" + (f": {', '.join(f'`{n}`' for n in fits)}." if fits else "; none is installed.")))


def edge_signature(graph: ModelGraph, registry: Registry, e: EdgeInfo, options: Any = None) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """The input and output shapes of the network that computes edge `e`: a distribution's
    parameters per child element under its checked `options` (normal: two, one with `variance:
    fixed`) from the parents (and first the child's own value, for a density its network
    evaluates); on a link, what its objective (with its `options`) asks of the discriminator (it
    may judge several samples at once, or give more logits than one); an undirected factor's
    energy per row from the variables it joins."""
    if e.kind == "adversarial":
        objective = registry.get("objectives", e.objective or "")
        shapes, out_shape = objective.network_shapes([graph.shape(v) for _, v in e.real], options, graph)
        return [tuple(s) for s in shapes], tuple(out_shape)
    if e.kind == "undirected":
        return [graph.shape(v) for v in e.parents], (1,)
    assert e.child is not None and e.dist is not None
    child = graph.shape(e.child)
    dist = registry.get("distributions", e.dist)
    own = [child] if getattr(dist, "evaluates", False) else []
    n_params = dist.n_params_for(options) if hasattr(dist, "n_params_for") else dist.n_params  # a plugin's kind may predate n_params_for
    return own + [graph.shape(p) for p in e.parents], (child[0] * n_params,) + child[1:]


def _sig(sig: tuple[Any, Any]) -> str:
    inputs, output = sig
    return ", ".join(str(list(s)) for s in inputs) + " -> " + str(list(output))


def _phases(graph: ModelGraph, registry: Registry, out: Checked) -> None:
    spec, d = graph.spec, out.diagnostics
    if not spec.phases:
        d.append(Diagnostic("G009", "the spec has no phases, so nothing would be trained.", ("phases",), "add phases, or name a `family:` that derives them."))
    updated: set[str] = set()
    for i, phase in enumerate(spec.phases):
        path: Path = ("phases", i)
        if not phase.update:
            d.append(Diagnostic("G009", f"phase `{phase.name}` updates no network.", path + ("update",), "list the networks it trains, e.g. `update: [generator]`."))
        if not phase.terms:
            d.append(Diagnostic("G009", f"phase `{phase.name}` has no terms, so its loss is empty.", path + ("terms",), "add one of the registered terms (`unigen plugins` lists them)."))
        for n in phase.update:
            if n in spec.networks and not spec.networks[n].trainable:
                d.append(Diagnostic("G009", f"phase `{phase.name}` updates `{n}`, which is declared `trainable: false`.", path + ("update",), "remove it from `update` or make it trainable."))
        updated.update(phase.update)
    used = {e.net for e in graph.edges}
    for nname, net in spec.networks.items():
        if net.trainable and nname not in updated and spec.phases and nname in used:  # unused: G002
            d.append(Diagnostic("G011", f"network `{nname}` is trainable but no phase updates it.", ("networks", nname), "add it to a phase's `update`, or set `trainable: false`."))


def _dataset_options(registry: Registry, name: str) -> str:
    """` (its options: `a`, `b`)`, from the dataset kind's options model, or "" without one."""
    model = getattr(registry.get("datasets", name), "Options", None) if registry.has("datasets", name) else None
    names = list(getattr(model, "model_fields", {}))
    return f" (its options: {', '.join(f'`{n}`' for n in names)})" if names else ""
