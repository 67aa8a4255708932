"""`unigen draw`: the drawing has the spec's edges, each in the style of its kind."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT, SPECS

from unigen import draw as drawmod
from unigen.draw import ADVERSARIAL_COLOR, OBSERVED_FILL, describe, to_dot
from unigen.graph import build_graph
from unigen.spec import load_spec

SVG = "{http://www.w3.org/2000/svg}"


def graph_of(name, registry):
    spec, _, _ = load_spec(ROOT / "specs" / f"{name}.yaml", registry=registry)
    return build_graph(spec)


def dot_edges(text):
    """{edge id: attributes} of the Graphviz source."""
    out = {}
    for m in re.finditer(r'^\s*"([^"]+)" -> "([^"]+)" \[(.*)\];$', text, re.M):
        attrs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3)))
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


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_draw_dot_has_one_edge_per_parent_and_judged_variable(spec, registry):
    graph = graph_of(spec.stem, registry)
    text = to_dot(describe(graph))
    edges = dot_edges(text)
    expected = set()
    for e in graph.edges:
        if e.kind == "adversarial":
            expected |= {(v, f"link:{e.name}", "adversarial", e.net) for v in e.parents}
        else:
            expected |= {(p, e.child, e.kind, e.net) for p in e.parents}
    got = {(a["tail"], a["head"], a["id"].split(":")[0], a["label"].split("\\n")[0]) for a in edges.values()}
    assert got == expected
    for a in edges.values():
        kind = a["id"].split(":")[0]
        assert a["style"] == ("dashed" if kind == "inference" else "solid")
        assert (a["color"] == ADVERSARIAL_COLOR) == (kind == "adversarial")
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
