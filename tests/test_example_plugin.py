"""The example third-party plugin, installed as a user would: its own distribution in a fresh
virtual environment beside unigen, found through its entry point, trained from its spec.

Nothing downloads: the environment sees the packages of the environment the tests run in
(torch, pip, setuptools, ...), and both packages are installed without dependencies or build
isolation. Deselect with `-m "not venv"`.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

EXAMPLE = ROOT / "plugins" / "examples" / "unigen-example"

pytestmark = pytest.mark.venv


def _run(args, **kw):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, args))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    # No pip of its own: `python -m pip` inside it is this environment's pip, and the build
    # backend (setuptools, with its bdist_wheel) is this environment's too, so nothing is
    # fetched. `--system-site-packages` would not do: from a virtual environment it shows the
    # base interpreter's packages, not the environment's, so a .pth file adds this one's.
    _run([sys.executable, "-m", "venv", "--without-pip", env_dir])
    py = env_dir / "bin" / "python"
    purelib = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(purelib, "_unigen_test_outer.pth").write_text("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in outer_site_dirs()) + "\n")
    for pkg in (ROOT, EXAMPLE):
        _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-e", pkg])
    return env_dir


def outer_site_dirs() -> list[str]:
    """The site-packages folders of the environment the tests run in (`sys.executable`'s)."""
    dirs = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("UNIGEN_DISABLE_PLUGIN_AUTOLOAD", "UNIGEN_BLOCK_PLUGINS", "PYTHONPATH")}
    # Other third-party plugins stay blocked (tests/conftest.py); this test's own is wanted.
    blocked = [n.strip() for n in os.environ.get("UNIGEN_BLOCK_PLUGINS", "").split(",") if n.strip() and n.strip() != "example"]
    if blocked:
        env["UNIGEN_BLOCK_PLUGINS"] = ",".join(blocked)
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


def test_venv_sees_this_environments_packages(venv):
    """The nested environment imports from this one's site-packages (its setuptools, its torch),
    whether this one is the base interpreter or a virtual environment."""
    code = "import setuptools, sys; print(setuptools.__file__); print(sys.prefix)"
    out = _run([venv / "bin" / "python", "-c", code], env=_env()).stdout.splitlines()
    import setuptools

    assert out[0] == setuptools.__file__ and Path(out[1]).resolve() == Path(venv).resolve()


def test_example_plugin_registers_through_its_entry_point(venv):
    out = _run([venv / "bin" / "unigen", "plugins", "--strict"], env=_env()).stdout
    assert "example          unigen-example 0.1.0  ok" in out
    for line in ("resmlp               [example]", "code_l2              [example]", "rae                  [example]"):
        assert line in out


def test_example_plugin_spec_trains_through_compile_and_train(venv, tmp_path):
    spec = EXAMPLE / "specs" / "rae-digits.yaml"
    run = tmp_path / "run"
    res = _run([venv / "bin" / "unigen", "compile-and-train", spec, "train.steps=30", "train.log_every=15", "--out", run, "--quiet"], env=_env(), cwd=tmp_path)
    assert "recon_error" in res.stdout
    program = (run / "program.txt").read_text()
    assert "encoder        resmlp(blocks=1): [64] -> [8]" in program  # the spec's override merged into the family's network
    assert "decoder        resmlp: [8] -> [64]" in program
    assert "0.05 * code_l2@q_z" in program
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 30 and 0.0 < summary["metrics"]["recon_error"] < 0.5


def test_example_plugin_absent_without_its_package(cli):
    # The package is installed only in the test's environment, so this one does not know `rae`.
    code, _, err = cli("validate", EXAMPLE / "specs" / "rae-digits.yaml")
    assert code == 2 and "unknown family `rae`" in err


def test_example_plugin_terms_formula(registry):
    """`code_l2` equals scale * mean ||z||^2 written out by hand, on a fixed batch."""
    import torch

    sys.path.insert(0, str(EXAMPLE / "src"))
    try:
        from unigen_example.terms import CodeL2
    finally:
        sys.path.pop(0)
    from unigen.api.kinds import Site
    from unigen.graph.model import build_graph
    from unigen.spec.load import parse_spec

    spec, _, _ = parse_spec(textwrap.dedent("""
        unigen: 1
        name: t
        data: {source: digits}
        variables: {x: {observed: true, shape: [64]}, z: {prior: normal, shape: [3]}}
        networks: {enc: {arch: mlp}, dec: {arch: mlp}}
        edges:
          - {generative: z -> x, net: dec, dist: bernoulli}
          - {inference: x -> z, net: enc, dist: deterministic}
        phases: [{name: a, update: [enc, dec], terms: [recon]}]
    """), "t.yaml", registry=registry)
    graph = build_graph(spec, registry)
    term = CodeL2()
    bound = term.bind(Site(graph, graph.edge("q_z"), CodeL2.Options(scale=0.5), registry))
    z = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])

    class Ctx:
        q = {"z": z}

    expected = 0.5 * (torch.tensor(5.0) + torch.tensor(0.25 + 1.0 + 9.0)) / 2
    assert torch.allclose(bound.loss(Ctx()), expected, atol=1e-6)
    assert bound.reaches == frozenset({"enc"}) and bound.traces == frozenset("q")
