from __future__ import annotations

import os
import subprocess
import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from conftest import ROOT

from unigen import hookimpl
from unigen.api import registry as registry_mod
from unigen.api.kinds import Dist
from unigen.api.registry import load_registry


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"


class FakeEntryPoint:
    def __init__(self, name: str, dist: str, target: Any) -> None:
        self.name, self.dist, self._target = name, FakeDist(dist), target

    def load(self) -> Any:
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


def plugin(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


@pytest.fixture
def fake_entry_points(monkeypatch):
    real = registry_mod._entry_points()

    def install(*extra: FakeEntryPoint) -> None:
        monkeypatch.setattr(registry_mod, "_entry_points", lambda: list(real) + list(extra))

    return install


class Gamma(Dist):
    doc = "a third-party distribution"

    def make(self, out, event_dims, options):
        return torch.distributions.Independent(torch.distributions.Gamma(out.exp(), 1.0), event_dims)


@hookimpl
def _register_gamma(register):
    register("gamma", Gamma())


def test_registry_builtins_come_from_entry_points():
    reg = load_registry()
    by_kind = {e.name: e.plugin for e in reg.all("terms")}
    assert by_kind["elbo"] == "vae"
    assert by_kind["adversarial.d"] == "gan"
    assert {p.name for p in reg.plugins} >= {"std", "vae", "gan"}
    assert all(p.dist == "unigen" for p in reg.plugins)


def test_registry_broken_plugin_is_reported_and_others_load(fake_entry_points):
    fake_entry_points(FakeEntryPoint("broken", "unigen-broken", ImportError("No module named 'scipy_missing'")))
    reg = load_registry()
    broken = [p for p in reg.plugins if p.name == "broken"]
    assert broken and "No module named 'scipy_missing'" in broken[0].error
    assert any(d.code == "P001" and "broken" in d.message for d in reg.problems)
    assert reg.has("terms", "elbo") and reg.has("datasets", "digits")


def test_registry_unknown_kind_mentions_failed_plugins(fake_entry_points):
    fake_entry_points(FakeEntryPoint("broken", "unigen-broken", ImportError("boom")))
    reg = load_registry()
    diag = reg.unknown("distributions", "gamma", ("edges", 0, "dist"))
    assert diag.code == "G001"
    assert "broken" in diag.hint


def test_registry_duplicate_kind_names_both_plugins(fake_entry_points):
    dup = plugin("dup", unigen_register_distributions=hookimpl(lambda register: register("normal", Gamma())))
    fake_entry_points(FakeEntryPoint("dup", "unigen-dup", dup))
    reg = load_registry()
    msgs = [d.message for d in reg.problems if d.code == "P002"]
    assert len(msgs) == 1
    assert "`std`" in msgs[0] and "`dup`" in msgs[0] and "normal" in msgs[0]
    assert reg.entries["distributions"]["normal"].plugin == "std"  # the first registration is kept


def test_registry_third_party_plugin_registers(fake_entry_points):
    fake_entry_points(FakeEntryPoint("gammaplug", "unigen-gamma", plugin("gammaplug", unigen_register_distributions=_register_gamma)))
    reg = load_registry()
    entry = reg.entries["distributions"]["gamma"]
    assert (entry.plugin, entry.dist) == ("gammaplug", "unigen-gamma")


def test_registry_api_version_mismatch_is_refused(fake_entry_points):
    old = plugin("old", UNIGEN_PLUGIN_API=0, unigen_register_distributions=_register_gamma)
    fake_entry_points(FakeEntryPoint("old", "unigen-old", old))
    reg = load_registry()
    assert not reg.has("distributions", "gamma")
    diag = next(d for d in reg.problems if d.code == "P003")
    assert "plugin API 0" in diag.message and "old" in diag.message


def test_registry_plugin_failing_inside_hook_is_isolated(fake_entry_points):
    def bad(register):
        raise RuntimeError("exploded while registering")

    fake_entry_points(FakeEntryPoint("bad", "unigen-bad", plugin("bad", unigen_register_metrics=hookimpl(bad))))
    reg = load_registry()
    assert any(d.code == "P001" and "exploded while registering" in d.message for d in reg.problems)
    assert reg.has("metrics", "modes")


def test_registry_autoload_switch_keeps_builtins_only(fake_entry_points, monkeypatch):
    fake_entry_points(FakeEntryPoint("gammaplug", "unigen-gamma", plugin("gammaplug", unigen_register_distributions=_register_gamma)))
    monkeypatch.setenv("UNIGEN_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = load_registry()
    assert not reg.has("distributions", "gamma")
    assert reg.has("terms", "elbo")


def test_registry_block_list_skips_named_plugins(monkeypatch):
    monkeypatch.setenv("UNIGEN_BLOCK_PLUGINS", "gan")
    reg = load_registry()
    assert not reg.has("terms", "adversarial.d")
    assert reg.has("terms", "elbo")


def test_cli_plugins_lists_plugins_kinds_and_errors(cli, fake_entry_points, monkeypatch):
    fake_entry_points(FakeEntryPoint("broken", "unigen-broken", ImportError("missing dependency")))
    monkeypatch.setattr(registry_mod, "_DEFAULT", None)
    code, out, err = cli("plugins", "--strict")
    monkeypatch.setattr(registry_mod, "_DEFAULT", None)
    assert code == 1
    assert "broken" in out and "FAILED: ImportError: missing dependency" in out
    assert "elbo" in out and "[vae]" in out
    assert "ring2d" in out and "[std]" in out


# ------------------------------------------------------------- unknown hooks (P005)

VALID_HOOKS = [f"unigen_register_{kind}" for kind in registry_mod.KINDS]


class Misspelt:
    """A local plugin object whose `unigen_register_term` (for `..._terms`) matches no hookspec."""

    __name__ = "misspelt"

    @hookimpl
    def unigen_register_term(self, register):
        register("gamma_term", object())

    @hookimpl
    def unigen_register_distributions(self, register):
        register("gamma", Gamma())


def test_registry_misspelt_hook_in_extra_plugin_is_p005():
    reg = load_registry(extra=[Misspelt()])
    diags = [d for d in reg.problems if d.code == "P005"]
    assert len(diags) == 1, reg.problems
    diag = diags[0]
    assert "plugin `misspelt` (<local>)" in diag.message and "unknown hook `unigen_register_term`" in diag.message
    assert diag.hint.startswith("did you mean `unigen_register_terms`?")
    assert all(f"`{h}`" in diag.hint for h in VALID_HOOKS)
    assert sorted(registry_mod.hook_names()) == sorted(VALID_HOOKS)
    info = next(p for p in reg.plugins if p.name == "misspelt")
    assert info.error == "unknown hook `unigen_register_term`"
    # The plugin counts as failed: none of its hooks is registered, the others load.
    assert not reg.has("distributions", "gamma") and not reg.has("terms", "gamma_term")
    assert reg.has("terms", "elbo") and reg.has("distributions", "normal")


def test_registry_misspelt_hook_through_entry_point_names_the_distribution(fake_entry_points):
    typo = plugin("typo", unigen_register_datasetz=hookimpl(lambda register: None), unigen_register_distributions=_register_gamma)
    fake_entry_points(FakeEntryPoint("typo", "unigen-typo", typo), FakeEntryPoint("gammaplug", "unigen-gamma", plugin("gammaplug", unigen_register_distributions=_register_gamma)))
    reg = load_registry()
    diag = next(d for d in reg.problems if d.code == "P005")
    assert "plugin `typo` (unigen-typo 1.0)" in diag.message and "`unigen_register_datasetz`" in diag.message
    assert "did you mean `unigen_register_datasets`?" in diag.hint and "UNIGEN_BLOCK_PLUGINS=typo" in diag.hint
    assert reg.entries["distributions"]["gamma"].plugin == "gammaplug"  # typo's copy was never registered
    assert not any(d.code == "P002" for d in reg.problems)


def test_registry_blocked_plugin_is_neither_imported_nor_registered(fake_entry_points, monkeypatch):
    fake_entry_points(FakeEntryPoint("broken", "unigen-broken", ImportError("must not be imported")))
    monkeypatch.setenv("UNIGEN_BLOCK_PLUGINS", " broken , gan")
    reg = load_registry()
    assert not any(p.name in ("broken", "gan") for p in reg.plugins)
    assert not any(d.code == "P001" for d in reg.problems)
    assert not reg.has("terms", "adversarial.d") and reg.has("terms", "elbo")


def _misspelt_site(tmp_path):
    """A distribution `unigen-misspelt` as an installer leaves it: a module and a
    `*.dist-info` with its entry point, in a folder for PYTHONPATH."""
    site = tmp_path / "site"
    info = site / "unigen_misspelt-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unigen-misspelt\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[unigen]\nmisspelt = unigen_misspelt\n")
    (site / "unigen_misspelt.py").write_text(
        "from unigen import hookimpl\n\n\n"
        "@hookimpl\ndef unigen_register_term(register):\n    register('misspelt_term', object())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("UNIGEN_DISABLE_PLUGIN_AUTOLOAD", "UNIGEN_BLOCK_PLUGINS")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep), OMP_NUM_THREADS="1")
    return env


def test_cli_plugins_misspelt_hook_of_an_installed_plugin_is_p005(tmp_path):
    env = _misspelt_site(tmp_path)
    strict = subprocess.run([sys.executable, "-m", "unigen", "plugins", "--strict"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert strict.returncode != 0, strict.stdout + strict.stderr
    p005 = [line for line in strict.stderr.splitlines() if "P005" in line]
    assert len(p005) == 1, strict.stderr
    assert "plugin `misspelt` (unigen-misspelt 0.3)" in p005[0] and "unknown hook `unigen_register_term`" in p005[0]
    assert "did you mean `unigen_register_terms`?" in p005[0]
    assert "misspelt         unigen-misspelt 0.3  FAILED: unknown hook `unigen_register_term`" in strict.stdout
    assert "misspelt_term" not in strict.stdout
    lenient = subprocess.run([sys.executable, "-m", "unigen", "plugins"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert lenient.returncode == 0, lenient.stderr
    assert "misspelt         unigen-misspelt 0.3  FAILED: unknown hook `unigen_register_term`" in lenient.stdout
    assert "P005" in lenient.stderr
    assert "elbo" in lenient.stdout and "[vae]" in lenient.stdout  # the other plugins still load


# ------------------------------------------------------------- objects not of their kind (P006)


class BadOptionsGamma(Gamma):
    Options = dict  # not a pydantic model


SHAPELESS = {
    "term-int": ("terms", 3, "it has no method `bind`; it has no `target` (None for a whole-model term, or the edge kind it attaches to: `generative`, `inference`, `adversarial`, `undirected`)"),
    "term-without-bind": ("terms", types.SimpleNamespace(target=None), "it has no method `bind`"),
    "term-bind-not-callable": ("terms", types.SimpleNamespace(target=None, bind="bind"), "its `bind` is not callable"),
    "term-bad-target": ("terms", types.SimpleNamespace(target="edge", bind=lambda site: None), "its `target` is 'edge'; expected None or one of `generative`, `inference`, `adversarial`"),
    "term-without-target": ("terms", types.SimpleNamespace(bind=lambda site: None), "it has no `target`"),
    "distribution": ("distributions", object(), "it has no method `make`"),
    "distribution-options": ("distributions", BadOptionsGamma(), "its `Options` is `dict`, not a pydantic model class (or None)"),
    "architecture": ("networks", object(), "it has no method `build`"),
    "dataset": ("datasets", types.SimpleNamespace(fields=lambda options: {}), "it has no method `load`"),
    "metric": ("metrics", object(), "it has no method `compute`"),
    "objective": ("objectives", types.SimpleNamespace(d_loss=lambda real, fake, options: None), "it has no method `g_loss`"),
    "rule": ("rules", object(), "it has no method `check`"),
    "family": ("families", object(), "it has no method `complete`"),
    "optimizer": ("optimizers", object(), "it is not callable"),
    "tracker": ("trackers", "tensorboard", "it is not callable"),
}


def _registering(name: str, kind: str, obj: Any, as_name: str = "bad") -> types.ModuleType:
    return plugin(name, **{f"unigen_register_{kind}": hookimpl(lambda register: register(as_name, obj))})


@pytest.mark.parametrize("case", sorted(SHAPELESS))
def test_registry_object_not_of_its_kind_is_p006(case):
    kind, obj, missing = SHAPELESS[case]
    reg = load_registry(extra=[_registering("notakind", kind, obj)])
    diags = [d for d in reg.problems if d.code == "P006"]
    assert len(diags) == 1, reg.problems
    d = diags[0]
    noun = registry_mod.KIND_NOUN[kind]
    article = "an" if noun[0] in "aeiou" else "a"
    assert d.message.startswith(f"plugin `notakind` (<local>) registered {noun} `bad` as an object of type `{type(obj).__name__}`, which is not {article} {noun}: ")
    assert missing in d.message and d.message.endswith("; it is not registered.")
    assert d.hint == f"{registry_mod.SHAPE_HINT[kind]}, or block the plugin with UNIGEN_BLOCK_PLUGINS=notakind."
    assert d.path == () and not d.file
    info = next(p for p in reg.plugins if p.name == "notakind")
    assert info.error.startswith(f"{noun} `bad` is not {article} {noun}: ") and missing in info.error
    assert not reg.has(kind, "bad")
    assert not any(d.code == "P001" for d in reg.problems)  # no traceback-shaped failure
    assert reg.has("terms", "elbo") and reg.has("distributions", "normal")  # the other plugins load


def test_registry_p006_keeps_the_plugins_other_objects_and_the_first_of_a_name():
    class Mixed:
        __name__ = "mixed"

        @hookimpl
        def unigen_register_terms(self, register):
            register("elbo", 3)  # not a term: refused before it could count as a duplicate (P002)

        @hookimpl
        def unigen_register_distributions(self, register):
            register("gamma", Gamma())

    reg = load_registry(extra=[Mixed()])
    assert [d.code for d in reg.problems] == ["P006"], reg.problems
    assert "registered term `elbo` as an object of type `int`" in reg.problems[0].message
    assert reg.entries["terms"]["elbo"].plugin == "vae"
    assert reg.entries["distributions"]["gamma"].plugin == "mixed"
    assert next(p for p in reg.plugins if p.name == "mixed").error.startswith("term `elbo` is not a term: it has no method `bind`")


def test_registry_every_kind_has_a_shape_and_the_builtins_have_it():
    assert set(registry_mod.NEEDS) == set(registry_mod.KINDS) == set(registry_mod.SHAPE_HINT)
    reg = load_registry()
    assert not any(d.code == "P006" for d in reg.problems), reg.problems
    assert all(not p.error for p in reg.plugins), reg.plugins
    for kind in registry_mod.KINDS:
        assert all(registry_mod.shape_problems(kind, e.obj) == [] for e in reg.all(kind))


def test_cli_plugins_strict_fails_on_an_object_not_of_its_kind(cli, fake_entry_points, monkeypatch):
    fake_entry_points(FakeEntryPoint("notakind", "unigen-notakind", _registering("notakind", "terms", 3)))
    monkeypatch.setattr(registry_mod, "_DEFAULT", None)
    code, out, err = cli("plugins", "--strict")
    monkeypatch.setattr(registry_mod, "_DEFAULT", None)
    assert code == 1
    assert "notakind         unigen-notakind 1.0  FAILED: term `bad` is not a term: it has no method `bind`" in out
    assert "  bad " not in out and "elbo" in out and "[vae]" in out
    p006 = [line for line in err.splitlines() if "P006" in line]
    assert len(p006) == 1, err
    assert "plugin `notakind` (unigen-notakind 1.0) registered term `bad` as an object of type `int`, which is not a term" in p006[0]
    assert "Traceback" not in err


def test_cli_plugins_strict_fails_on_an_installed_plugin_registering_a_non_term(tmp_path):
    site = tmp_path / "site"
    info = site / "unigen_notaterm-0.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unigen-notaterm\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text("[unigen]\nnotaterm = unigen_notaterm\n")
    (site / "unigen_notaterm.py").write_text("from unigen import hookimpl\n\n\n@hookimpl\ndef unigen_register_terms(register):\n    register('bad', 3)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("UNIGEN_DISABLE_PLUGIN_AUTOLOAD", "UNIGEN_BLOCK_PLUGINS")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep), OMP_NUM_THREADS="1")
    strict = subprocess.run([sys.executable, "-m", "unigen", "plugins", "--strict"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "Traceback" not in strict.stderr and "AttributeError" not in strict.stderr
    p006 = [line for line in strict.stderr.splitlines() if "P006" in line]
    assert len(p006) == 1, strict.stderr
    assert "plugin `notaterm` (unigen-notaterm 0.2) registered term `bad` as an object of type `int`, which is not a term: it has no method `bind`" in p006[0]
    assert "UNIGEN_BLOCK_PLUGINS=notaterm" in p006[0]
    assert "notaterm         unigen-notaterm 0.2  FAILED: term `bad` is not a term" in strict.stdout
    assert "elbo" in strict.stdout and "[vae]" in strict.stdout  # the other plugins still load


def test_registry_builtins_load_first_and_a_clash_stops_commands(monkeypatch, capsys):
    """A third-party plugin whose distribution sorts before unigen's and registers `mlp`: the
    built-in is kept (the intruder comes second), the clash names both plugins, every command
    that loads plugins refuses to run (exit 2) until one is blocked, and `unigen plugins`
    still lists them (and fails with --strict)."""
    from unigen.api.kinds import Arch
    from unigen.cli.commands import main

    class Other(Arch):
        def build(self, inputs, output, options):
            raise AssertionError("never built: the built-in `mlp` is kept")

    intruder = plugin("aaa_intruder", unigen_register_networks=hookimpl(lambda register: register("mlp", Other())))
    real = registry_mod._entry_points()
    monkeypatch.setattr(registry_mod, "_entry_points", lambda: [FakeEntryPoint("aaa_intruder", "aaa-intruder", intruder), *real])
    monkeypatch.setattr(registry_mod, "_DEFAULT", None)
    reg = registry_mod.default_registry()
    assert reg.entries["networks"]["mlp"].plugin == "std"
    [clash] = [d for d in reg.problems if d.code == "P002"]
    assert "`std` (unigen)" in clash.message and "`aaa_intruder` (aaa-intruder)" in clash.message and "commands refuse to run" in clash.message
    assert "UNIGEN_BLOCK_PLUGINS=aaa_intruder keeps `std`'s" in clash.hint
    assert main(["validate", str(ROOT / "specs" / "gan-ring.yaml")]) == 2
    assert capsys.readouterr().err.startswith("P002 network architecture `mlp` is registered by plugin `std`")
    assert main(["plugins"]) == 0 and "aaa_intruder" in capsys.readouterr().out
    assert main(["plugins", "--strict"]) == 1
    # The user's choice: blocking the intruder, everything works again.
    monkeypatch.setenv("UNIGEN_BLOCK_PLUGINS", "aaa_intruder")
    monkeypatch.setattr(registry_mod, "_DEFAULT", None)
    assert main(["validate", str(ROOT / "specs" / "gan-ring.yaml")]) == 0
    monkeypatch.setattr(registry_mod, "_DEFAULT", None)


@hookimpl
def _register_exits(register):
    import sys

    sys.exit(4)


def test_registry_plugin_calling_sys_exit_at_import_or_in_a_hook_is_p001(fake_entry_points):
    fake_entry_points(
        FakeEntryPoint("exits_at_import", "unigen-exit-a", SystemExit(3)),
        FakeEntryPoint("exits_in_hook", "unigen-exit-b", plugin("unigen_exit_b", unigen_register_terms=_register_exits)),
    )
    reg = load_registry()  # neither ends the process
    messages = [d.message for d in reg.problems if d.code == "P001"]
    assert any(m.startswith("plugin `exits_at_import` (unigen-exit-a 1.0) failed to load: it called sys.exit(3) (") for m in messages)
    assert any(m.startswith("plugin `exits_in_hook` failed while registering terms: it called sys.exit(4) (test_plugins.py:") for m in messages)
    assert reg.has("terms", "elbo") and reg.has("datasets", "digits")
