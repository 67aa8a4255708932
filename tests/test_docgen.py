"""docs/hooks.md, docs/spec.md and docs/kinds.md are generated; they stay equal to what the code generates."""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from typing import Any

from conftest import ROOT

from unigen import hookimpl
from unigen.api import hookspecs
from unigen.api import registry as registry_mod
from unigen.api.kinds import Arch, Options
from unigen.api.registry import KIND_NOUN, KINDS, load_registry
from unigen.tools.docgen import MODELS, PROTOCOLS, hook_functions, hooks_markdown, kinds_markdown, own_registry, spec_markdown


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


def test_docs_kinds_md_is_current():
    assert (ROOT / "docs" / "kinds.md").read_text() == kinds_markdown(), "regenerate: unigen docs kinds -o docs/kinds.md"


def _section(text: str, kind: str, name: str) -> str:
    return text.split(f"\n### `{name}` ({KIND_NOUN[kind]})\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


def test_docs_kinds_md_gives_each_kind_its_options():
    text = kinds_markdown()
    # The mlp's widths: type, default, the bound on each width, and the description.
    mlp = _section(text, "networks", "mlp")
    assert "fully connected network; parents flattened and concatenated" in mlp and "Plugin: `std`." in mlp
    assert "| `hidden` | list of integer | `[256, 256]` | each > 0 | widths of the hidden layers, from the input side; `[]`: one linear layer |" in mlp
    iwae = _section(text, "metrics", "iwae")
    assert "Plugin: `vae`." in iwae and "| `k` | integer | `100` | ≥ 1 | importance samples per test example |" in iwae
    assert "Takes no options." in _section(text, "distributions", "bernoulli")
    # An option that is itself a mapping: its keys follow it, dotted; a pipe in a description is escaped.
    recon = _section(text, "terms", "recon")
    assert "| `corrupt` | mapping or null | — |" in recon and "| `corrupt.level` | number | **required** | > 0 |" in recon
    assert "-log p(x\\|z)" in recon
    # A pair reads as YAML writes it.
    assert "| `size` | [integer, integer] | `[32, 32]` |" in _section(text, "datasets", "image_folder")


def test_docs_kinds_md_lists_every_kind_and_option_in_order():
    text = kinds_markdown()
    reg = own_registry()
    for kind in KINDS:
        names = re.findall(rf"^### `([\w.]+)` \({KIND_NOUN[kind]}\)$", text.split(f"\n## {kind.capitalize()}\n", 1)[1].split("\n## ", 1)[0], re.M)
        assert names == reg.names(kind) == sorted(names), kind
        for entry in reg.all(kind):
            model = getattr(entry.obj, "Options", None)
            keys = re.findall(r"^\| `(\w+)` \|", _section(text, kind, entry.name), re.M)
            assert keys == (list(model.model_fields) if model is not None else []), (kind, entry.name)
    anchors = set(re.findall(r"\]\(#([\w-]+)\)", text))
    headings = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#{2,3} (.+)$", text, re.M)}
    assert anchors and anchors <= headings  # every link of the contents reaches its section


@dataclass
class _Dist:
    name: str
    version: str = "1.0"


class _EntryPoint:
    def __init__(self, name: str, dist: str, target: Any) -> None:
        self.name, self.dist, self._target = name, _Dist(dist), target

    def load(self) -> Any:
        return self._target


class _WideOptions(Options):
    width: int = 3


class _Wide(Arch):
    Options = _WideOptions
    doc = "a third-party network"

    def build(self, inputs, output, options):
        raise NotImplementedError


@hookimpl
def _register_wide(register):
    register("wide", _Wide())


def test_docs_kinds_md_ignores_other_plugins_and_the_environment(monkeypatch):
    """A plugin of another distribution, the block list and the autoload switch change what a
    run sees, never docs/kinds.md."""
    foreign = types.ModuleType("wide_plugin")
    foreign.unigen_register_networks = _register_wide
    own = registry_mod._entry_points()
    monkeypatch.setattr(registry_mod, "_entry_points", lambda: [*own, _EntryPoint("wide_plugin", "unigen-wide", foreign)])
    assert load_registry().has("networks", "wide")  # what a run would see
    expected = (ROOT / "docs" / "kinds.md").read_text()
    assert "wide" not in kinds_markdown() and kinds_markdown() == expected
    monkeypatch.setenv("UNIGEN_BLOCK_PLUGINS", "std,vae")
    monkeypatch.setenv("UNIGEN_DISABLE_PLUGIN_AUTOLOAD", "0")
    assert not load_registry().has("networks", "mlp")
    assert kinds_markdown() == expected


def test_docs_kinds_cli_check(cli, tmp_path):
    out = tmp_path / "kinds.md"
    code, _, err = cli("docs", "kinds", "-o", out)
    assert code == 0 and out.read_text() == kinds_markdown() and f"wrote {out}" in err
    code, stdout, _ = cli("docs", "kinds", "-o", out, "--check")
    assert code == 0 and f"{out} is current" in stdout
    out.write_text(out.read_text().replace("| `k` | integer | `100` |", "| `k` | integer | `50` |"))
    code, _, err = cli("docs", "kinds", "-o", out, "--check")
    assert code == 1 and f"{out} is out of date; regenerate with `unigen docs kinds -o {out}`" in err
