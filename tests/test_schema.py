"""`unigen schema`: a draft-07 JSON Schema that the shipped specs satisfy and mistakes do not."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, SPECS

from unigen.spec.schema import NULL_ONLY, _near, find_schema, schema_reference, spec_schema, written_hint
from unigen.spec.source import load_yaml


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_schema_is_valid_draft_07_with_local_definitions(registry):
    schema = spec_schema(registry)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    assert "$defs" not in json.dumps(schema)  # a 2019-09 keyword; draft-07 has `definitions`
    refs = set(_refs(schema))
    assert refs and all(r.startswith("#/definitions/") and r.split("/")[-1] in schema["definitions"] for r in refs)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_schema_accepts_every_shipped_spec(spec, registry):
    doc, _ = load_yaml(spec.read_text(), str(spec))
    jsonschema.Draft7Validator(spec_schema(registry)).validate(doc)


def test_schema_rejects_mistakes_an_editor_should_underline(registry):
    validator = jsonschema.Draft7Validator(spec_schema(registry))
    doc, _ = load_yaml((ROOT / "specs" / "gan-ring.yaml").read_text(), "gan-ring.yaml")
    doc["netwroks"] = doc.pop("networks")
    doc["phases"][0]["repeats"] = 0
    messages = sorted(e.message for e in validator.iter_errors(doc))
    assert any("'netwroks' was unexpected" in m for m in messages)
    assert not any("'networks' is a required property" in m for m in messages)  # `family: gan` fills them in
    assert any("0 is less than or equal to the minimum of 0" in m for m in messages)  # repeats > 0
    doc.pop("family")
    messages = sorted(e.message for e in validator.iter_errors(doc))
    assert any("'networks' is a required property" in m for m in messages)  # without a family, the model is required


def test_schema_offers_registered_names_as_completions(registry):
    schema = spec_schema(registry)
    arch = schema["definitions"]["Network"]["properties"]["arch"]
    known, other = arch["anyOf"]
    assert known["enum"] == registry.names("networks")
    assert known["enumDescriptions"][known["enum"].index("mlp")] == registry.get("networks", "mlp").doc
    assert "options: `hidden`, `activation`" in known["markdownEnumDescriptions"][known["enum"].index("mlp")]
    assert other["type"] == "string" and "enum" not in other  # plugins added later stay valid
    assert schema["properties"]["family"]["anyOf"][0]["enum"] == registry.names("families")
    priors = schema["definitions"]["Variable"]["properties"]["prior"]["anyOf"][0]["enum"]
    assert "normal" in priors and "deterministic" not in priors and "autoregressive" not in priors  # a learned density is a mapping


def _leaves(error):
    """An error, or where an `anyOf` failed deeper in one of its alternatives, the errors there."""
    deeper = [c for c in error.context or [] if len(c.absolute_path) > len(error.absolute_path)]
    if not deeper:
        yield error
    for c in deeper:
        yield from _leaves(c)


def _errors(validator, doc) -> dict[tuple, list[str]]:
    """The messages of the errors in `doc`, by the path they are at (as an editor marks them)."""
    out: dict[tuple, list[str]] = {}
    for e in validator.iter_errors(doc):
        for leaf in _leaves(e):
            out.setdefault(tuple(leaf.absolute_path), []).append(leaf.message)
    return out


@pytest.fixture(scope="module")
def gan(registry):
    validator = jsonschema.Draft7Validator(spec_schema(registry))
    doc, _ = load_yaml((ROOT / "specs" / "gan-ring.yaml").read_text(), "gan-ring.yaml")
    assert _errors(validator, doc) == {}
    return validator, doc


@pytest.mark.parametrize(("where", "value", "says"), [
    (("networks", "generator", "hidden"), "many", "'many' is not of type 'array'"),
    (("networks", "generator", "activation"), "relux", "'relux' is not one of ['relu'"),
    (("networks", "generator", "dropuot"), 0.1, "Additional properties are not allowed ('dropuot' was unexpected)"),
    (("networks", "generator", "arch"), "mpl", "'mpl' is not valid under any of the given schemas"),  # a misspelling of `mlp`
    (("networks", "generator", "arch"), "MLP", "'MLP' is not valid under any"),
    (("data", "n_train"), 0, "0 is less than or equal to the minimum of 0"),
    (("data", "source"), "ring2e", "'ring2e' is not valid under any"),
    (("edges", 1, "options", "r1"), -1, "-1 is less than the minimum of 0"),
    (("edges", 1, "objective"), "nonsaturatin", "is not valid under any"),
    (("edges", 0, "dist"), "uniform", "'uniform' is not valid under any"),  # registered, but a prior only
    (("phases", 0, "terms", 0), "adversarial.dd", "is not valid under any"),
    (("phases", 0, "optim", "amsgrad"), 3, "3 is not of type 'boolean'"),  # adam: the optimizer meant when `kind` is left out
    (("phases", 0, "optim", "betas"), [0.5], "[0.5] is too short"),
    (("variables", "z", "prior"), "deterministic", "is not valid under any"),
])
def test_schema_checks_each_kinds_options_and_names(gan, where, value, says):
    validator, doc = gan
    doc = copy.deepcopy(doc)
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    if where[:2] == ("phases", 0) and where[2] == "optim":
        node.pop("kind")
    errors = _errors(validator, doc)
    path = where[:-1] if "additional" in says.lower() else where
    assert list(errors) == [path] and any(says in m for m in errors[path]), errors


@pytest.mark.parametrize(("where", "value"), [
    (("networks", "generator"), {"arch": "resmlp", "width": 3}),  # a plugin's, installed after the schema was written
    (("networks", "generator"), {"arch": "mlp", "hidden": [], "out_activation": "tanh", "ema": 0.999, "trainable": False}),
    (("variables", "z", "prior"), None),
    (("family",), "rae"),  # three letters, one changed: a name of its own, not a slip
    (("edges", 0, "dist"), "normal"),
    (("edges", 0, "options"), {}),
    (("phases", 0, "terms"), ["adversarial.d@adv_x", "my_term", "my_term@adv_x", {"term": "elbo", "options": {"beta": 2.0}}]),
    (("phases", 0, "optim"), {"lr": 0.1, "kind": "sgd", "momentum": 0.9, "nesterov": True}),
    (("metrics",), ["modes", {"metric": "quality", "options": {"samples": 100}}, "my_metric"]),
])
def test_schema_accepts_what_unigen_may_accept(gan, where, value):
    validator, doc = gan
    doc = copy.deepcopy(doc)
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    assert _errors(validator, doc) == {}


def test_schema_options_of_a_kind_under_options(gan):
    validator, doc = gan
    doc = copy.deepcopy(doc)
    doc["phases"][0]["terms"] = [{"term": "elbo", "options": {"beta": "x", "bta": 1}}]
    doc["edges"][0] = {**doc["edges"][0], "dist": "bernoulli", "options": {"x": 1}}  # bernoulli takes no options
    errors = _errors(validator, doc)
    assert set(errors) == {("phases", 0, "terms", 0, "options"), ("phases", 0, "terms", 0, "options", "beta"), ("edges", 0, "options")}, errors
    assert "'bta' was unexpected" in errors[("phases", 0, "terms", 0, "options")][0] and "'x' was unexpected" in errors[("edges", 0, "options")][0]


def test_schema_completes_no_null(registry):
    text = json.dumps(spec_schema(registry))
    assert '"default": null' not in text and '{"type": "null"}' not in text and "prefixItems" not in text
    ema = spec_schema(registry)["definitions"]["Network"]["properties"]["ema"]
    assert "default" not in ema and ema["anyOf"][-1] == NULL_ONLY
    jsonschema.Draft7Validator(NULL_ONLY).validate(None)
    assert not jsonschema.Draft7Validator(NULL_ONLY).is_valid("null") and not jsonschema.Draft7Validator(NULL_ONLY).is_valid(0)


@pytest.mark.parametrize(("name", "slips", "others"), [
    ("mlp", ["mpl", "MLP", "Mlp"], ["mlpp", "rlp", "ml", "resmlp"]),
    ("vae", ["vea", "VAE"], ["rae", "vaee"]),
    ("elbo", ["elbbo", "elb", "elob", "Elbo", "elbi"], ["el", "my_elbo", "elbo_iw"]),
    ("adversarial.d", ["adversarial_d", "adversarial.dd"], ["adversarialxdd"]),
])
def test_near_names_are_the_slips_of_one_keystroke(name, slips, others):
    pattern = re.compile("^(?:" + "|".join(sorted(_near(name))) + ")$")
    assert all(pattern.match(s) for s in slips) and not any(pattern.match(o) for o in others)
    assert pattern.match(name)


def test_schema_cli_writes_file(cli, tmp_path):
    out = tmp_path / "unigen.schema.json"
    code, stdout, err = cli("schema", "-o", out)
    assert code == 0 and stdout == "" and "yaml-language-server: $schema=" in err
    assert json.loads(out.read_text())["title"] == "unigen spec"


def test_written_hint_names_the_schema_from_the_specs_folder(tmp_path):
    assert schema_reference(tmp_path / "unigen.schema.json", tmp_path / "specs") == "../unigen.schema.json"
    assert schema_reference(tmp_path / "build" / "s.json", tmp_path / "specs" / "gan") == "../../build/s.json"
    hint = written_hint(tmp_path / "unigen.schema.json", tmp_path)
    assert "`# yaml-language-server: $schema=unigen.schema.json`" in hint and "a spec in this folder" in hint
    (tmp_path / "specs").mkdir()
    hint = written_hint(Path("unigen.schema.json"), tmp_path)  # `-o` relative to the working directory
    assert hint.startswith("wrote unigen.schema.json;") and "for a spec in `specs/`: `# yaml-language-server: $schema=../unigen.schema.json`" in hint
    assert "$schema=../build/unigen.schema.json`" in written_hint(Path("build/unigen.schema.json"), tmp_path)


def test_new_writes_the_modeline_from_the_specs_folder(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("new", "--family", "vae", "-o", "specs/vae/mine.yaml")
    lines = (tmp_path / "specs" / "vae" / "mine.yaml").read_text().splitlines()
    modeline = lines.index("# yaml-language-server: $schema=../../unigen.schema.json")
    assert code == 0 and lines[modeline + 1].startswith("unigen: 1")  # the header's last line: editors read it there
    assert "does not exist yet: `unigen schema -o unigen.schema.json` writes it" in err
    assert find_schema(tmp_path / "specs" / "vae") == tmp_path / "unigen.schema.json"
    (tmp_path / "specs" / "unigen.schema.json").write_text("{}")  # the nearest above the spec is the one named
    code, _, err = cli("new", "--family", "vae", "-o", "specs/vae/other.yaml")
    assert "# yaml-language-server: $schema=../unigen.schema.json\n" in (tmp_path / "specs" / "vae" / "other.yaml").read_text()
    assert code == 0 and "does not exist" not in err
    code, out, _ = cli("new", "--family", "vae")
    assert "# yaml-language-server: $schema=unigen.schema.json\n" in out  # stdout: from the working directory


def test_readme_shows_the_modeline():
    readme = (ROOT / "README.md").read_text()
    assert "# yaml-language-server: $schema=" in readme and "unigen schema -o" in readme
