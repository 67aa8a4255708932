"""`unigen draw`: a spec's graphical model, drawn in the notation of Hu et al. (2018), Fig. 1.

- a variable is a circle, shaded when it is observed (bound to data);
- a generative edge (a factor of p(x, z)) is a solid arrow, an inference edge (a factor of
  q(z | x)) a dashed one; an edge whose distribution is `deterministic` (an implicit
  distribution) gets a hollow arrowhead;
- an adversarial link is a node `y` (the real/fake indicator the discriminator predicts)
  joined to each judged variable by a red double-headed arrow: the discriminator q(y | x)
  and its reverse q^r(y | x), with the real and fake sides written on it;
- an undirected factor (an energy, as in a Boltzmann machine) is a plain line without heads
  between the variables it joins; the layout puts the later-named variables above (hidden
  units over visible ones);
- a learned prior (a density its network evaluates) is written under its variable's shape;
- every edge is labelled with the network that computes it, `g.a` for port `a` of a network
  with several (one network, several labels).

The picture is described once (`Drawing`) and rendered either by Graphviz (`dot`, when it is
on the PATH) or by matplotlib over a layered networkx layout, so both renderings show the
same edges with the same styles. `.dot` output is the Graphviz source and needs neither.
"""

from __future__ import annotations

import io
import itertools
import math
import shutil
import subprocess
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from unigen.errors import UnigenError
from unigen.graph.model import ModelGraph
from unigen.runs.rundir import atomic_write, not_regular

ADVERSARIAL_COLOR = "#d62728"  # red


OBSERVED_FILL = "#c8c8c8"


FORMATS = ("svg", "png", "pdf", "dot")


SPACING = 2.0  # matplotlib: distance between layers and between nodes of a layer


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    kind: str  # variable | link
    observed: bool = False
    sublabel: str = ""  # shape, then prior, one a line


@dataclass(frozen=True)
class Arrow:
    id: str  # stable, used as the SVG element id: `<kind>:<tail>-><head>:<edge name>`
    tail: str
    head: str
    kind: str  # generative | inference | adversarial | undirected
    label: str
    deterministic: bool = False

    @property
    def style(self) -> dict[str, Any]:
        """The edge's look, shared by both renderers."""
        return {
            "dashed": self.kind == "inference",
            "color": ADVERSARIAL_COLOR if self.kind == "adversarial" else "black",
            "hollow": self.deterministic,
            "both": self.kind == "adversarial",
            "none": self.kind == "undirected",
        }


@dataclass
class Drawing:
    name: str
    nodes: list[Node] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)


