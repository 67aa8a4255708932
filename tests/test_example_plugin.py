"""The example third-party plugin, installed as a user would: its own distribution in a fresh
virtual environment beside unigen, found through its entry point, trained from its spec.

Nothing downloads: the environment sees the machine's packages (torch, ...) and both
packages are installed without dependencies or build isolation. Deselect with `-m "not venv"`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

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
    # No pip of its own: `python -m pip` inside it is the machine's pip, and the build backend
    # (setuptools) is the machine's too, so nothing is fetched.
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", env_dir])
    py = env_dir / "bin" / "python"
    for pkg in (ROOT, EXAMPLE):
        _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-e", pkg])
    return env_dir


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("UNIGEN_DISABLE_PLUGIN_AUTOLOAD", "UNIGEN_BLOCK_PLUGINS", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


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
