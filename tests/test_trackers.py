"""Trackers: metrics.csv and TensorBoard are registered trackers; a plugin adds others."""

from __future__ import annotations

import csv
import importlib.util
import sys
import types

import pytest
from conftest import ROOT

from unigen import hookimpl
from unigen.api.registry import load_registry
from unigen.runs.driver import train_run
from unigen.runs.trackers import Tracker

SPEC = ROOT / "specs" / "gan-ring.yaml"
SHORT = ["train.batch_size=32", "train.log_every=2", "train.eval_samples=100"]


class Recorder(Tracker):
    doc = "records calls (tests)"
    calls: list[tuple] = []

    def on_start(self, start):
        Recorder.calls.append(("start", start.name, start.run.name, start.first_step, start.resumed))

    def on_metrics(self, step, row):
        Recorder.calls.append(("metrics", step, sorted(row)))

    def on_end(self, summary):
        Recorder.calls.append(("end", summary["steps"]))


class Broken(Tracker):
    always = True

    def on_metrics(self, step, row):
        raise ConnectionError("tracker server went away")


class _Plugin:
    __name__ = "test_trackers_plugin"

    @hookimpl
    def unigen_register_trackers(self, register):
        register("recorder", Recorder)
        register("broken", Broken)


@pytest.fixture
def reg():
    return load_registry(extra=[_Plugin()])


def test_trackers_builtin_registered_through_the_hook(registry):
    entries = {e.name: e for e in registry.all("trackers")}
    assert entries["tensorboard"].plugin == "std" and not entries["tensorboard"].obj.always
    assert "csv" not in entries  # metrics.csv is the core's own file, not a tracker


def test_trackers_metrics_csv_is_written_without_any_tracker(tmp_path, monkeypatch):
    """With no tracker registered at all, the run still writes metrics.csv (and resumes it)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    bare = load_registry()
    bare.entries["trackers"].clear()
    run = train_run(SPEC, SHORT, out=str(tmp_path / "run"), steps=4, registry=bare, quiet=True)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 4] and "discriminator/adversarial.d@adv_x" in rows[0]
    again = train_run(SPEC, SHORT, out=str(run), steps=6, registry=bare, quiet=True, resume="auto")
    assert [int(r["step"]) for r in csv.DictReader((again / "metrics.csv").open())] == [2, 4, 4, 6, 6]


def test_trackers_plugin_tracker_sees_every_row_and_a_broken_one_is_switched_off(reg, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    Recorder.calls = []
    run = train_run(SPEC, SHORT, out=str(tmp_path / "run"), steps=4, registry=reg, quiet=True, track=["recorder"])
    assert Recorder.calls[0] == ("start", "gan-ring", "run", 0, False)
    steps = [c[1] for c in Recorder.calls if c[0] == "metrics"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert steps == [int(r["step"]) for r in rows] == [2, 4, 4]  # the same rows as metrics.csv
    assert "discriminator/adversarial.d@adv_x" in Recorder.calls[1][2]
    assert Recorder.calls[-1] == ("end", 4)
    err = capsys.readouterr().err
    assert err.count("tracker `broken` failed in on_metrics (ConnectionError: tracker server went away)") == 1
    assert "tracker `broken` failed" in (run / "train.log").read_text()


def test_trackers_unknown_name_is_g001_before_anything_is_written(reg, tmp_path, cli):
    code, _, err = cli("compile-and-train", SPEC, "--out", tmp_path / "run", "--track", "recordr")
    assert code == 2 and "G001" in err and "unknown tracker `recordr`" in err
    assert not (tmp_path / "run").exists()


def test_trackers_tensorboard_missing_package_is_u004(cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    code, _, err = cli("compile-and-train", SPEC, "--out", tmp_path / "run", "--tensorboard")
    assert code == 2 and "U004" in err and "pip install tensorboard" in err
    assert not (tmp_path / "run").exists()


def test_trackers_tensorboard_writes_scalars(tmp_path, monkeypatch, registry):
    """With a stand-in SummaryWriter when the package is absent; with the real one when present."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    written: list[tuple] = []
    if importlib.util.find_spec("tensorboard") is None:
        class FakeWriter:
            def __init__(self, log_dir, purge_step=None):
                written.append(("open", log_dir))

            def add_scalar(self, tag, value, step):
                written.append((tag, value, step))

            def add_text(self, tag, text, step):
                written.append((tag, text, step))

            def flush(self):
                pass

            def close(self):
                written.append(("close",))

        fake = types.ModuleType("torch.utils.tensorboard")
        fake.SummaryWriter = FakeWriter
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
        from unigen_std import trackers as std_trackers

        monkeypatch.setattr(std_trackers.TensorBoardTracker, "unavailable", classmethod(lambda cls: ""))
    run = train_run(SPEC, SHORT, out=str(tmp_path / "run"), steps=4, registry=registry, quiet=True, track=["tensorboard"])
    if written:
        assert written[0] == ("open", str(run / "tensorboard")) and written[-1] == ("close",)
        scalars = [w for w in written if len(w) == 3 and w[0] != "summary"]
        assert ("discriminator/adversarial.d@adv_x", 2) in [(t, s) for t, _, s in scalars]
        assert all(t != "step" for t, _, _ in scalars)
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(run / "tensorboard"))
        acc.Reload()
        assert "discriminator/adversarial.d@adv_x" in acc.Tags()["scalars"]
        assert [e.step for e in acc.Scalars("discriminator/adversarial.d@adv_x")] == [2, 4, 4]
