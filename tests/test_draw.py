"""`unigen draw`: the drawing has the spec's edges, each in the style of its kind."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT, SPECS

from unigen.compiler.compiler import compile_file
from unigen.graph.model import build_graph
from unigen.spec.load import load_spec
from unigen.tools import draw as drawmod
from unigen.tools.draw import ADVERSARIAL_COLOR, OBSERVED_FILL, describe, to_dot

SVG = "{http://www.w3.org/2000/svg}"


def graph_of(name, registry):
    spec, _, _ = load_spec(ROOT / "specs" / f"{name}.yaml", registry=registry)
    return build_graph(spec)


def dot_edges(text):
    """{edge id: attributes} of the Graphviz source."""
    out = {}
    for m in re.finditer(r'^\s*"([^"]+)" -> "([^"]+)" \[(.*)\];$', text, re.M):
        attrs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3)))
        attrs["label"] = "\\n".join(line.strip() for line in attrs.get("label", "").split("\\n"))  # padded with spaces
        out[attrs["id"]] = {"tail": m.group(1), "head": m.group(2), **attrs}
    return out


def test_draw_dot_of_aae_has_every_edge_styled_by_kind(registry):
    edges = dot_edges(to_dot(describe(graph_of("aae-digits", registry))))
    assert set(edges) == {"generative:z->x:p_x", "inference:x->z:q_z", "adversarial:z->link:adv_z:adv_z"}
    gen, inf, adv = edges["generative:z->x:p_x"], edges["inference:x->z:q_z"], edges["adversarial:z->link:adv_z:adv_z"]
    assert (gen["style"], gen["arrowhead"], gen["color"], gen["label"]) == ("solid", "normal", "black", "decoder")  # bernoulli: a density
    assert (inf["style"], inf["arrowhead"], inf["label"]) == ("dashed", "empty", "encoder")  # deterministic encoder: hollow head
    assert adv["color"] == ADVERSARIAL_COLOR and adv["dir"] == "both" and adv["label"].startswith("discriminator")
    assert "real p.z" in adv["label"] and "fake q.z" in adv["label"]


def test_draw_madgan_indicator_says_which_latent_it_also_tells(registry):
    program = compile_file(ROOT / "specs" / "madgan-ring.yaml", registry=registry).program
    text = to_dot(describe(program.graph, {e.name: e.note for e in program.links()}))
    assert re.search(r'"link:adv_x" \[[^\n]*label=<y<BR/>.*adv_x<BR/>also tells which<BR/>`c` made each<BR/>fake', text)
    gan = compile_file(ROOT / "specs" / "gan-ring.yaml", registry=registry).program
    assert "also tells" not in to_dot(describe(gan.graph, {e.name: e.note for e in gan.links()}))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_draw_dot_has_one_edge_per_parent_and_judged_variable(spec, registry):
    graph = graph_of(spec.stem, registry)
    text = to_dot(describe(graph))
    edges = dot_edges(text)
    expected = set()
    for e in graph.edges:  # labelled with the network, at its port (`g.a`) where it has several
        if e.kind == "adversarial":  # every variable on the real or the fake side is joined to the indicator
            expected |= {(v, f"link:{e.name}", "adversarial", e.net_ref) for v in (*e.parents, *(x for _, x in e.real + e.fake))}
        elif e.kind == "undirected":  # a line without heads, drawn from the later-named variable
            expected |= {(b, a, "undirected", e.net_ref) for i, a in enumerate(e.parents) for b in e.parents[i + 1 :]}
        else:
            expected |= {(p, e.child, e.kind, e.net_ref) for p in e.parents}
    got = {(a["tail"], a["head"], a["id"].split(":")[0], a["label"].split("\\n")[0]) for a in edges.values()}
    assert got == expected
    for a in edges.values():
        kind = a["id"].split(":")[0]
        assert a["style"] == ("dashed" if kind == "inference" else "solid")
        assert (a["color"] == ADVERSARIAL_COLOR) == (kind == "adversarial")
    for e in graph.edges:  # the indicator y sits on the rank of one of the variables it judges
        if e.kind == "adversarial":
            joined = {v for v in (*e.parents, *(x for _, x in e.real + e.fake))}
            (rank,) = re.findall(rf'{{rank=same; "([^"]+)"; "link:{e.name}"}}', text)
            assert rank in joined
    for name, var in graph.spec.variables.items():
        node = re.search(rf'^\s*"{name}" \[(.*)\];$', text, re.M)
        assert node is not None
        assert ("filled" in node.group(1)) == var.observed


def _svg_groups(path):
    root = ET.parse(path).getroot()
    return {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("id")}


def _styles(group, tag="path"):
    return [dict(kv.split(": ", 1) for kv in (p.get("style") or "").split("; ") if kv) for p in group.iter(f"{SVG}{tag}")]


def test_draw_matplotlib_svg_shows_styles(tmp_path, registry):
    out = tmp_path / "ali.svg"
    assert drawmod.draw(graph_of("ali-ring", registry), out, engine="matplotlib") == "matplotlib"
    groups = _svg_groups(out)
    gen, inf = _styles(groups["generative:z->x:p_x"]), _styles(groups["inference:x->z:q_z"])
    assert all("stroke-dasharray" not in s for s in gen) and all("stroke-dasharray" in s for s in inf)
    assert gen[-1]["fill"] == "#ffffff" and inf[-1]["fill"] == "#ffffff"  # both deterministic: hollow heads
    for v in ("x", "z"):
        adv = _styles(groups[f"adversarial:{v}->link:adv_x_z:adv_x_z"])
        assert len(adv) == 3  # the line and a head at each end
        assert all(s["stroke"] == ADVERSARIAL_COLOR for s in adv)
    assert _styles(groups["node:x"])[0]["fill"] == OBSERVED_FILL
    assert _styles(groups["node:z"])[0]["fill"] == "#ffffff"
    label = groups["label:generative:z->x:p_x"]
    assert "generator" in "".join(label.itertext())


def test_draw_matplotlib_vae_heads_filled_for_densities(tmp_path, registry):
    out = tmp_path / "vae.svg"
    drawmod.draw(graph_of("vae-digits", registry), out, engine="matplotlib")
    groups = _svg_groups(out)
    for eid in ("generative:z->x:p_x", "inference:x->z:q_z"):
        head = _styles(groups[eid])[-1]
        assert head.get("fill", "#000000") == "#000000", eid  # bernoulli and normal: filled heads


@pytest.mark.skipif(drawmod.dot_binary() is None, reason="Graphviz `dot` is not installed")
def test_draw_graphviz_svg_keeps_ids_and_styles(tmp_path, registry):
    out = tmp_path / "gan.svg"
    assert drawmod.draw(graph_of("infogan-ring", registry), out) == "graphviz"
    groups = _svg_groups(out)
    gen = groups["generative:z->x:p_x"]
    assert next(gen.iter(f"{SVG}polygon")).get("fill") == "none"  # hollow head
    inf = groups["inference:x->c:q_c"]
    assert next(inf.iter(f"{SVG}path")).get("stroke-dasharray")
    adv = groups["adversarial:x->link:adv_x:adv_x"]
    assert len(list(adv.iter(f"{SVG}polygon"))) == 2 and next(adv.iter(f"{SVG}path")).get("stroke") == ADVERSARIAL_COLOR


def test_draw_cli_png_and_dot(cli, tmp_path):
    code, out, err = cli("draw", ROOT / "specs" / "gan-ring.yaml", "-o", tmp_path / "m.png", "--engine", "matplotlib")
    assert code == 0, err
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = cli("draw", ROOT / "specs" / "gan-ring.yaml", "-o", tmp_path / "m.dot")
    assert code == 0 and "dot-source" in out
    assert "digraph" in (tmp_path / "m.dot").read_text()


def test_draw_cli_errors(cli, tmp_path, monkeypatch):
    code, _, err = cli("draw", ROOT / "specs" / "gan-ring.yaml", "-o", tmp_path / "m.jpg")
    assert code == 2 and "U002" in err and ".svg" in err
    monkeypatch.setattr(drawmod, "dot_binary", lambda: None)
    code, _, err = cli("draw", ROOT / "specs" / "gan-ring.yaml", "-o", tmp_path / "m.svg", "--engine", "graphviz")
    assert code == 1 and "U001" in err and "apt-get install graphviz" in err
    code, out, _ = cli("draw", ROOT / "specs" / "gan-ring.yaml", "-o", tmp_path / "m.svg")
    assert code == 0 and "matplotlib" in out  # auto falls back


def _extents(spec, registry):
    """Display-space geometry of the matplotlib drawing: circles (centre, radius), text boxes
    by gid, and the arrows' paths by id."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch
    from matplotlib.text import Text

    drawing = describe(graph_of(spec, registry))
    fig = drawmod.figure(drawing)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    circles, texts, arrows = {}, {}, {}
    for artist in ax.get_children():
        gid = artist.get_gid()
        if gid is None:
            continue
        if isinstance(artist, Circle):
            (cx, cy), (ex, _) = ax.transData.transform([artist.center, (artist.center[0] + artist.radius, artist.center[1])])
            circles[gid] = (cx, cy, ex - cx)
        elif isinstance(artist, Text):
            texts[gid] = artist.get_window_extent(renderer)
        elif isinstance(artist, FancyArrowPatch):
            arrows[gid] = ax.transData.transform(artist.get_path().interpolated(40).vertices)  # the path is in data space
    plt.close(fig)
    # Two arrows between one pair of nodes bend apart; a lone one is straight.
    pairs = [frozenset((a.tail, a.head)) for a in drawing.arrows]
    bent = {a.id for a, pair in zip(drawing.arrows, pairs) if pairs.count(pair) > 1}
    return circles, texts, arrows, bent


