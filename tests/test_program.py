"""The printed program is the compiler's artefact: golden files pin it for every shipped spec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import ROOT, SPECS

from unigen.compiler.compiler import compile_file

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_program_matches_golden(spec: Path, registry):
    text = str(compile_file(spec, registry=registry).program)
    golden = GOLDEN / f"{spec.stem}.txt"
    if os.environ.get("UNIGEN_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {spec.name}; run with UNIGEN_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_program_gan_phases_update_and_freeze(registry):
    program = compile_file(ROOT / "specs" / "gan-ring.yaml", registry=registry).program
    d, g = program.phases
    assert (d.name, d.update, d.frozen) == ("discriminator", ("discriminator",), ("generator",))
    assert (g.name, g.update, g.frozen) == ("generator", ("generator",), ("discriminator",))
    assert d.traces == {"p", "q"} and d.needs_data
    assert g.traces == {"p"} and not g.needs_data  # the generator phase draws no data batch


def test_program_vae_single_wake_phase(registry):
    program = compile_file(ROOT / "specs" / "vae-digits.yaml", registry=registry).program
    (phase,) = program.phases
    assert phase.update == ("encoder", "decoder") and phase.frozen == ()
    assert phase.terms[0].bound.reaches == {"encoder", "decoder"}
    assert "KL(q(z|x) || p(z))" in str(program)


def test_program_family_defaults_fill_a_short_spec(write_spec, registry):
    path = write_spec("""
        unigen: 1
        name: short-vae
        family: vae
        variables:
          z: {prior: normal, shape: [4]}
    """)
    program = compile_file(path, registry=registry).program
    assert program.variables["z"].shape == (4,)  # the user's value wins
    assert program.variables["x"].shape == (64,)  # the family's default fills in
    assert [p.name for p in program.phases] == ["elbo"]
