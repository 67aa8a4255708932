"""The README stays true to the code: error codes and the printed program."""

from __future__ import annotations

import re

from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.errors import CODES

README = (ROOT / "README.md").read_text()


def test_docs_readme_lists_every_error_code():
    listed = dict(re.findall(r"^\| ([A-Z]\d{3}) \| (.+?) \|$", README, re.M))
    assert listed == CODES


def test_docs_readme_program_is_current(registry):
    program = str(compile_file(ROOT / "specs" / "gan-ring.yaml", registry=registry).program)
    assert program in README


def test_docs_readme_names_both_commands():
    assert "pip install torch==2.13.0 && pip install -e . && unigen compile-and-train specs/vae-digits.yaml" in README
    assert 'pip install -e ".[test]" && python -m pytest' in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci and "torch==2.13.0" in ci


def test_docs_readme_spec_is_the_shipped_one():
    """The spec walked through in the README says what specs/gan-ring.yaml says."""
    import yaml

    text = README
    start = text.index("```yaml\nunigen: 1")
    block = text[start + len("```yaml\n") : text.index("```", start + 7)]
    assert yaml.safe_load(block) == yaml.safe_load((ROOT / "specs" / "gan-ring.yaml").read_text())