def _box_hits_circle(box, circle, margin=1.0):
    cx, cy, r = circle
    nx, ny = min(max(cx, box.x0), box.x1), min(max(cy, box.y0), box.y1)  # the box's point nearest the centre
    return (nx - cx) ** 2 + (ny - cy) ** 2 < (r - margin) ** 2


def _box_hits_path(box, vertices, margin=1.0):
    return any(box.x0 + margin < x < box.x1 - margin and box.y0 + margin < y < box.y1 - margin for x, y in vertices)


@pytest.mark.parametrize("spec", ["vae-digits", "gan-ring", "aae-digits", "infogan-ring", "ali-ring", "cgan-digits", "cyclegan-digits", "dann-digits", "cogan-digits", "avb-digits"])
def test_draw_matplotlib_text_fits_and_labels_stay_clear(spec, registry):
    """What the eye checks: a node's name, shape and prior lie inside its circle; an edge's
    label overlaps no circle, no other label, and no edge (a bent edge's own label sits on its
    arc, over a white box, by design)."""
    circles, texts, arrows, bent = _extents(spec, registry)
    assert circles and arrows
    for gid, box in texts.items():
        kind, _, node = gid.partition(":")
        if kind in ("text", "sub"):
            cx, cy, r = circles["node:" + node]
            corners = [(box.x0, box.y0), (box.x0, box.y1), (box.x1, box.y0), (box.x1, box.y1)]
            assert all((x - cx) ** 2 + (y - cy) ** 2 <= (0.9 * r) ** 2 for x, y in corners), f"{spec}: the {kind} of {node} sticks out of its circle"
    labels = {gid[len("label:") :]: box for gid, box in texts.items() if gid.startswith("label:")}
    assert set(labels) == set(arrows)
    for aid, box in labels.items():
        for node, circle in circles.items():
            assert not _box_hits_circle(box, circle), f"{spec}: the label of {aid} overlaps {node}"
        for other, other_box in labels.items():
            assert other == aid or not box.overlaps(other_box), f"{spec}: the labels of {aid} and {other} overlap"
        for other, vertices in arrows.items():
            if other == aid and aid in bent:
                continue
            assert not _box_hits_path(box, vertices), f"{spec}: the label of {aid} crosses the edge {other}"


