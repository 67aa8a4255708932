"""A metric or the sample drawing that fails after training costs nothing already trained:
the checkpoint, metrics.csv and summary.json are written, the failure is named (metric and
plugin) in summary.json and on stderr, and the command exits non-zero with R005."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import ROOT

from unigen import hookimpl
from unigen.api.kinds import Metric
from unigen.api.registry import load_registry
from unigen.errors import UnigenError
from unigen.runs.driver import train_run

VAE = ROOT / "specs" / "vae-digits.yaml"
SMALL = ["networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]", "train.batch_size=32", "train.log_every=2"]


class Broken(Metric):
    doc = "raises on purpose"

    def __init__(self) -> None:
        self.calls = 0

    def applies(self, model) -> bool:
        return True

    def compute(self, model) -> dict[str, float]:
        self.calls += 1
        raise ZeroDivisionError("metric bug")


class BrokenPlugin:
    def __init__(self) -> None:
        self.metric = Broken()

    @hookimpl
    def unigen_register_metrics(self, register):
        register("broken", self.metric)


def test_failing_metric_keeps_the_run_and_exits_r005(tmp_path: Path, capsys):
    plugin = BrokenPlugin()
    reg = load_registry(extra=[plugin])
    out = tmp_path / "run"
    with pytest.raises(UnigenError) as info:
        train_run(VAE, SMALL + ["train.eval_every=2"], out=str(out), steps=6, device="cpu", registry=reg, quiet=True)
    d = info.value.diagnostics[0]
    assert d.code == "R005" and info.value.exit_code == 1
    assert "metric `broken`" in d.message and "ZeroDivisionError: metric bug" in d.message and str(out) in d.message
    # Tried once (at the first mid-run evaluation), reported once, not retried.
    assert plugin.metric.calls == 1
    assert capsys.readouterr().err.count("metric `broken`") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6
    assert "test_nelbo" in summary["metrics"]  # the working metrics are still there
    assert any("metric `broken`" in e for e in summary["errors"])
    assert (out / "checkpoints" / "last").exists()
    assert (out / "metrics.csv").read_text().count("\n") >= 4


def test_failing_sample_drawing_keeps_the_run(tmp_path: Path, monkeypatch, registry, capsys):
    import unigen.runs.loop as run_mod

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run_mod, "save_samples", broken)
    out = tmp_path / "run"
    with pytest.raises(UnigenError) as info:
        train_run(VAE, SMALL, out=str(out), steps=4, device="cpu", registry=registry, quiet=True)
    assert info.value.diagnostics[0].code == "R005"
    assert "drawing samples failed" in info.value.diagnostics[0].message
    assert "OSError: disk full" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert "test_nelbo" in summary["metrics"] and summary["errors"]


def test_healthy_run_has_no_errors(tmp_path: Path, registry):
    run = train_run(VAE, SMALL, out=str(tmp_path / "run"), steps=4, device="cpu", registry=registry, quiet=True)
    assert json.loads((run / "summary.json").read_text())["errors"] == []


def test_evaluate_command_reports_a_failing_metric_beside_the_others(tmp_path: Path, registry):
    from unigen.runs.evaluate import evaluate_run

    run = train_run(VAE, SMALL, out=str(tmp_path / "run"), steps=4, device="cpu", registry=registry, quiet=True)
    result = evaluate_run(run, names=None, registry=load_registry(extra=[BrokenPlugin()]))
    assert result["errors"] == ["metric `broken` failed: ZeroDivisionError: metric bug"]
    assert math.isfinite(result["metrics"]["test_nelbo"])
