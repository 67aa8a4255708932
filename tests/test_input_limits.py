"""Inputs that `validate` used to pass and training then refused, or that never returned: each is a
coded validation problem at its own path, reported with every other problem at once; override
values are bounded; overrides stand anywhere on the command line and their problems are located
there; plugins registering objects that are not of their kind are told so at registration."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

import unigen
from unigen import hookimpl
from unigen.api.kinds import Bound, Term
from unigen.api.registry import load_registry
from unigen.compiler.compiler import compile_file
from unigen.errors import CODES, UnigenError, dotted
from unigen.spec.source import MAX_OVERRIDE_CHARS, MAX_OVERRIDE_VALUES

VAE = ROOT / "specs" / "vae-digits.yaml"
VAE_TEXT = VAE.read_text(encoding="utf-8")
SMALL = ["networks.encoder.hidden=[8]", "networks.decoder.hidden=[8]", "train.batch_size=16", "train.eval_samples=50"]


def problems(registry, text: str, tmp: Path) -> list:
    """Every diagnostic of compiling `text` (as `tmp/spec.yaml`)."""
    with pytest.raises(UnigenError) as info:
        compile_file(write(tmp, text), [], registry)
    return info.value.diagnostics


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def edit(old: str, new: str, text: str = VAE_TEXT) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def coded(code: int, err: str, exit_code: int = 2) -> None:
    assert code == exit_code and "Traceback" not in err, (code, err)
    found = re.findall(r"(?:^|: )([A-Z]\d{3}) ", err, re.M)
    assert found and all(c in CODES for c in found), err


ENCODER = "  encoder: {arch: mlp, hidden: [256, 256], activation: relu}"
DECODER = "  decoder: {arch: mlp, hidden: [256, 256], activation: relu}"


# --------------------------------------------- 1. what training refused, refused by validate


@pytest.mark.parametrize(("old", "new", "code", "path", "says"), [
    (ENCODER, "  encoder: {arch: mlp, hidden: [-32]}", "G016", "networks.encoder.hidden.0", "greater than 0 (got -32)"),
    (ENCODER, "  encoder: {arch: mlp, hidden: [64, 0]}", "G016", "networks.encoder.hidden.1", "greater than 0 (got 0)"),
    (ENCODER, "  encoder: {arch: mlp, hidden: [true]}", "G016", "networks.encoder.hidden.0", "`true` is a boolean, and the option takes a number"),
    ("z: {prior: normal, shape: [8]}", "z: {prior: normal, shape: [100000000]}", "S002", "variables.z.shape", "100000000 elements"),
    ("z: {prior: normal, shape: [8]}", "z: {prior: normal, shape: [65536, 65536, 65536]}", "S002", "variables.z.shape", "281474976710656 elements"),
    ("z: {prior: normal, shape: [8]}", "z: {prior: normal, shape: [4294967296, 4294967296]}", "S002", "variables.z.shape.0", "less than 2147483648"),
    ("z: {prior: normal, shape: [8]}", "z: {prior: normal, shape: [true]}", "S002", "variables.z.shape.0", "`true`, a boolean"),
    ("steps: 3000", "steps: true", "S002", "train.steps", "invalid value `true`, a boolean; expected a number."),
    ("batch_size: 128", "batch_size: false", "S002", "train.batch_size", "`false`, a boolean"),
    ("seed: 0", "seed: false", "S002", "train.seed", "`false`, a boolean"),
    ("lr: 1e-3", "lr: true", "S002", "train.optim.lr", "`true`, a boolean"),
    ("unigen: 1", "unigen: true", "S002", "unigen", "`true`, a boolean"),
    ("terms: [elbo]}", "terms: [elbo], repeats: true}", "S002", "phases.0.repeats", "`true`, a boolean"),
    ("terms: [elbo]}", "terms: [{term: elbo, weight: true}]}", "S002", "phases.0.terms.0.weight", "`true`, a boolean"),
    (ENCODER, ENCODER[:-1] + ", ema: true}", "S002", "networks.encoder.ema", "`true`, a boolean"),
    (DECODER, DECODER.replace("decoder:", '"decoder\\n":'), "S002", "networks", "`'decoder\\n'` is not a valid name"),
    ("  z: {prior", '  "z ": {prior', "S002", "variables", "`'z '` is not a valid name"),
    ("{name: elbo,", '{name: "elbo\\n",', "S002", "phases.0.name", "expected a name of letters, digits and `_`"),
    ("name: vae-digits", 'name: "vae-digits\\n"', "S002", "name", "expected a name of letters, digits, `_`, `.` and `-`"),
], ids=["hidden-negative", "hidden-zero", "hidden-boolean", "shape-1e8", "shape-product", "shape-overflow", "shape-boolean", "steps-true",
        "batch-false", "seed-false", "lr-true", "version-true", "repeats-true", "weight-true", "ema-true", "network-newline", "variable-space",
        "phase-newline", "spec-name-newline"])
def test_limits_validate_refuses_what_training_would(registry, tmp_path, cli, old, new, code, path, says):
    diags = problems(registry, edit(old, new), tmp=tmp_path)
    assert [(d.code, dotted(d.path)) for d in diags].count((code, path)) == 1, "\n".join(map(str, diags))
    d = next(d for d in diags if (d.code, dotted(d.path)) == (code, path))
    assert says in d.message, d
    assert d.file == str(tmp_path / "spec.yaml") and d.line > 0  # located in the file
    assert "\n" not in str(d)  # a name with a newline is shown escaped: one line per problem
    # and compile-and-train stops there: nothing is written (`--steps` would override `steps: true`)
    steps = [] if path == "train.steps" else ["--steps", "2"]
    exit_code, _, err = cli("compile-and-train", tmp_path / "spec.yaml", *steps, "--out", tmp_path / "run", "--quiet", "--device", "cpu")
    coded(exit_code, err)
    assert f"{path}: {code} " in err and not (tmp_path / "run").exists()


def test_limits_every_problem_of_the_spec_at_once(registry, tmp_path):
    text = edit("steps: 3000", "steps: true")
    text = edit("z: {prior: normal, shape: [8]}", "z: {prior: normal, shape: [65536, 65536, 65536]}", text)
    text = edit(DECODER, DECODER.replace("decoder:", '"decoder\\t":'), text)
    text = edit("batch_size: 128", "batch_size: 0", text)
    diags = problems(registry, text, tmp=tmp_path)
    assert sorted((d.code, dotted(d.path)) for d in diags) == [("S002", "networks"), ("S002", "train.batch_size"), ("S002", "train.steps"), ("S002", "variables.z.shape")]
    # the options of every network at once, too
    text = edit(ENCODER, "  encoder: {arch: mlp, hidden: [-32]}", edit(DECODER, "  decoder: {arch: mlp, hidden: [0, false]}"))
    diags = problems(registry, text, tmp=tmp_path)
    assert sorted((d.code, dotted(d.path)) for d in diags) == [("G016", "networks.decoder.hidden.0"), ("G016", "networks.decoder.hidden.1"), ("G016", "networks.encoder.hidden.0")]


def test_limits_large_but_fitting_values_still_validate(registry, tmp_path):
    text = edit("z: {prior: normal, shape: [8]}", "z: {prior: normal, shape: [4096, 4096]}")  # 2^24 elements: the bound itself
    compile_file(write(tmp_path, text), ["networks.decoder.hidden=[1]", "train.steps=1e3", "train.optim.lr=1"], registry)  # 1e3 is a whole number


# --------------------------------------------------------- 4. network names torch keeps for itself


@pytest.mark.parametrize("name", ["parameters", "training", "to", "forward", "state_dict", "cuda", "_modules", "__class__"])
def test_limits_network_named_like_a_module_attribute_is_s002(registry, tmp_path, cli, name):
    text = VAE_TEXT.replace("decoder", name)  # the network, its edge and its phase
    diags = problems(registry, text, tmp=tmp_path)
    (d,) = diags
    assert (d.code, d.path) == ("S002", ("networks", name)) and f"network name `{name}`" in d.message and "rename the network" in d.hint
    code, _, err = cli("compile-and-train", tmp_path / "spec.yaml", "--steps", "2", "--out", tmp_path / "run", "--quiet", "--device", "cpu")
    coded(code, err)
    assert "KeyError" not in err and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------ 2. bounded override values


def _laughs(levels: int) -> str:
    chunks = ["&a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "[" + ", ".join(chunks) + "]"


@pytest.mark.parametrize(("value", "says", "not_says"), [
    (_laughs(9), f"expands to more than {MAX_OVERRIDE_VALUES} values through YAML aliases", None),  # a billion values
    ("[" + ", ".join(["1"] * (MAX_OVERRIDE_VALUES + 1)) + "]", f"holds more than {MAX_OVERRIDE_VALUES} values", "alias"),
    ("x" * (MAX_OVERRIDE_CHARS + 1), f"{MAX_OVERRIDE_CHARS + 1} characters long; expected at most {MAX_OVERRIDE_CHARS}", "alias"),
    ("[" * 5000 + "]" * 5000, "nests lists and mappings more than 64 levels deep", "alias"),
], ids=["billion-laughs", "many-values", "long", "deep"])
def test_limits_override_values_are_bounded(cli, value, says, not_says):
    start = time.monotonic()
    code, out, err = cli("validate", VAE, "train.seed=1", f"variables.x.shape={value}")
    assert time.monotonic() - start < 30
    coded(code, err)
    (line,) = err.splitlines()
    assert line.startswith("S004 override 2 `variables.x.shape=") and says in line, line
    assert "...`" in line or len(value) < 80  # the override is shown cut short
    assert not_says is None or not_says not in line


def test_limits_small_aliases_in_an_override_are_expanded(registry, tmp_path):
    program = compile_file(write(tmp_path, VAE_TEXT), ["networks.encoder.hidden=[&w 8, *w]", "networks.decoder.hidden=&h [16]"], registry).program
    assert program.networks["encoder"].options.hidden == [8, 8] and program.networks["decoder"].options.hidden == [16]


# ----------------------------------------------------- 3. overrides anywhere, located on the command line


def test_limits_overrides_after_options_and_between_them(cli, tmp_path):
    code, out, err = cli("compile-and-train", VAE, "--steps", "2", "train.seed=7", "--quiet", *SMALL[:2], "--out", tmp_path / "run", "--device", "cpu", *SMALL[2:])
    assert code == 0, err
    resolved = yaml.safe_load((tmp_path / "run" / "spec.resolved.yaml").read_text())
    assert resolved["train"]["seed"] == 7 and resolved["train"]["steps"] == 2 and resolved["networks"]["encoder"]["hidden"] == [8]


def test_limits_bad_override_values_are_located_on_the_command_line(cli, tmp_path):
    code, _, err = cli("compile-and-train", VAE, "--steps", "3", "train.seed=1", "train.seed=abc", "--out", tmp_path / "run", "phases.elbo.repeats=0", "networks.encoder.hidden=[-1]")
    coded(code, err)
    lines = err.splitlines()
    assert lines[0] == "override 2 `train.seed=abc`: train.seed: S002 invalid value 'abc'; expected a valid integer. Hint: write a whole number."
    assert lines[1].startswith("override 3 `phases.elbo.repeats=0`: phases.0.repeats: S002 invalid value 0")
    assert lines[2] == "2 problems found."  # the network's options are checked once the spec is valid
    assert str(VAE) not in err and not (tmp_path / "run").exists()
    code, _, err = cli("validate", VAE, "networks.encoder.hidden=[-1]", "variables.z={prior: normal, shape: [0]}")
    coded(code, err)
    assert err.splitlines() == ["override 2 `variables.z={prior: normal, shape: [0]}`: variables.z.shape.0: S002 invalid value 0; expected a number greater than 0. Hint: use a positive number."]
    code, _, err = cli("validate", VAE, "networks.encoder.hidden=[-1]")
    coded(code, err)
    assert err.startswith("override 1 `networks.encoder.hidden=[-1]`: networks.encoder.hidden.0: G016 ")
    # a problem in the file stays at its line, beside one on the command line
    code, _, err = cli("validate", write(tmp_path, edit("steps: 3000", "steps: true")), "train.seed=-1")
    coded(code, err)
    assert re.match(r"^\S+spec\.yaml:\d+:3: train\.steps: S002 .*\noverride 1 `train\.seed=-1`: train\.seed: S002 ", err), err


def test_limits_command_line_mistakes_are_coded(cli, capsys):
    code, _, err = cli("validate", VAE, "train.seed=1", "train.steps")  # a word with no `=`: an override, S004
    coded(code, err)
    assert "S004 override `train.steps` is not `dotted.key=value`, `+key=value`, `++key=value` or `~key`." in err
    for args, says in ((["compile-and-train", VAE, "--steps", "abc", "train.seed=1"], "argument --steps: invalid value 'abc'; expected a whole number of steps"),
                       (["compile-and-train", VAE, "train.seed=1", "--steps", "0"], "argument --steps: invalid value 0; expected a whole number greater than 0"),
                       (["compile-and-train", VAE, "train.seed=1", "--bogus"], "unrecognized arguments: --bogus"),
                       (["validate"], "the following arguments are required: spec")):
        with pytest.raises(SystemExit) as info:
            cli(*args)
        err = capsys.readouterr().err
        assert info.value.code == 2 and "Traceback" not in err
        assert re.search(r"error: S005 " + re.escape(says) + r".* Hint: see `unigen", err), err


# ---------------------------------------------------- 5. registered objects that are not of their kind


class Fine(Term):
    doc = "zero"

    def bind(self, site):
        return Bound(lambda ctx: ctx.q["x"].sum() * 0, "0", traces=frozenset("q"))


class Careless:
    __name__ = "careless"

    @hookimpl
    def unigen_register_terms(self, register):
        register("five", 5)  # not a term
        register("zero", Fine())  # the rest of the plugin keeps working


def test_limits_plugin_registering_a_non_term_is_p006_and_the_rest_work(tmp_path):
    reg = load_registry(extra=[Careless()])
    (d,) = [d for d in reg.problems if d.code.startswith("P")]
    assert d.code == "P006"
    assert d.message.startswith("plugin `careless` (<local>) registered term `five` as an object of type `int`, which is not a term: it has no method `bind`")
    assert "UNIGEN_BLOCK_PLUGINS=careless" in d.hint
    assert not reg.has("terms", "five") and reg.has("terms", "zero") and reg.has("terms", "elbo")
    path = write(tmp_path, edit("terms: [elbo]}", "terms: [elbo, zero]}"))
    assert compile_file(path, SMALL, reg).program.phases[0].terms[1].term == "zero"
    with pytest.raises(UnigenError) as info:
        compile_file(write(tmp_path, edit("terms: [elbo]}", "terms: [elbo, five]}")), [], reg)
    (g,) = info.value.diagnostics
    assert g.code == "G001" and "unknown term `five`" in g.message and "careless" in g.hint  # its plugin failed, and says so


@pytest.mark.parametrize(("spec", "override", "path"), [
    ("made-digits", "networks.made.hidden=[0]", "networks.made.hidden.0"),
    ("realnvp-ring", "networks.flow.hidden=[64, 0]", "networks.flow.hidden.1"),
    ("cogan-digits", "networks.g.shared_hidden=[-4]", "networks.g.shared_hidden.0"),
])
def test_every_architectures_widths_must_be_positive(spec: str, override: str, path: str, registry) -> None:
    diags = unigen.validate(ROOT / "specs" / f"{spec}.yaml", [override])
    assert [(d.code, dotted(d.path)) for d in diags] == [("G016", path)]
    assert "greater than 0" in diags[0].message