FIGURES = ["vae-digits", "gan-ring", "aae-digits", "infogan-ring", "ali-ring"]


def test_draw_readme_shows_the_figures_of_the_shipped_specs():
    readme = (ROOT / "README.md").read_text()
    for name in FIGURES:
        png = ROOT / "docs" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"![{name}](docs/figures/{name}.png)" in readme
        assert (ROOT / "specs" / f"{name}.yaml").exists()
    assert "unigen draw specs/NAME.yaml -o docs/figures/NAME.png --engine matplotlib" in readme


def test_draw_keeps_a_link_s_fake_side_when_it_is_another_variable(registry):
    """CycleGAN judges the translation ab against b's data, DANN the target features ht against
    the source features h: both variables are joined to the link's indicator, each side named."""
    edges = dot_edges(to_dot(describe(graph_of("cyclegan-digits", registry))))
    assert edges["adversarial:b->link:adv_b:adv_b"]["label"] == "d_b\\nreal q.b"
    assert edges["adversarial:ab->link:adv_b:adv_b"]["label"] == "d_b\\nfake p.ab"
    assert edges["adversarial:ba->link:adv_a:adv_a"]["label"] == "d_a\\nfake p.ba"
    dann = dot_edges(to_dot(describe(graph_of("dann-digits", registry))))
    assert dann["adversarial:ht->link:adv_domain:adv_domain"]["label"] == "domain\\nfake q.ht"
    assert dann["adversarial:h->link:adv_domain:adv_domain"]["label"] == "domain\\nreal q.h"


