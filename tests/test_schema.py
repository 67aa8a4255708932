"""`unigen schema`: a draft-07 JSON Schema that the shipped specs satisfy and mistakes do not."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import ROOT, SPECS

from unigen.spec.schema import spec_schema
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
    assert schema["definitions"]["Network"]["properties"]["arch"]["examples"] == registry.names("networks")
    assert schema["properties"]["family"]["examples"] == registry.names("families")
    assert "enum" not in json.dumps(schema["definitions"]["Edge"]["properties"]["dist"])  # plugins added later stay valid


def test_schema_cli_writes_file(cli, tmp_path):
    out = tmp_path / "unigen.schema.json"
    code, stdout, err = cli("schema", "-o", out)
    assert code == 0 and stdout == "" and "yaml-language-server: $schema=" in err
    assert json.loads(out.read_text())["title"] == "unigen spec"


def test_readme_shows_the_modeline():
    readme = (ROOT / "README.md").read_text()
    assert "# yaml-language-server: $schema=" in readme and "unigen schema -o" in readme
