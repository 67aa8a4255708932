"""Authoring commands: `new`, `show-config` overrides, `validate` without building, `--dry-run`."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
import yaml
from conftest import ROOT

from unigen import hookimpl
from unigen.api.kinds import Bound, Site, Term
from unigen.api.registry import default_registry, load_registry
from unigen.compiler.compiler import compile_file
from unigen.tools.starter import starter_spec

FAMILIES = default_registry().names("families")


@pytest.mark.parametrize("family", FAMILIES)
def test_new_starter_validates_and_compiles_for_every_family(family, registry, tmp_path):
    text = starter_spec(family, registry, f"start-{family}")
    assert text.startswith(f"# A starter spec of the `{family}` family")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    doc = yaml.safe_load(text)
    assert doc["family"] == family and doc["name"] == f"start-{family}"
    # The starter writes the family's defaults out in full: completing it changes nothing.
    completed = registry.get("families", family).complete(dict(doc))
    for key in ("data", "variables", "networks", "edges", "phases"):
        assert completed[key] == doc[key]
    compiled = compile_file(path, registry=registry)
    assert [p.name for p in compiled.program.phases] == [p["name"] for p in doc["phases"]]
    # Without the family the written-out spec is complete by itself.
    path.write_text(text.replace(f"family: {family}\n", ""))
    assert compile_file(path, registry=registry).program.family is None


def test_new_cli_writes_and_refuses_to_overwrite(cli, tmp_path):
    out = tmp_path / "my-gan.yaml"
    code, _, err = cli("new", "--family", "gan", "-o", out)
    assert code == 0 and out.exists() and "--dry-run" in err
    assert yaml.safe_load(out.read_text())["name"] == "my-gan"
    code, _, err = cli("new", "--family", "gan", "-o", out)
    assert code == 2 and "U003" in err and "--force" in err
    assert cli("new", "--family", "gan", "-o", out, "--force")[0] == 0


def test_new_cli_unknown_family(cli):
    code, out, err = cli("new", "--family", "vea")
    assert code == 2 and "G001" in err and "unknown family `vea`" in err and "did you mean `vae`?" in err and out == ""


@pytest.fixture
def family_spec(write_spec):
    return write_spec("""
        unigen: 1
        name: fam
        family: vae
    """)


def test_show_config_overrides_reach_family_defaults(cli, family_spec):
    code, out, err = cli("show-config", family_spec, "phases.elbo.repeats=3", "networks.encoder.hidden=[64]", "train.steps=7")
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert doc["phases"][0]["repeats"] == 3
    assert doc["networks"]["encoder"]["hidden"] == [64] and doc["networks"]["decoder"]["hidden"] == [256, 256]
    assert doc["train"]["steps"] == 7


def test_show_config_bad_overrides_are_all_reported(cli, family_spec):
    code, out, err = cli("show-config", family_spec, "phases.elbox.repeats=2", "trian.steps=1")
    assert code == 2 and out == ""
    assert "did you mean `elbo`?" in err and "did you mean `train`?" in err and "2 problems found." in err


def test_show_config_override_on_plain_spec(cli):
    code, out, _ = cli("show-config", ROOT / "specs" / "gan-ring.yaml", "phases.generator.repeats=2", "edges.1.options.r1=0.5")
    doc = yaml.safe_load(out)
    assert code == 0 and doc["phases"][1]["repeats"] == 2 and doc["edges"][1]["options"]["r1"] == 0.5


def test_show_config_prints_a_complete_spec_that_compiles_to_the_same_program(cli, family_spec, tmp_path, registry):
    """The printed spec is everything the run uses: the family's model, every default of
    `train`, the overrides; saved and compiled without the family it gives the same program."""
    code, out, err = cli("show-config", family_spec, "train.steps=9", "variables.z.shape=[4]")
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert doc["family"] == "vae" and doc["data"] == {"source": "digits", "binarize": True}
    assert [e.get("generative") or e.get("inference") for e in doc["edges"]] == ["z -> x", "x -> z"]
    assert doc["variables"]["z"]["shape"] == [4] and doc["train"]["steps"] == 9
    assert {"batch_size", "seed", "log_every", "optim", "device"} <= set(doc["train"])  # defaults written out
    printed = tmp_path / "printed.yaml"
    printed.write_text(out.replace("family: vae\n", ""))
    again = compile_file(printed, registry=registry).program
    assert again.family is None
    original = compile_file(family_spec, ["train.steps=9", "variables.z.shape=[4]"], registry=registry).program
    assert str(again).replace("program fam\n", "", 1) == str(original).replace("program fam  (family vae)\n", "", 1)


def test_family_defaults_of_another_kind_are_not_merged(cli, write_spec):
    """A network, data source or optimizer of another kind than the family's replaces the
    default whole; one of the same kind merges with it."""
    spec = write_spec("""
        unigen: 1
        name: fam
        family: vae
        data: {source: ring2d}
        variables: {x: {observed: true, shape: [2]}}
        networks:
          encoder: {arch: mlp, activation: tanh}
          decoder: {arch: conv_net_that_is_not_there}
        train: {optim: {kind: sgd}}
    """)
    code, out, err = cli("show-config", spec)
    assert code == 2 and out == ""
    assert "unknown network architecture `conv_net_that_is_not_there`" in err
    assert "binarize" not in err and "hidden" not in err  # no option of the default kinds leaks in
    code, out, err = cli("show-config", spec, "networks.decoder.arch=mlp")
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert doc["data"]["source"] == "ring2d" and "binarize" not in doc["data"]
    assert doc["networks"]["encoder"]["hidden"] == [256, 256] and doc["networks"]["encoder"]["activation"] == "tanh"
    assert doc["train"]["optim"]["kind"] == "sgd"


def test_validate_and_compile_build_no_network(cli, registry, monkeypatch):
    built = []
    for entry in registry.all("networks"):
        def boom(*args, _name=entry.name, **kwargs):
            built.append(_name)
            raise AssertionError("validate must not build networks")

        monkeypatch.setattr(entry.obj, "build", boom)
    for spec in ("vae-digits", "infogan-ring", "ali-ring"):
        assert cli("validate", ROOT / "specs" / f"{spec}.yaml")[0] == 0
        assert cli("compile", ROOT / "specs" / f"{spec}.yaml")[0] == 0
    assert built == []
    # The same patch does stop a dry run, which builds everything: the patch is effective.
    code, _, _ = cli("compile-and-train", ROOT / "specs" / "vae-digits.yaml", "--dry-run")
    assert built


@pytest.mark.parametrize("spec", ["gan-ring", "aae-digits"])
def test_dry_run_runs_every_phase_and_writes_nothing(cli, spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = ROOT / "specs" / f"{spec}.yaml"
    before = set(os.listdir(ROOT / "specs"))
    code, out, err = cli("compile-and-train", path, "train.batch_size=32", "--dry-run")
    assert code == 0, err
    program = compile_file(path).program
    for phase in program.phases:
        line = next(ln for ln in out.splitlines() if ln.split()[:2] == ["phase", phase.name])
        for t in phase.terms:
            assert f"{t.label} = " in line
    for net in program.networks:
        assert any(ln.split()[:2] == ["network", net] for ln in out.splitlines())
    assert "metrics" in out and out.rstrip().splitlines()[-1].startswith("ok in")
    assert list(tmp_path.iterdir()) == []  # no runs/ directory
    assert set(os.listdir(ROOT / "specs")) == before


def test_dry_run_reports_a_failing_phase(cli, write_spec):
    # A learning rate of 1e30 makes the first update explode; the loss of the next phase is NaN.
    spec = (ROOT / "specs" / "gan-ring.yaml").read_text()
    path = write_spec(spec)
    code, out, err = cli("compile-and-train", path, "train.batch_size=16", "phases.discriminator.optim.lr=1e30", "edges.1.options.r1=0", "--dry-run")
    assert code == 1 and "R001" in err and "phase" in out


class _Raising(Term):
    """A term that fails inside the step, as a plugin's bug would."""

    def bind(self, site: Site) -> Bound:
        def loss(ctx: Any) -> torch.Tensor:
            raise ValueError("plugin bug")

        return Bound(loss, "raises", frozenset(), frozenset({"decoder", "encoder"}))


