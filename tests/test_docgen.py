"""docs/hooks.md and docs/spec.md are generated; they stay equal to what the code generates."""

from __future__ import annotations

import re

from conftest import ROOT

from unigen.api import hookspecs
from unigen.api.registry import KINDS
from unigen.tools.docgen import MODELS, PROTOCOLS, hook_functions, hooks_markdown, spec_markdown


def test_docs_hooks_md_is_current():
    assert (ROOT / "docs" / "hooks.md").read_text() == hooks_markdown(), "regenerate: unigen docs hooks -o docs/hooks.md"


def test_docs_spec_md_is_current():
    assert (ROOT / "docs" / "spec.md").read_text() == spec_markdown(), "regenerate: unigen docs spec -o docs/spec.md"


def test_docs_every_hook_documented_with_its_protocol():
    text = hooks_markdown()
    names = [n for n, _ in hook_functions()]
    assert names == [f"unigen_register_{k}" for k in KINDS]  # every kind has its hook, in order
    for name, fn in hook_functions():
        assert f"## {name}" in text and hookspecs.__dict__[name] is fn
        assert name in PROTOCOLS
    assert "`bind(self, site: Site) -> Bound` (required)" in text  # kinds.Term's abstract method
    assert "`on_metrics(self, step: int, row: dict[str, Any]) -> None`" in text


def test_docs_spec_md_lists_every_key():
    text = spec_markdown()
    for model in MODELS:
        section = text.split(f"## {model.__name__}\n", 1)[1].split("\n## ", 1)[0]
        keys = re.findall(r"^\| `(\w+)` \|", section, re.M)
        assert keys == list(model.model_fields), model.__name__


def test_docs_cli_check(cli, tmp_path):
    out = tmp_path / "hooks.md"
    assert cli("docs", "hooks", "-o", out)[0] == 0
    code, stdout, _ = cli("docs", "hooks", "-o", out, "--check")
    assert code == 0 and "is current" in stdout
    out.write_text(out.read_text() + "edited by hand\n")
    code, _, err = cli("docs", "hooks", "-o", out, "--check")
    assert code == 1 and "out of date" in err
