"""What an editor shows with `unigen schema`'s JSON Schema: redhat's yaml-language-server (VS
Code's YAML extension) driven over its LSP protocol, for diagnostics at the lines of a spec's
mistakes and for completions of the registered kinds, their options and the terms.

Needs node and the npm package `yaml-language-server` (see tests/editor_lsp.py); skipped
without them."""

from __future__ import annotations

import json
import textwrap

import pytest
from editor_lsp import LanguageServer, missing_reason, server_command

from unigen.spec.schema import SCHEMA_FILE, spec_schema

COMMAND = server_command()
pytestmark = pytest.mark.skipif(COMMAND is None, reason=missing_reason() if COMMAND is None else "")

# The files the settings associate with the schema, as VS Code's `yaml.schemas` does.
BY_SETTINGS = "*.checked.yaml"

SPEC = textwrap.dedent("""\
    unigen: 1
    name: mistakes
    family: gan
    data: {source: ring2d}
    networks:
      generator: {arch: mlp, hidden: many, activation: relu}
      discriminator:
        arch: mpl
        hidden: [128, 128]
      critic: {arch: mlp, dropuot: 0.1, activation: relux}
      helper: {arch: resmlp, width: 3}
    edges:
      - {generative: z -> x, net: generator, dist: deterministic}
      - {adversarial: x, net: discriminator, objective: nonsaturating}
    phases:
      - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
      - {name: generator, update: [generator], terms: [adversarial.g@adv_x], optim: {kind: adam, lr: 2e-4}}
    trian: {steps: 100}
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry):
    root = tmp_path_factory.mktemp("editor")
    (root / SCHEMA_FILE).write_text(json.dumps(spec_schema(registry)))
    ls = LanguageServer(COMMAND, root, {"schemas": {(root / SCHEMA_FILE).as_uri(): [BY_SETTINGS]}})
    try:
        yield ls, root
    finally:
        ls.close()


def _line(text: str, needle: str) -> int:
    """The 0-based line of the first line holding `needle`."""
    return next(i for i, line in enumerate(text.splitlines()) if needle in line)


def _by_line(diags) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for d in diags:
        out.setdefault(d["range"]["start"]["line"], []).append(d["message"])
    return out


def test_mistakes_are_marked_at_their_lines(server):
    ls, root = server
    uri = ls.open(root / "mistakes.checked.yaml", SPEC)
    expected = {_line(SPEC, "hidden: many"), _line(SPEC, "arch: mpl"), _line(SPEC, "dropuot"), _line(SPEC, "trian:")}
    found = _by_line(ls.diagnostics(uri, until=lambda d: expected <= set(_by_line(d))))
    # Nothing else: the plugin's architecture `resmlp` (not installed here), its options, the
    # `name@edge` term and the optimizer's options are no mistakes.
    assert set(found) == expected, found
    many = found[_line(SPEC, "hidden: many")]
    assert any('Expected "array"' in m for m in many), many
    assert any(m.startswith("expected a network architecture installed when this schema was written") and ", mlp," in m for m in found[_line(SPEC, "arch: mpl")])
    critic = " ".join(found[_line(SPEC, "dropuot")])
    assert "Property dropuot is not allowed" in critic and '"relu", "leaky_relu"' in critic  # the unknown option and the bad choice
    assert found[_line(SPEC, "trian:")] == ["Property trian is not allowed."]


def test_completions_at_a_kind_offer_the_registered_names_with_their_descriptions(server, registry):
    ls, root = server
    text = SPEC.replace("arch: mpl", "arch: ").replace("dist: deterministic}", "dist: }")
    uri = ls.open(root / "complete.checked.yaml", text)
    ls.diagnostics(uri, until=lambda d: bool(d))  # the schema is in use
    line = text.splitlines().index("    arch: ")
    items = ls.completion(uri, line, len("    arch: "))
    docs = {i["label"]: i.get("documentation") for i in items}
    assert set(registry.names("networks")) <= set(docs), sorted(docs)
    mlp = docs["mlp"]
    assert mlp["kind"] == "markdown" and registry.get("networks", "mlp").doc in mlp["value"] and "`hidden`" in mlp["value"]
    line = _line(text, "dist: }")
    items = ls.completion(uri, line, text.splitlines()[line].index("dist: ") + len("dist: "))
    labels = [i["label"] for i in items]
    edge_dists = [e.name for e in registry.all("distributions") if e.obj.can_be_edge]
    assert set(edge_dists) <= set(labels) and "uniform" not in labels, labels  # a prior-only distribution is not offered on an edge
    assert "null" not in labels and not any("null" in i.get("insertText", "") for i in items), items


def test_completions_of_a_kinds_options_show_their_defaults(server):
    ls, root = server
    text = SPEC.replace("    arch: mpl\n    hidden: [128, 128]\n", "    arch: mlp\n    \n")
    uri = ls.open(root / "options.checked.yaml", text)
    ls.diagnostics(uri, until=lambda d: bool(d))
    line = text.splitlines().index("    arch: mlp") + 1  # the empty line below it
    items = {i["label"]: i.get("insertText", "") for i in ls.completion(uri, line, 4)}
    assert {"hidden", "activation", "out_activation", "batchnorm", "dropout", "trainable", "ema"} <= set(items), items
    assert "${1:false}" in items["batchnorm"] and "256" in items["hidden"]
    assert "arch" not in items  # given already
    assert not any("null" in t for t in items.values()), items  # `ema` defaults to None: no `null` to fill in


def test_term_names_complete_in_the_short_form(server, registry):
    ls, root = server
    text = SPEC.replace("terms: [adversarial.d]", "terms: []")
    uri = ls.open(root / "terms.checked.yaml", text)
    ls.diagnostics(uri, until=lambda d: bool(d))
    line = _line(text, "terms: []")
    items = ls.completion(uri, line, text.splitlines()[line].index("terms: [") + len("terms: ["))
    labels = {i["label"] for i in items}
    assert set(registry.names("terms")) <= labels, labels
    elbo = next(i for i in items if i["label"] == "elbo")
    assert registry.get("terms", "elbo").doc in elbo["documentation"]["value"]


def test_a_starter_spec_in_a_subfolder_finds_the_schema_by_its_modeline(server, cli, monkeypatch):
    ls, root = server
    monkeypatch.chdir(root)
    code, _, err = cli("new", "--family", "gan", "-o", "specs/starter.yaml")
    assert code == 0, err
    text = (root / "specs" / "starter.yaml").read_text()
    assert "# yaml-language-server: $schema=../unigen.schema.json\n" in text
    broken = text.replace("generator: {arch: mlp, hidden: [128, 128]}", "generator: {arch: mlp, hidden: [128, 128], activation: relux}", 1)
    assert broken != text
    uri = ls.open(root / "specs" / "starter.yaml", broken)  # no setting names it: the modeline does
    bad = _line(broken, "activation: relux")
    assert bad in _by_line(ls.diagnostics(uri, until=lambda d: bad in _by_line(d))), "the modeline's schema was not applied"
    ls.change(uri, text)
    assert ls.diagnostics(uri, until=lambda d: not d) == []  # the starter as written is clean