class _Vector(Term):
    """A term that returns a vector instead of one number."""

    def bind(self, site: Site) -> Bound:
        return Bound(lambda ctx: ctx.q["x"].sum(1), "a vector", frozenset("q"), frozenset({"decoder", "encoder"}))


class _FailingTerms:
    __name__ = "failing_terms"

    @hookimpl
    def unigen_register_terms(self, register: Any) -> None:
        register("raising", _Raising())
        register("vector", _Vector())


@pytest.mark.parametrize("term, says", [("raising", "ValueError: plugin bug"), ("vector", "the term returned a tensor of shape [16]")])
def test_dry_run_reports_a_failing_term_as_r004(cli, monkeypatch, term: str, says: str):
    """A term that raises or returns a vector, in the second phase: R004 naming the phase and
    the term, as training reports it (not a bare StopIteration from the copied runner)."""
    import unigen.cli.common

    reg = load_registry(extra=[_FailingTerms()])
    monkeypatch.setattr(unigen.cli.common, "registry", lambda: reg)
    overrides = ["train.batch_size=16", "phases=[{name: elbo, update: [encoder, decoder], terms: [elbo]}, {name: extra, update: [encoder, decoder], terms: [" + term + "]}]"]
    code, out, err = cli("compile-and-train", ROOT / "specs" / "vae-digits.yaml", *overrides, "--dry-run")
    assert code == 1, err
    assert err.startswith("phases.1.terms.0: R004 ") and "phase `extra`, term `" + term + "` failed at step 1" in err and says in err, err
    assert "Traceback" not in err and "StopIteration" not in err


