"""Loading specs: safe YAML with positions, the spec language, overrides and the schema."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from unigen.errors import Diagnostic, UnigenError, dotted
from unigen.spec.load import parse_spec
from unigen.spec.models import Spec
from unigen.spec.source import MAX_VALUES, load_yaml

GAN = """\
unigen: 1
name: gan-ring
data: {source: ring2d}
variables:
  x: {observed: true, shape: [2]}
  z: {prior: normal, shape: [16]}
networks:
  generator: {arch: mlp, hidden: [32]}
  discriminator: {arch: mlp, hidden: [32]}
edges:
  - {generative: z -> x, net: generator, dist: deterministic}
  - {adversarial: x, net: discriminator, objective: nonsaturating}
phases:
  - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
  - {name: generator, update: [generator], terms: [adversarial.g]}
train:
  steps: 100
  batch_size: 64
  optim: {kind: adam, lr: 1e-3}
"""


def problems(text: str, overrides: list[str] | None = None, registry=None) -> list[Diagnostic]:
    with pytest.raises(UnigenError) as info:
        parse_spec(textwrap.dedent(text), "spec.yaml", overrides, registry)
    return info.value.diagnostics


def one(diags: list[Diagnostic], code: str) -> Diagnostic:
    found = [d for d in diags if d.code == code]
    assert len(found) == 1, "\n".join(map(str, diags))
    return found[0]


def assert_clean_failure(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err


# ------------------------------------------------------------------ YAML syntax


def test_yaml_syntax_error_reports_y001_with_file_line_col(cli, write_spec):
    path = write_spec(GAN.replace("data: {source: ring2d}", "data: {source: ring2d"))
    code, out, err = cli("validate", path)
    assert_clean_failure(code, err)
    assert out == ""
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: Y001 YAML syntax error", err), err
    # The parser notices at `variables:` on line 4; the message says where the brace opened.
    assert f"{path}:4:10: " in err
    assert "flow mapping that starts at line 3, column 7" in err
    assert "Hint:" in err


def test_yaml_tab_indentation_gets_a_tab_hint(cli, write_spec):
    path = write_spec("unigen: 1\nname: gan-ring\ntrain:\n\tsteps: 5\n")
    code, _, err = cli("validate", path)
    assert_clean_failure(code, err)
    assert f"{path}:4:1: Y001" in err
    assert "does not allow tabs" in err


def test_yaml_unterminated_quote_points_at_the_opening_quote():
    diag = one(problems('unigen: 1\nname: "gan-ring\n'), "Y001")
    assert "quoted scalar that starts at line 2, column 7" in diag.message
    assert (diag.file, diag.line) == ("spec.yaml", 3)


def test_yaml_second_document_is_y001():
    diag = one(problems("unigen: 1\nname: a\n---\nunigen: 1\n"), "Y001")
    assert diag.line == 3
    assert "single document" in diag.message
    assert "`---`" in diag.hint


def test_yaml_control_character_is_y001_located():
    diag = one(problems("unigen: 1\nname: a\x01b\n"), "Y001")
    assert (diag.line, diag.col) == (2, 8)
    assert "'\\x01'" in diag.message


# -------------------------------------------------------------- duplicate keys


def test_yaml_duplicate_key_is_y002_at_the_second_key(cli, write_spec):
    path = write_spec(GAN.replace("name: gan-ring\n", "name: gan-ring\ndescription: a\nname: again\n"))
    code, _, err = cli("validate", path)
    assert_clean_failure(code, err)
    assert f"{path}:4:1: Y002 duplicate key `name`" in err
    assert "already given at line 2" in err


def test_yaml_duplicate_key_in_a_nested_flow_mapping():
    diag = one(problems(GAN.replace("x: {observed: true, shape: [2]}", "x: {observed: true, shape: [2], shape: [3]}")), "Y002")
    assert (diag.line, diag.col) == (5, 35)
    assert "`shape`" in diag.message and "line 5" in diag.message


def test_yaml_merge_key_can_be_overridden_without_y002():
    data, smap = load_yaml("base: &b {arch: mlp, hidden: [8]}\nnet: {<<: *b, hidden: [4]}\n")
    assert data["net"] == {"arch": "mlp", "hidden": [4]}
    assert smap.positions[("net", "hidden")] == (2, 15)
    diags = problems("base: &b {arch: mlp}\nnet: {<<: *b, hidden: [1], hidden: [2]}\n")
    assert [d.code for d in diags] == ["Y002"]


def test_yaml_merge_key_order_follows_yaml():
    data, _ = load_yaml("a: &a {x: 1, y: 2}\nb: &b {y: 3, z: 4}\nc: {<<: [*a, *b], z: 5}\n")
    assert data["c"] == {"x": 1, "y": 2, "z": 5}  # earlier merge sources win, explicit keys win over all


# ---------------------------------------------------------------- scalar types


def test_yaml_exponent_without_dot_is_a_float():
    spec, _, given = parse_spec(GAN, "spec.yaml")
    assert given["train"]["optim"]["lr"] == 0.001
    assert isinstance(given["train"]["optim"]["lr"], float)
    assert spec.train.optim.lr == pytest.approx(1e-3)
    data, _ = load_yaml("a: 1e-3\nb: -2E+2\nc: 1_000\nd: 3\ne: .5\nf: '1e-3'\n")
    assert data == {"a": 0.001, "b": -200.0, "c": 1000, "d": 3, "e": 0.5, "f": "1e-3"}
    assert isinstance(data["b"], float) and isinstance(data["c"], int)


def test_yaml_only_true_and_false_are_booleans():
    data, _ = load_yaml("a: yes\nb: no\nc: off\nd: true\ne: FALSE\n")
    assert data == {"a": "yes", "b": "no", "c": "off", "d": True, "e": False}
    spec, _, _ = parse_spec(GAN.replace("name: gan-ring", "name: gan-ring\ndescription: no").replace("observed: true", "observed: yes"), "spec.yaml")
    assert spec.description == "no"  # text stays text
    assert spec.variables["x"].observed is True  # a boolean field still takes `yes`


# ----------------------------------------------------------------- empty files


@pytest.mark.parametrize("text", ["", "\n\n   \n", "# only a comment\n\n  # and another\n", "---\n", "\ufeff"], ids=["empty", "blank", "comments", "empty-document", "bom"])
def test_yaml_empty_file_is_y003(cli, write_spec, text):
    path = write_spec("x")
    path.write_text(text, encoding="utf-8")
    code, _, err = cli("validate", path)
    assert_clean_failure(code, err)
    assert f"{path}:1:1: Y003 the spec file is empty" in err
    assert "`family: <name>`" in err and "`unigen plugins` lists them" in err
    assert "unigen new" not in err  # no such command


def test_spec_not_a_mapping_is_s002():
    diag = one(problems("- unigen: 1\n- name: a\n"), "S002")
    assert "the spec is a list; expected a mapping" in diag.message
    assert (diag.line, diag.col) == (1, 1)


def test_load_missing_file_is_y004(cli, tmp_path):
    code, _, err = cli("validate", tmp_path / "nope.yaml")
    assert_clean_failure(code, err)
    assert "Y004 cannot read the spec: No such file or directory" in err
    assert "Hint: check the path." in err


def test_load_non_utf8_file_is_y004(cli, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    code, _, err = cli("validate", path)
    assert_clean_failure(code, err)
    assert "Y004" in err and "not UTF-8" in err and "save the file as UTF-8" in err


# ------------------------------------------------------------------ safe loading


def test_yaml_python_object_tag_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = f'!!python/object/apply:os.system ["touch {marker}"]'
    diag = one(problems(GAN.replace("name: gan-ring", f"name: {payload}")), "Y001")
    assert not marker.exists()
    assert "tag `!!python/object/apply:os.system` is not allowed" in diag.message
    assert (diag.line, diag.col) == (2, 7)
    assert diag.hint == "remove the tag."


@pytest.mark.parametrize(
    "value, tag",
    [
        ("!!python/object:collections.OrderedDict {a: 1}", "!!python/object:collections.OrderedDict"),
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("!!python/tuple [1, 2]", "!!python/tuple"),
        ("!custom text", "!custom"),
        ("!!set {a, b}", "!!set"),
    ],
)
def test_yaml_non_plain_tags_are_refused(value, tag):
    diag = one(problems(f"unigen: 1\nname: a\ndescription: {value}\n"), "Y001")
    assert f"tag `{tag}` is not allowed" in diag.message
    assert diag.line == 3


def test_yaml_recursive_alias_is_y001_not_a_crash():
    diag = one(problems("unigen: 1\nname: &a [*a]\n"), "Y001")
    assert "recursive alias" in diag.message
    assert diag.line == 2


def test_yaml_alias_expansion_is_bounded():
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    for i in range(1, 7):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    diag = one(problems("\n".join(lines) + "\n"), "Y001")
    assert f"more than {MAX_VALUES} values" in diag.message


def test_yaml_non_scalar_key_is_y001():
    diag = one(problems("unigen: 1\n? [a, b]\n: 1\n"), "Y001")
    assert "a key must be a plain name, not a list" in diag.message
    assert diag.line == 2


# -------------------------------------------------------------- spec language


def test_spec_unknown_top_level_key_suggests_the_known_one(cli, write_spec):
    path = write_spec(GAN.replace("networks:", "netwroks:"))
    code, _, err = cli("validate", path)
    assert_clean_failure(code, err)
    assert f"{path}:7:1: netwroks: S001 unknown key `netwroks`" in err
    assert "Hint: did you mean `networks`?" in err
    # One mistake, one message: the missing `networks` is the same typo.
    assert "S003" not in err
    assert "problems found" not in err


def test_spec_unknown_key_in_train_is_s001_with_path_and_suggestion():
    diag = one(problems(GAN.replace("  batch_size: 64", "  batch_sise: 64")), "S001")
    assert dotted(diag.path) == "train.batch_sise"
    assert (diag.line, diag.col) == (18, 3)
    assert diag.message == "unknown key `batch_sise` in `train`; expected one of its keys."
    assert diag.hint == "did you mean `batch_size`?"


def test_spec_unknown_key_in_a_phase_is_s001_with_path_and_suggestion():
    diag = one(problems(GAN.replace("terms: [adversarial.g]}", "terms: [adversarial.g], repeat: 5}")), "S001")
    assert dotted(diag.path) == "phases.1.repeat"
    assert diag.line == 15
    assert diag.hint == "did you mean `repeats`?"


def test_spec_unknown_key_in_a_term_mapping_is_the_only_problem_reported():
    diags = problems(GAN.replace("terms: [adversarial.d]", "terms: [{term: adversarial.d, wieght: 2}]"))
    assert [d.code for d in diags] == ["S001"]  # not also "should be a string"
    assert dotted(diags[0].path) == "phases.0.terms.0.wieght"
    assert diags[0].hint == "did you mean `weight`?"


def test_spec_wrong_type_is_s002_at_the_key_with_line_and_col(cli, write_spec):
    path = write_spec(GAN.replace("steps: 100", "steps: many"))
    code, _, err = cli("validate", path)
    assert_clean_failure(code, err)
    assert f"{path}:17:3: train.steps: S002 invalid value 'many'; expected a valid integer. Hint: write a whole number." in err


@pytest.mark.parametrize(
    "old, new, path, message",
    [
        ("steps: 100", "steps: 0", "train.steps", "invalid value 0; expected a number greater than 0"),
        ("lr: 1e-3", "lr: -1e-3", "train.optim.lr", "expected a number greater than 0"),
        ("observed: true", "observed: maybe", "variables.x.observed", "invalid value 'maybe'; expected a valid boolean"),
        ("shape: [2]", "shape: 2", "variables.x.shape", "invalid value 2; expected a valid list"),
        ("name: gan-ring", "name: gan ring", "name", "expected a name of letters, digits, `_`, `.` and `-`"),
        ("unigen: 1", "unigen: 2", "unigen", "invalid value 2; expected 1"),
        ("{adversarial: x,", "{adversarial: 5,", "edges.1.adversarial", "invalid value 5; expected a string or a list of strings"),
        ("  z: {prior", "  9z: {prior", "variables", "`9z` is not a valid name"),
    ],
)
def test_spec_invalid_values_are_s002_with_what_was_expected(old, new, path, message):
    assert old in GAN
    diags = problems(GAN.replace(old, new))
    assert len(diags) == 1, "\n".join(map(str, diags))
    assert diags[0].code == "S002"
    assert dotted(diags[0].path) == path
    assert message in diags[0].message


def test_spec_edge_with_two_kinds_is_s002():
    diag = one(problems(GAN.replace("{generative: z -> x,", "{generative: z -> x, inference: x -> z,")), "S002")
    assert dotted(diag.path) == "edges.0"
    assert "exactly one of `generative`, `inference`, `adversarial`, `undirected`; found generative, inference" in diag.message


def test_spec_missing_required_key_is_s003_located_at_its_parent():
    diags = problems(GAN.replace("  - {generative: z -> x, net: generator, dist: deterministic}", "  - {generative: z -> x, dist: deterministic}"))
    diag = one(diags, "S003")
    assert dotted(diag.path) == "edges.0.net"
    assert "missing required key `net` in `edges.0` (network computing this edge; `g.a` for port `a` of a network with several ports)" in diag.message
    assert (diag.line, diag.col) == (11, 5)
    assert diag.hint == "add `net: ...` here."


def test_spec_missing_top_level_key_is_s003(cli, write_spec):
    path = write_spec(GAN.replace("name: gan-ring\n", ""))
    code, _, err = cli("validate", path)
    assert_clean_failure(code, err)
    assert f"{path}:1:1: name: S003 missing required key `name`." in err


def test_spec_every_problem_is_reported_at_once(cli, write_spec):
    text = GAN.replace("networks:", "netwroks:").replace("steps: 100", "steps: many").replace("observed: true", "observed: maybe")
    diags = problems(text)
    assert sorted((d.code, dotted(d.path)) for d in diags) == [("S001", "netwroks"), ("S002", "train.steps"), ("S002", "variables.x.observed")]
    code, _, err = cli("validate", write_spec(text))
    assert_clean_failure(code, err)
    assert err.count("spec.yaml:") == 3
    assert "3 problems found." in err


# ------------------------------------------------------------------- overrides


def test_override_sets_a_value():
    spec, _, given = parse_spec(GAN, "spec.yaml", ["train.steps=5", "train.optim.lr=2e-4", "description=hello world"])
    assert spec.train.steps == 5
    assert spec.train.optim.lr == pytest.approx(2e-4)
    assert spec.description == "hello world"
    assert given["train"]["steps"] == 100  # the document as written is kept


def test_override_of_a_list_item_by_name_and_by_index():
    spec, _, _ = parse_spec(GAN, "spec.yaml", ["phases.generator.repeats=2", "phases.0.every=3"])
    by_name = {p.name: p for p in spec.phases}
    assert by_name["generator"].repeats == 2
    assert by_name["discriminator"].every == 3
    assert by_name["discriminator"].repeats == 1


def test_override_of_an_unknown_key_is_s004_with_suggestion(cli, write_spec):
    diag = one(problems(GAN, ["train.stepz=5"]), "S004")
    assert diag.message == "override `train.stepz=5`: unknown key `stepz` in `train`; expected one of its keys."
    assert diag.hint == "did you mean `steps`?"
    code, _, err = cli("validate", write_spec(GAN), "train.stepz=5")
    assert_clean_failure(code, err)
    assert "S004 override `train.stepz=5`" in err and "did you mean `steps`?" in err


@pytest.mark.parametrize(
    "override, message, hint",
    [
        ("phases.genrator.repeats=2", "no item `genrator` in `phases`; expected an index below 2 or an item's `name`.", "did you mean `generator`?"),
        ("phases.7.repeats=2", "no item `7` in `phases`", "choose one of: `discriminator`, `generator`."),
        ("trian.steps=5", "unknown key `trian` in the spec", "did you mean `train`?"),
        ("train.steps.x=5", "`train.steps` is 100, not a mapping, so it has no key `x`.", "override `train.steps` itself"),
        ("train.steps", "is not `dotted.key=value`", "write e.g. `train.steps=200`."),
    ],
)
def test_override_bad_paths_are_s004(override, message, hint):
    diag = one(problems(GAN, [override]), "S004")
    assert message in diag.message
    assert hint in diag.hint


def test_override_errors_are_all_reported():
    diags = problems(GAN, ["train.stepz=5", "nmae=x", "train.steps=7"])
    assert [d.code for d in diags] == ["S004", "S004"]


def test_override_value_is_checked_like_the_file():
    diag = one(problems(GAN, ["train.steps=-1"]), "S002")
    assert dotted(diag.path) == "train.steps"
    assert "invalid value -1" in diag.message


def test_override_value_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    diags = problems(GAN, [f'description=!!python/object/apply:os.system ["touch {marker}"]', "train.steps=!!python/name:os.system"])
    assert not marker.exists()
    # Not constructed: the text stays text, and `steps` then fails as a string would.
    assert [(d.code, dotted(d.path)) for d in diags] == [("S002", "train.steps")]


def test_override_into_a_list_the_family_fills_in(registry):
    text = "unigen: 1\nname: tiny\nfamily: vae\n"
    spec, _, _ = parse_spec(text, "spec.yaml", ["phases.elbo.repeats=2"], registry)
    assert spec.phases[0].repeats == 2
    diag = one(problems(text, ["phases.elbx.repeats=2"], registry), "S004")
    assert "no item `elbx` in `phases`" in diag.message and "did you mean `elbo`?" in diag.hint
    # Without the family to fill it in, the list is simply not there.
    diag = one(problems(text.replace("family: vae\n", ""), ["phases.elbo.repeats=2"], registry), "S004")
    assert "`phases` is not in the spec file" in diag.message
    assert "`phases=[...]`" in diag.hint
    spec, _, _ = parse_spec(text, "spec.yaml", ["networks.encoder.hidden=[16]"], registry)
    assert spec.networks["encoder"].options["hidden"] == [16]


def test_override_with_a_mapping_merges_into_the_mapping_there():
    spec, _, _ = parse_spec(GAN, "spec.yaml", ["train={steps: 5}", "train.optim={lr: 2e-3, betas: [0.5, 0.9]}"])
    assert spec.train.steps == 5 and spec.train.optim.lr == pytest.approx(2e-3)
    assert spec.train.batch_size == 64 and spec.train.optim.kind == "adam"  # the rest of `train` stays as written
    assert spec.train.optim.options["betas"] == [0.5, 0.9]
    # a list or a scalar still replaces
    spec, _, _ = parse_spec(GAN, "spec.yaml", ["networks.generator.hidden=[8]"])
    assert spec.networks["generator"].options["hidden"] == [8]


def test_override_deletes_with_tilde_and_adds_with_plus():
    spec, _, _ = parse_spec(GAN, "spec.yaml", ["~train.optim", "+train.optim={kind: sgd, lr: 0.5}"])
    assert (spec.train.optim.kind, spec.train.optim.lr, spec.train.optim.options) == ("sgd", 0.5, {})
    spec, _, _ = parse_spec(GAN, "spec.yaml", ["+train.optim.betas=[0.5, 0.9]", "~train.optim.betas=[0.5, 0.9]", "+networks.generator.dropout=0.1"])
    assert "betas" not in spec.train.optim.options and spec.networks["generator"].options["dropout"] == 0.1
    spec, _, _ = parse_spec(GAN, "spec.yaml", ["++train.steps=9", "++networks.discriminator.dropout=0.2"])
    assert spec.train.steps == 9 and spec.networks["discriminator"].options["dropout"] == 0.2
    spec, _, _ = parse_spec(GAN, "spec.yaml", ["~phases.generator"])
    assert [p.name for p in spec.phases] == ["discriminator"]


@pytest.mark.parametrize(
    "override, message, hint",
    [
        ("+train.steps=5", "`train.steps` is already set (to 100); `+` adds only a key that is not there.", "set it with `train.steps=...` (or `++train.steps=...`)."),
        ("~train.best", "`train.best` is not set, so there is nothing to delete.", "unigen show-config SPEC"),
        ("~train.steps=7", "`train.steps` holds 100, not 7, so it is not deleted.", "write `~train.steps` to delete it whatever it holds."),
        ("~nothing.here", "unknown key `nothing` in the spec; expected one of its keys.", "choose one of: `data`"),
        ("+phases.0=[]", "`phases.0` is an item of a list, which `+` cannot add.", "override the whole list: `phases=[...]`."),
        ("+", "is not `dotted.key=value`, `+key=value`, `++key=value` or `~key`.", "write e.g. `train.steps=200`."),
    ],
)
def test_override_add_and_delete_mistakes_are_s004(override, message, hint):
    diag = one(problems(GAN, [override]), "S004")
    assert message in diag.message and diag.message.startswith(f"override `{override}`: ") == (override != "+")
    assert hint in diag.hint


def test_added_key_a_strict_section_does_not_have_is_located_on_the_command_line(cli, write_spec):
    code, _, err = cli("validate", write_spec(GAN), "train.steps=3", "+train.stepz=5")
    assert_clean_failure(code, err)
    assert "override 2 `+train.stepz=5`" in err and "S001" in err


# ----------------------------------------------------------- family locations


def test_sourcemap_problem_in_family_defaults_points_at_the_family_line(registry):
    from unigen.compiler.compiler import compile_spec

    text = "unigen: 1\nname: tiny\ndescription: digits as images\nfamily: vae\ndata: {source: digits, flatten: false}\n"
    spec, smap, _ = parse_spec(text, "spec.yaml", registry=registry)
    with pytest.raises(UnigenError) as info:
        compile_spec(spec, registry, smap)
    diag = one(info.value.diagnostics, "G012")
    assert dotted(diag.path) == "variables.x.shape"
    assert (diag.line, diag.col) == (4, 1)  # `variables` came from the family


# ---------------------------------------------------------------------- schema


def test_schema_prints_the_json_schema_of_spec(cli):
    code, out, err = cli("schema")
    assert code == 0, err
    schema = json.loads(out)
    assert '"$schema"' in out
    assert schema["$schema"].startswith("http://json-schema.org/")
    assert set(Spec.model_fields) <= set(schema["properties"])
    assert {"unigen", "name"} <= set(schema["required"])  # the model's parts are required unless a family fills them in
    assert schema["if"] == {"not": {"required": ["family"]}} and {"data", "variables", "networks", "phases"} <= set(schema["then"]["required"])  # `edges` may be empty
    assert "Phase" in schema["definitions"] and "repeats" in schema["definitions"]["Phase"]["properties"]


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_spec_that_is_no_regular_file_is_refused_before_reading(kind, tmp_path, cli):
    import os

    path = {"fifo": tmp_path / "spec.yaml", "device": Path("/dev/zero"), "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # nothing ever writes to it: reading it would block forever
    code, out, err = cli("validate", str(path))
    assert code != 0
    what = {"fifo": "a fifo (named pipe)", "device": "a device", "directory": "a directory"}[kind]
    assert f"Y004 cannot read the spec: `{path}` is {what}; expected a YAML file." in err


def test_spec_file_larger_than_a_mebibyte_is_refused(tmp_path, cli):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 110_000)  # 1.1 MB of comments
    code, out, err = cli("validate", str(path))
    assert code != 0 and "is larger than 1024 KiB; expected a spec of a few kB" in err


def test_spec_with_many_values_but_no_alias_is_not_told_about_aliases(tmp_path, cli):
    path = tmp_path / "many.yaml"
    path.write_text("unigen: 1\nname: many\nmetrics: [" + ", ".join(["a"] * 100_001) + "]\n")
    code, out, err = cli("validate", str(path))
    assert code != 0 and "the document holds more than 100000 values" in err and "alias" not in err