def indicator_names(links: list[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """Each link's real/fake indicator's name: `y` for a model's only link; with several, or
    when a variable is named `y`, `y_<link>` each (the link's name without the `adv_` that
    default names start with, unless two would then read alike); a name a variable has
    (`taken`) gets primes until it is free."""
    taken = set(taken)
    if len(links) == 1 and "y" not in taken:
        return {links[0]: "y"}
    short = [name[len("adv_") :] if name.startswith("adv_") and len(name) > len("adv_") else name for name in links]
    if len(set(short)) < len(short):
        short = links
    out = {}
    for name, s in zip(links, short):
        label = f"y_{s}"
        while label in taken:
            label += "'"
        out[name] = label
    return out


def _sides(e: Any, v: str) -> str:
    """What a link judges of variable `v`: its real and its fake side (`real q.x  fake p.x`)."""
    real = ", ".join(f"{t}.{x}" for t, x in e.real if x == v)
    fake = ", ".join(f"{t}.{x}" for t, x in e.fake if x == v)
    return "  ".join(s for s in (f"real {real}" if real else "", f"fake {fake}" if fake else "") if s)


def describe(graph: ModelGraph, notes: dict[str, str] | None = None) -> Drawing:
    """The drawing of a spec's model graph: its nodes and styled arrows. `notes` (link name ->
    text, a compiled program's `notes`) adds what each link's objective says of itself. A link
    is joined to every variable on its real or fake side (a translation judged against the
    other domain's data: both), and each link's indicator has a name of its own."""
    spec = graph.spec
    notes = notes or {}
    d = Drawing(spec.name)
    for name, var in spec.variables.items():
        bits = ["[" + ", ".join(map(str, var.shape)) + "]"]
        if var.prior_name:
            bits.append(f"~ {var.prior_name}")
        elif var.prior is not None:  # a learned density: its distribution and network
            bits.append(f"~ {var.prior.dist}")  # type: ignore[union-attr]
            bits.append(f"({var.prior.net})")  # type: ignore[union-attr]
        # Shape and prior on lines of their own, so that the circle stays narrow.
        d.nodes.append(Node(name, name, "variable", var.observed, "\n".join(bits)))
    names = indicator_names([e.name for e in graph.edges if e.kind == "adversarial"], spec.variables)
    for e in graph.edges:
        if e.kind == "adversarial":
            link = f"link:{e.name}"
            # What else the discriminator tells (MAD-GAN: which generator made a fake), as the objective puts it.
            note = "\n".join(textwrap.wrap(notes.get(e.name, ""), 16))
            d.nodes.append(Node(link, names[e.name], "link", sublabel=e.name + (f"\n{note}" if note else "")))
            for v in dict.fromkeys([*e.parents, *(x for _, x in e.real), *(x for _, x in e.fake)]):
                sides = _sides(e, v)
                d.arrows.append(Arrow(f"adversarial:{v}->{link}:{e.name}", v, link, "adversarial", f"{e.net_ref}\n{sides}" if sides else e.net_ref))
            continue
        if e.kind == "undirected":
            for i, a in enumerate(e.parents):
                for b in e.parents[i + 1 :]:
                    d.arrows.append(Arrow(f"undirected:{a}--{b}:{e.name}", a, b, "undirected", e.net_ref))
            continue
        assert e.child is not None
        for p in e.parents:
            d.arrows.append(Arrow(f"{e.kind}:{p}->{e.child}:{e.name}", p, e.child, e.kind, e.net_ref, e.dist == "deterministic"))
    return d


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _name_parts(n: Node) -> tuple[str, str]:
    """A node's name as written, and its subscript: an indicator's `y_b` is y with subscript b
    (a variable's name is written as it is, underscores and all)."""
    if n.kind == "link" and "_" in n.label:
        head, sub = n.label.split("_", 1)
        return head, sub
    return n.label, ""


def _name_html(n: Node) -> str:
    head, sub = _name_parts(n)
    return _html(head) + (f'<SUB><FONT POINT-SIZE="10">{_html(sub)}</FONT></SUB>' if sub else "")


def _name_math(n: Node) -> str:
    """The name for matplotlib: a subscript in mathtext (its underscores escaped)."""
    head, sub = _name_parts(n)
    return f"${head}_{{\\mathrm{{{sub.replace('_', chr(92) + '_')}}}}}$" if sub else head


def to_dot(d: Drawing) -> str:
    """Graphviz source. Generative edges set the ranks (priors on top, data below, as in the
    paper's figures); inference edges do not move nodes between ranks."""
    lines = [
        f"digraph {_q(d.name)} {{",
        f"  graph [label={_q(d.name)}, labelloc=t, fontname=Helvetica, nodesep=0.9, ranksep=0.9];",
        "  node [fontname=Helvetica];",
        "  edge [fontname=Helvetica, fontsize=11];",
    ]
    for n in d.nodes:
        # The variable's name, with its shape and prior in small type inside the circle.
        small = "<BR/>".join(_html(line) for line in n.sublabel.split("\n"))
        html = f'<{_name_html(n)}<BR/><FONT POINT-SIZE="9">{small}</FONT>>'
        if n.kind == "variable":
            attrs = {"id": _q(f"node:{n.id}"), "shape": "circle", "width": "0.9", "label": html}
            if n.observed:
                attrs.update(style="filled", fillcolor=_q(OBSERVED_FILL))
        else:
            attrs = {"id": _q(f"node:{n.id}"), "shape": "circle", "width": "0.6", "label": html, "color": _q(ADVERSARIAL_COLOR), "fontcolor": _q(ADVERSARIAL_COLOR)}
        lines.append(f"  {_q(n.id)} [{', '.join(f'{k}={v}' for k, v in attrs.items())}];")
    for a in d.arrows:
        s = a.style
        # Spaces around each line keep the label off the edge it names and off a parallel one.
        label = "\n".join(f"  {line}  " for line in a.label.split("\n"))
        attrs = {"id": a.id, "label": label, "color": s["color"], "fontcolor": s["color"], "style": "dashed" if s["dashed"] else "solid", "arrowhead": "empty" if s["hollow"] else "normal"}
        if s["both"]:
            attrs.update(dir="both", arrowtail="normal")
        if s["none"]:  # an undirected factor; drawn from the upper variable so that ranks agree with `layout`
            attrs.update(dir="none")
            lines.append(f"  {_q(a.head)} -> {_q(a.tail)} [{', '.join(f'{k}={_q(v)}' for k, v in attrs.items())}];")
            continue
        if a.kind == "inference":
            attrs["constraint"] = "false"
        lines.append(f"  {_q(a.tail)} -> {_q(a.head)} [{', '.join(f'{k}={_q(v)}' for k, v in attrs.items())}];")
    # An adversarial indicator sits beside the lowest variable it judges, as in the matplotlib
    # layout, rather than a rank below everything.
    pos = layout(d)
    for n in d.nodes:
        judged = [a.tail for a in d.arrows if a.head == n.id and a.tail in pos]
        if n.kind == "link" and judged:
            lowest = min(judged, key=lambda v: pos[v][1])
            lines.append(f"  {{rank=same; {_q(lowest)}; {_q(n.id)}}}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_binary() -> str | None:
    return shutil.which("dot")


def _render_dot(d: Drawing, fmt: str, dot: str) -> bytes:
    """The picture Graphviz renders, as bytes (written by `_write`, whole or not at all)."""
    try:
        dpi = ["-Gdpi=150"] if fmt == "png" else []  # the same resolution as the matplotlib PNG
        res = subprocess.run([dot, f"-T{fmt}", *dpi], input=to_dot(d).encode(), capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UnigenError.one("U001", f"Graphviz (`{dot}`) could not be run: {exc}.", (), "use `--engine matplotlib`, or reinstall Graphviz.", exit_code=1) from None
    if res.returncode != 0:
        raise UnigenError.one("U001", f"Graphviz (`{dot}`) failed: {res.stderr.decode(errors='replace').strip()}.", (), "use `--engine matplotlib`, or reinstall Graphviz.", exit_code=1)
    return res.stdout


def _layers(d: Drawing) -> dict[int, list[str]]:
    """The variables by layer: generative roots on top (hidden units of an undirected factor
    above the visible ones), a variable only inference reaches one layer below its parents."""
    dag = nx.DiGraph()
    variables = [n.id for n in d.nodes if n.kind == "variable"]
    dag.add_nodes_from(variables)
    dag.add_edges_from((a.tail, a.head) for a in d.arrows if a.kind == "generative")
    dag.add_edges_from((a.head, a.tail) for a in d.arrows if a.kind == "undirected")  # hidden units above visible ones
    if not nx.is_directed_acyclic_graph(dag):  # an invalid spec: still draw something
        dag = nx.DiGraph()
        dag.add_nodes_from(variables)
    rank: dict[str, int] = {}
    for i, layer in enumerate(nx.topological_generations(dag)):
        for v in layer:
            rank[v] = i
    # A variable reached only by inference (e.g. a code) sits one layer below its parents.
    for a in d.arrows:
        if a.kind == "inference" and dag.in_degree(a.head) == 0 and dag.out_degree(a.head) == 0:
            rank[a.head] = max(rank[a.head], rank.get(a.tail, 0) + 1)
    layers: dict[int, list[str]] = {}
    for v in variables:
        layers.setdefault(rank[v], []).append(v)
    return dict(sorted(layers.items()))


def _placed(d: Drawing, layers: dict[int, list[str]], sort: bool = True) -> dict[str, tuple[float, float]]:
    """Positions of the variables, a layer a row (in the order given, or with `sort` each
    layer below the top ordered by the mean position of its nodes' parents), then of the
    indicators (`_place_links`)."""
    pos: dict[str, tuple[float, float]] = {}

    def mean_parent(v: str) -> float:
        xs = [pos[a.tail][0] for a in d.arrows if a.head == v and a.tail in pos and a.kind != "adversarial"]
        return sum(xs) / len(xs) if xs else 0.0

    for r, members in layers.items():
        if r > 0 and sort:
            members = sorted(members, key=mean_parent)
        for i, v in enumerate(members):
            x = i - (len(members) - 1) / 2
            if r > 0 and len(members) == 1:
                x = mean_parent(v) if any(a.head == v and a.tail in pos for a in d.arrows) else x
            pos[v] = (x, -float(r))
    _place_links(d, pos)
    return pos


ORDERINGS = 720  # a drawing with links tries every order of its layers' nodes up to this many


def layout(d: Drawing) -> dict[str, tuple[float, float]]:
    """Layered positions: generative roots on top, their children below (as `dot` ranks
    them), each layer ordered below its parents; each adversarial indicator where its lines
    run clear (`_place_links`). A drawing with indicators takes, among the orders of its
    layers, the one whose lines cross least and pass fewest circles (a translation judged
    against the other domain's data is drawn under that domain)."""
    layers = _layers(d)
    best = _placed(d, layers)
    if not any(n.kind == "link" for n in d.nodes) or math.prod(math.factorial(len(m)) for m in layers.values()) > ORDERINGS:
        return best
    score = _clutter(d, best)
    for combo in itertools.product(*(itertools.permutations(m) for m in layers.values())):
        pos = _placed(d, {r: list(order) for r, order in zip(layers, combo)}, sort=False)
        s = _clutter(d, pos)
        if s < score - 1e-9:
            best, score = pos, s
    return best


def _clutter(d: Drawing, pos: dict[str, tuple[float, float]]) -> float:
    """How hard a layout is to read: lines that cross, lines through circles, two lines'
    middles (where their labels go) on top of each other; then the lines' length."""
    segments = [(pos[a.tail], pos[a.head]) for a in d.arrows if a.tail in pos and a.head in pos and a.tail != a.head]
    cost = 0.0
    for i, s in enumerate(segments):
        cost += 0.05 * math.dist(*s)
        cost += 50.0 * sum(_near(p, *s) < 0.4 for p in pos.values() if p not in s)
        for t in segments[i + 1 :]:
            cost += 10.0 * _cross(s, t)
            middle_s, middle_t = ((s[0][0] + s[1][0]) / 2, (s[0][1] + s[1][1]) / 2), ((t[0][0] + t[1][0]) / 2, (t[0][1] + t[1][1]) / 2)
            cost += 5.0 * (set(s) != set(t) and math.dist(middle_s, middle_t) < 0.35)
    return cost


LINK_STEP = 0.35  # the grid of places an indicator may take, in layout units (a layer is 1)


def _place_links(d: Drawing, pos: dict[str, tuple[float, float]]) -> None:
    """Each indicator at the free place, among the layers' heights and the half-way heights,
    where its lines to the variables it judges cross the fewest other lines and pass no
    circle; ties go to the place beside the lowest of them, right of the picture."""
    segments = [(pos[a.tail], pos[a.head]) for a in d.arrows if a.tail in pos and a.head in pos]
    for n in d.nodes:
        if n.kind != "link":
            continue
        judged = [pos[a.tail] for a in d.arrows if a.head == n.id and a.tail in pos]
        xs, ys = [x for x, _ in pos.values()] or [0.0], [y for _, y in pos.values()] or [0.0]
        if not judged:
            pos[n.id] = (max(xs) + 1.4, 0.0)
            continue
        right, low = max(xs) + 1.4, min(y for _, y in judged)
        steps = int(round((right - min(xs) + 1.4) / LINK_STEP))
        heights = [max(ys) - 0.5 * k for k in range(int(round((max(ys) - min(ys)) * 2)) + 1)]
        places = [(right - LINK_STEP * k, y) for k in range(steps + 1) for y in heights]
        best = min(places, key=lambda c: _link_cost(c, judged, pos, segments) + (0.0 if c == (right, low) else 0.05 + 0.01 * (right - c[0])))
        pos[n.id] = best
        segments += [(best, j) for j in judged]


def _link_cost(c: tuple[float, float], judged: list[tuple[float, float]], pos: dict[str, tuple[float, float]], segments: list[tuple[tuple[float, float], tuple[float, float]]]) -> float:
    """How bad a place is for an indicator: on top of a node (out of the question), its lines
    through a circle, too short for their labels, or crossing other lines; then their length."""
    if any(math.dist(c, p) < 0.9 for p in pos.values()):
        return math.inf
    cost = 0.0
    for j in judged:
        length = math.dist(c, j)
        cost += length + (5.0 if length < 1.39 else 0.0)
        cost += 50.0 * sum(_near(p, c, j) < 0.4 for p in pos.values() if p != j)
        cost += 10.0 * sum(_cross((c, j), s) for s in segments)
    cost += 50.0 * sum(_near(c, *s) < 0.4 for s in segments)  # a line running past the circle
    return cost


def _near(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """The distance from p to the segment a-b."""
    (px, py), (ax_, ay), (bx, by) = p, a, b
    dx, dy = bx - ax_, by - ay
    t = max(0.0, min(1.0, ((px - ax_) * dx + (py - ay) * dy) / ((dx * dx + dy * dy) or 1.0)))
    return math.dist(p, (ax_ + t * dx, ay + t * dy))


def _cross(s: tuple[tuple[float, float], tuple[float, float]], t: tuple[tuple[float, float], tuple[float, float]]) -> bool:
    """Whether two segments cross (touching at a shared end does not count)."""
    if set(s) & set(t):
        return False

    def side(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    (a, b), (c, e) = s, t
    return side(a, b, c) * side(a, b, e) < 0 and side(c, e, a) * side(c, e, b) < 0


def figure(d: Drawing) -> Any:
    """The matplotlib figure of a drawing. Artists carry gids: `node:<id>` (circles),
    `text:<id>` and `sub:<id>` (a node's name, and its shape and prior), the arrow's id (arrows) and `label:<arrow id>`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text in the SVG
    pos = {k: (x * SPACING, y * SPACING) for k, (x, y) in layout(d).items()}
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    fig, ax = _axes(plt, d.name, xs, ys)
    radius = {n.id: _radius(n) for n in d.nodes}
    centre = (sum(xs) / len(xs), sum(ys) / len(ys))  # the picture's centre: labels go outwards
    _draw_nodes(ax, d.nodes, pos, radius)
    # Two edges between one pair of nodes (z -> x generative, x -> z inference) bend apart
    # to opposite sides; a lone edge stays straight.
    between: dict[frozenset[str], list[Arrow]] = {}
    for a in d.arrows:
        between.setdefault(frozenset((a.tail, a.head)), []).append(a)
    # A straight line that another crosses has its label nearer its tail, off the crossing,
    # on the side away from where the other line comes from.
    ends = {a.id: (pos[a.tail], pos[a.head]) for a in d.arrows}
    crossed = {i: t[0] for i, s in ends.items() for j, t in ends.items() if j != i and _cross(s, t)}
    for group in between.values():
        _draw_arrow_group(ax, group, pos, radius, centre, crossed)
    return fig


def _axes(plt: Any, title: str, xs: list[float], ys: list[float]) -> tuple[Any, Any]:
    """A blank figure framing the node positions `xs`, `ys` with room for circles and labels."""
    x0, x1, y0, y1 = min(xs) - 1.6, max(xs) + 1.6, min(ys) - 0.9, max(ys) + 0.9
    fig, ax = plt.subplots(figsize=(1.3 * (x1 - x0), 1.3 * (y1 - y0)))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=13)
    return fig, ax


def _draw_nodes(ax: Any, nodes: list[Node], pos: dict[str, tuple[float, float]], radius: dict[str, float]) -> None:
    """Each node's circle, with its name and, in small type below it, its shape and prior."""
    from matplotlib.patches import Circle

    for n in nodes:
        x, y = pos[n.id]
        color = "black" if n.kind == "variable" else ADVERSARIAL_COLOR
        circle = Circle((x, y), radius[n.id], facecolor=OBSERVED_FILL if n.observed else "white", edgecolor=color, lw=1.4, zorder=3)
        circle.set_gid(f"node:{n.id}")
        ax.add_patch(circle)
        name = ax.text(x, y + 0.15, _name_math(n), ha="center", va="center", fontsize=14, color=color, zorder=4)
        name.set_gid(f"text:{n.id}")
        sub = ax.text(x, y - 0.01, n.sublabel, ha="center", va="top", fontsize=6.5, color=color, zorder=4, linespacing=1.25)
        sub.set_gid(f"sub:{n.id}")


def _draw_arrow_group(ax: Any, group: list[Arrow], pos: dict[str, tuple[float, float]], radius: dict[str, float], centre: tuple[float, float], crossed: dict[str, tuple[float, float]] | None = None) -> None:
    """The arrows between one pair of nodes, each with its label; several bend apart."""
    from matplotlib.patches import FancyArrowPatch

    for k, a in enumerate(group):
        s = a.style
        (ax0, ay0), (ax1, ay1) = pos[a.tail], pos[a.head]
        length = math.hypot(ax1 - ax0, ay1 - ay0) or 1.0
        ux, uy = (ax1 - ax0) / length, (ay1 - ay0) / length
        # Bend: positive `side` is to the left of the pair's first edge's direction.
        ref = group[0]
        sign = 1.0 if (a.tail, a.head) == (ref.tail, ref.head) else -1.0
        side = 0.0 if len(group) == 1 else (1.0 if k % 2 == 0 else -1.0) * (1 + k // 2)
        rad = 0.45 * side * sign
        # Leave each circle at its rim, tilted towards the bend.
        tilt = math.atan(rad) if rad else 0.0
        cos, sin = math.cos(tilt), math.sin(tilt)
        sx, sy = ux * cos + uy * sin, -ux * sin + uy * cos
        ex, ey = ux * cos - uy * sin, ux * sin + uy * cos
        start = (ax0 + sx * radius[a.tail], ay0 + sy * radius[a.tail])
        end = (ax1 - ex * radius[a.head], ay1 - ey * radius[a.head])
        head = "<|-|>" if s["both"] else "-" if s["none"] else "-|>"
        patch = FancyArrowPatch(
            start, end, arrowstyle=head if s["none"] else f"{head},head_length=0.45,head_width=0.22",
            connectionstyle=f"arc3,rad={rad}", mutation_scale=20, lw=1.4, shrinkA=0, shrinkB=0,
            linestyle=(0, (5, 3)) if s["dashed"] else "-",
            edgecolor=s["color"], facecolor="white" if s["hollow"] else s["color"], zorder=2,
        )
        patch.set_gid(a.id)
        ax.add_patch(patch)
        _place_label(ax, a, start, end, (ux, uy), rad, centre, (crossed or {}).get(a.id))


def _place_label(ax: Any, a: Arrow, start: tuple[float, float], end: tuple[float, float], direction: tuple[float, float], rad: float, centre: tuple[float, float], away: tuple[float, float] | None = None) -> None:
    """An arrow's label: on the middle of a bent arrow, or beside the middle of a straight one,
    on the side away from the picture's `centre`; a straight arrow that another crosses, whose
    tail is at `away`, has it a third of the way from its tail, on the side away from that
    tail. `direction`: the unit vector tail -> head."""
    color = a.style["color"]
    at = 0.5 if away is None or rad else 0.3
    mx, my = start[0] + at * (end[0] - start[0]), start[1] + at * (end[1] - start[1])
    if rad:
        # A bent edge: the label on the arc's middle, over a white box.
        mx, my = mx + (end[1] - start[1]) * rad / 2, my - (end[0] - start[0]) * rad / 2
        t = ax.text(mx, my, a.label, ha="center", va="center", fontsize=9, color=color, zorder=5,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.9, "pad": 1})
    else:
        # A straight edge: the label beside its middle, on the side away from the
        # picture's centre, anchored at the corner nearest the line so that the whole
        # text stays on that side (it crosses neither this edge nor the circles).
        ux, uy = direction
        cx, cy = centre
        nx_, ny_ = -uy, ux
        if away is not None and nx_ * (away[0] - mx) + ny_ * (away[1] - my) > 0:
            nx_, ny_ = -nx_, -ny_
        elif away is None and (nx_ * (mx - cx) + ny_ * (my - cy) < 0 or (abs(nx_ * (mx - cx) + ny_ * (my - cy)) < 1e-9 and ny_ < 0)):
            nx_, ny_ = -nx_, -ny_
        ha = "center" if abs(nx_) < 0.3 else ("left" if nx_ > 0 else "right")
        va = "center" if abs(ny_) < 0.3 else ("bottom" if ny_ > 0 else "top")
        t = ax.text(mx + 0.12 * nx_, my + 0.12 * ny_, a.label, ha=ha, va=va, fontsize=9, color=color, zorder=5,
                    multialignment="center")
    t.set_gid(f"label:{a.id}")


def _radius(n: Node) -> float:
    """A variable's circle holds its name, shape and prior; an indicator's grows with its
    name's subscript, the link's name under it, and the lines its objective's note adds."""
    if n.kind == "variable":
        return 0.46
    sub = _name_parts(n)[1]
    return max(0.34 + 0.1 * max(0, n.sublabel.count("\n")), 0.28 + 0.045 * len(sub), 0.12 + 0.035 * max(map(len, n.sublabel.split("\n"))))


def _render_matplotlib(d: Drawing, fmt: str) -> bytes:
    import matplotlib.pyplot as plt

    fig = figure(d)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, bbox_inches="tight", dpi=150)
    finally:
        plt.close(fig)
    return buf.getvalue()


def _cannot_write(out: Path, why: str) -> UnigenError:
    return UnigenError.one("U002", f"cannot write `{out}`: {why}.", (), "choose an output path in a writable directory (a new file, or a regular file to replace).", exit_code=1)


def _write(out: Path, data: bytes | str) -> None:
    """`out` whole or not at all; a fifo, a directory or a device there is refused and stays."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, data)
    except OSError as exc:
        raise _cannot_write(out, exc.strerror or str(exc)) from None


def draw(graph: ModelGraph, out: Path, engine: str = "auto", notes: dict[str, str] | None = None) -> str:
    """Write the drawing to `out` (format from its suffix); returns the engine used. `notes`:
    a compiled program's `notes`, what each link's objective says of itself. A fifo, a directory
    or a device at `out` is refused (U002) before anything is drawn: it is never opened."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UnigenError.one("U002", f"cannot draw to `{out}`: unknown format `.{fmt}`; expected one of {', '.join('.' + f for f in FORMATS)}.", (), "name the output e.g. `model.svg` or `model.png`.")
    kind = not_regular(out, follow=False)
    if kind:
        raise _cannot_write(out, f"it is {kind}, not a regular file")
    d = describe(graph, notes)
    if fmt == "dot":
        _write(out, to_dot(d))
        return "dot-source"
    dot = dot_binary()
    if engine == "graphviz" and dot is None:
        raise UnigenError.one("U001", "`--engine graphviz`: the Graphviz `dot` program is not on the PATH.", (), "install Graphviz (e.g. `apt-get install graphviz`), or use `--engine auto` for the matplotlib drawing.", exit_code=1)
    if engine in ("auto", "graphviz") and dot is not None:
        _write(out, _render_dot(d, fmt, dot))
        return "graphviz"
    _write(out, _render_matplotlib(d, fmt))
    return "matplotlib"