def test_overrides_are_accepted_after_options(cli, tmp_path, capsys):
    """`compile-and-train SPEC --steps 3 train.seed=1`: an override after an option is one."""
    code, out, err = cli("compile-and-train", ROOT / "specs" / "vae-digits.yaml", "--steps", "2", "train.seed=5", "--out", tmp_path / "run", "--quiet", "train.batch_size=16")
    assert code == 0, err
    resolved = yaml.safe_load((tmp_path / "run" / "spec.resolved.yaml").read_text())
    assert resolved["train"]["seed"] == 5 and resolved["train"]["batch_size"] == 16 and resolved["train"]["steps"] == 2
    for args, says in ((["show-config", ROOT / "specs" / "vae-digits.yaml", "--bogus", "train.seed=5"], "unrecognized arguments: --bogus"),
                       (["plugins", "train.seed=5"], "unrecognized arguments: train.seed=5")):  # a command without overrides takes none
        with pytest.raises(SystemExit) as info:
            cli(*args)
        assert info.value.code == 2 and says in capsys.readouterr().err


def test_overrides_before_the_spec_and_several_files_to_validate(cli, tmp_path):
    vae, gan = ROOT / "specs" / "vae-digits.yaml", ROOT / "specs" / "gan-ring.yaml"
    code, out, err = cli("show-config", "train={steps: 7}", vae, "~train.best", "+networks.encoder.dropout=0.1")
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["train"]["steps"] == 7 and resolved["train"]["batch_size"] == 128  # merged, not reset
    assert resolved["train"].get("best") is None and resolved["networks"]["encoder"]["dropout"] == 0.1
    code, out, err = cli("validate", "train.steps=5", vae, gan)
    assert code == 0, err
    assert out.splitlines() == [f"{vae}: ok — 2 variables, 2 edges, 2 networks, 1 phases", f"{gan}: ok — 2 variables, 2 edges, 2 networks, 2 phases"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(vae.read_text().replace("steps: 3000", "steps: many"))
    code, out, err = cli("validate", vae, bad, gan)
    assert code == 2
    assert out.splitlines() == [f"{vae}: ok — 2 variables, 2 edges, 2 networks, 1 phases", f"{gan}: ok — 2 variables, 2 edges, 2 networks, 2 phases"]
    assert f"{bad}:" in err and "S002" in err and f"{bad}: 1 problem found." in err


def test_version(cli, capsys):
    from unigen import __version__

    with pytest.raises(SystemExit) as info:
        cli("--version")
    assert info.value.code == 0 and capsys.readouterr().out == f"unigen {__version__}\n"