def test_draw_gives_each_indicator_its_own_name(registry):
    names = {n.id: n.label for n in describe(graph_of("cyclegan-digits", registry)).nodes if n.kind == "link"}
    assert names == {"link:adv_a": "y_a", "link:adv_b": "y_b"}
    dann = {n.id: n.label for n in describe(graph_of("dann-digits", registry)).nodes if n.kind == "link"}
    assert dann == {"link:adv_domain": "y_domain"}  # `y` is the class label there
    gan = {n.id: n.label for n in describe(graph_of("gan-ring", registry)).nodes if n.kind == "link"}
    assert gan == {"link:adv_x": "y"}
    text = to_dot(describe(graph_of("cyclegan-digits", registry)))
    assert re.search(r'"link:adv_a" \[[^\n]*label=<y<SUB><FONT POINT-SIZE="10">a</FONT></SUB><BR/>', text)
    assert drawmod.indicator_names(["adv_x", "x"]) == {"adv_x": "y_adv_x", "x": "y_x"}  # never two alike
    assert drawmod.indicator_names(["adv_a"], ["y", "y_a"]) == {"adv_a": "y_a'"}


def test_draw_matplotlib_names_each_indicator_and_keeps_the_fake_side(registry):
    import matplotlib.pyplot as plt

    fig = drawmod.figure(describe(graph_of("cyclegan-digits", registry)))
    ax = fig.axes[0]
    names = {a.get_gid(): a.get_text() for a in ax.texts if (a.get_gid() or "").startswith("text:link:")}
    arrows = {a.get_gid() for a in ax.patches if (a.get_gid() or "").startswith("adversarial:")}
    plt.close(fig)
    assert names == {"text:link:adv_a": "$y_{\\mathrm{a}}$", "text:link:adv_b": "$y_{\\mathrm{b}}$"}
    assert {"adversarial:ab->link:adv_b:adv_b", "adversarial:ba->link:adv_a:adv_a"} <= arrows
