"""Every shipped spec trains a few steps and leaves a complete run directory."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, SPECS

from unigen.compiler.compiler import compile_file
from unigen.runs.checkpoints import load_checkpoint
from unigen.runs.driver import train_run
from unigen.training.trainer import Trainer

# Specs whose data are local files (a `path`, or MNIST from the data folder): trained on generated
# files in tests/test_images.py, tests/test_mnist.py and tests/test_stacked_mnist.py, as no test needs the real data.
LOCAL_DATA = {s for s in SPECS if "path" in (data := yaml.safe_load(s.read_text()).get("data") or {}) or data.get("source") in ("mnist", "stacked_mnist")}


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_train_shipped_spec_writes_run_directory(spec: Path, tmp_path: Path, registry):
    if spec in LOCAL_DATA:
        pytest.skip("reads a local dataset; trained on generated files in tests/test_images.py")
    run = train_run(spec, ["train.log_every=2", "train.eval_samples=200"], out=str(tmp_path / "run"), steps=4, device="cpu", registry=registry, quiet=True)
    for name in ("spec.yaml", "spec.resolved.yaml", "program.txt", "env.json", "metrics.csv", "summary.json", "train.log", "checkpoints/last"):
        assert (run / name).is_file(), name
    assert (run / "spec.yaml").read_text() == spec.read_text()
    resolved = yaml.safe_load((run / "spec.resolved.yaml").read_text())
    assert resolved["train"]["steps"] == 4
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["device"] == "cpu"
    assert summary["metrics"], "every shipped spec reports at least one metric"
    assert all(isinstance(v, float) for v in summary["metrics"].values())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["step"] for r in rows][:2] == ["2", "4"]
    last = (run / "checkpoints" / "last").read_text().strip()
    state = load_checkpoint(run / "checkpoints" / last)
    assert state["step"] == 4 and set(state["nets"]) and state["spec_digest"]
    pictures = sorted((run / "samples").glob("*.png"))
    graph = compile_file(spec, registry=registry).program.graph
    if any(v.observed and graph.p_source(name) in ("edge", "sampler") for name, v in graph.variables.items()):
        assert pictures and pictures[-1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:  # nothing observed is generated (a classifier, a translation between observed domains)
        assert pictures == []
    env = json.loads((run / "env.json").read_text())
    assert env["versions"]["torch"] and {p["name"] for p in env["plugins"]} >= {"std", "vae", "gan"}


def test_train_is_deterministic_for_a_seed(registry):
    path = ROOT / "specs" / "gan-ring.yaml"

    def params_after(steps: int) -> list[torch.Tensor]:
        trainer = Trainer(compile_file(path, ["train.device=cpu"], registry).program)
        for _ in range(steps):
            trainer.step()
        return [p.detach().clone() for p in trainer.model.parameters()]

    a, b = params_after(3), params_after(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_train_phase_updates_only_its_networks(registry):
    program = compile_file(ROOT / "specs" / "gan-ring.yaml", ["train.device=cpu"], registry).program
    trainer = Trainer(program)
    gen_before = [p.detach().clone() for p in trainer.model.nets["generator"].parameters()]
    disc_before = [p.detach().clone() for p in trainer.model.nets["discriminator"].parameters()]
    trainer.run_phase(trainer.runners[0])  # the discriminator phase
    assert all(torch.equal(a, b) for a, b in zip(gen_before, trainer.model.nets["generator"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(disc_before, trainer.model.nets["discriminator"].parameters()))


def test_train_refuses_to_write_into_a_nonempty_out(tmp_path: Path, cli):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, _, err = cli("compile-and-train", ROOT / "specs" / "gan-ring.yaml", "--out", out, "--steps", "1", "--quiet")
    assert code == 2
    assert "R002" in err and "not empty" in err
    assert (out / "keep.txt").read_text() == "precious"


def test_train_cli_reports_metrics_and_exit_zero(tmp_path: Path, cli):
    code, out, err = cli("compile-and-train", ROOT / "specs" / "vae-digits.yaml", "train.log_every=1", "--out", tmp_path / "r", "--steps", "2", "--device", "cpu", "--quiet")
    assert code == 0, err
    assert "test_nelbo" in out and str(tmp_path / "r") in out
