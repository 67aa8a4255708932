"""Trackers: metrics.csv and TensorBoard are registered trackers; a plugin adds others."""

from __future__ import annotations

import csv
import importlib.util
import json
import math

import pytest
from conftest import ROOT

from unigen import hookimpl
from unigen.api.registry import load_registry
from unigen.runs.driver import train_run
from unigen.runs.trackers import Tracker

SPEC = ROOT / "specs" / "gan-ring.yaml"
SHORT = ["train.batch_size=32", "train.log_every=2", "train.eval_samples=100"]
TINY = ["data.n_train=256", "data.n_test=128", "train.batch_size=32", "train.eval_samples=100", "train.log_every=2", "train.sample_every=2"]
LOSSES = ["loss/discriminator/adversarial.d@adv_x", "loss/generator/adversarial.g@adv_x"]


class Recorder(Tracker):
    doc = "records calls (tests)"
    calls: list[tuple] = []

    def on_start(self, start):
        Recorder.calls.append(("start", start.name, start.run.name, start.first_step, start.resumed))

    def on_metrics(self, step, row):
        Recorder.calls.append(("metrics", step, sorted(row)))

    def on_image(self, tag, image, step):
        Recorder.calls.append(("image", tag, image, step))

    def on_end(self, summary):
        Recorder.calls.append(("end", summary["steps"]))


class Broken(Tracker):
    always = True

    def on_metrics(self, step, row):
        raise ConnectionError("tracker server went away")


class Plain:
    """A third-party tracker of its own, without the base class and without `on_image`."""

    rows: list[int] = []

    def on_metrics(self, step, row):
        Plain.rows.append(step)


class FailsAtEnd(Tracker):
    def on_end(self, summary):
        raise OSError("upload refused")


class _Plugin:
    __name__ = "test_trackers_plugin"

    @hookimpl
    def unigen_register_trackers(self, register):
        register("recorder", Recorder)
        register("broken", Broken)
        register("plain", Plain)
        register("fails-at-end", FailsAtEnd)


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
    assert [int(r["step"]) for r in rows] == [2, 4] and "discriminator/adversarial.d@adv_x" in rows[0]
    again = train_run(SPEC, SHORT, out=str(run), steps=6, registry=bare, quiet=True, resume="auto")
    assert [int(r["step"]) for r in csv.DictReader((again / "metrics.csv").open())] == [2, 4, 6]


def test_trackers_plugin_tracker_sees_every_row_and_a_broken_one_is_switched_off(reg, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    Recorder.calls = []
    run = train_run(SPEC, SHORT, out=str(tmp_path / "run"), steps=4, registry=reg, quiet=True, track=["recorder"])
    assert Recorder.calls[0] == ("start", "gan-ring", "run", 0, False)
    steps = [c[1] for c in Recorder.calls if c[0] == "metrics"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert steps == [int(r["step"]) for r in rows] == [2, 4]  # the same rows as metrics.csv
    assert "discriminator/adversarial.d@adv_x" in Recorder.calls[1][2]
    assert Recorder.calls[-1] == ("end", 4)
    err = capsys.readouterr().err
    assert err.count("tracker `broken` failed in on_metrics (ConnectionError: tracker server went away)") == 1
    assert "tracker `broken` failed" in (run / "train.log").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trackers"] == {"recorder": "ok", "broken": "failed in on_metrics (ConnectionError: tracker server went away); switched off for the rest of the run"}
    assert summary["errors"] == []  # a tracker's failure is no evaluation error: the run exits 0 (no R005)


def test_trackers_get_each_sample_picture_and_one_failing_at_the_end_is_in_summary_json(reg, tmp_path, capsys, monkeypatch):
    """`on_image` gets each samples/step_*.png as it is written; a tracker without it (not even
    derived from `Tracker`) keeps working; one that fails in `on_end` is named in summary.json."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    Recorder.calls, Plain.rows = [], []
    run = train_run(SPEC, TINY, out=str(tmp_path / "run"), steps=4, registry=reg, quiet=True, track=["recorder", "plain", "fails-at-end"])
    images = [c[1:] for c in Recorder.calls if c[0] == "image"]
    assert images == [("samples", run / "samples" / "step_00000002.png", 2), ("samples", run / "samples" / "step_00000004.png", 4)]
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for _, path, _ in images)
    # step 2: its row, then its picture; the last step: its picture, then its one row (with the final metrics)
    assert [(c[0], c[-1] if c[0] == "image" else c[1]) for c in Recorder.calls[1:-1]] == [("metrics", 2), ("image", 2), ("image", 4), ("metrics", 4)]
    assert Plain.rows == [2, 4]
    assert "tracker `fails-at-end` failed in on_end (OSError: upload refused)" in capsys.readouterr().err
    trackers = json.loads((run / "summary.json").read_text())["trackers"]
    assert trackers["fails-at-end"] == "failed in on_end (OSError: upload refused); switched off for the rest of the run"
    assert trackers["recorder"] == trackers["plain"] == "ok" and trackers["broken"].startswith("failed in on_metrics (ConnectionError")


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


def test_trackers_tensorboard_tags_and_hparams_of_a_spec():
    """Which row key goes under which tag, and what of the resolved spec is a hyperparameter."""
    from unigen_std.trackers import flat_hparams, scalar_tag

    phases = {"discriminator", "generator"}
    tags = {k: scalar_tag(k, phases) for k in ("step", "time_s", "discriminator/adversarial.d@adv_x", "lr/generator", "modes_captured", "fid/pool")}
    assert tags == {"step": None, "time_s": "time/seconds", "discriminator/adversarial.d@adv_x": "loss/discriminator/adversarial.d@adv_x", "lr/generator": "lr/generator", "modes_captured": "metric/modes_captured", "fid/pool": "metric/fid/pool"}
    resolved = {"train": {"batch_size": 32, "lr": 2e-4, "compile": False, "device": None, "clip": float("nan")}, "networks": {"g": {"arch": "mlp", "hidden": [128, 128]}},
                "phases": [{"name": "d", "optim": {"lr": 1e-3}}], "edges": [{"generative": "z -> x", "options": {"r1": 1.0}}], "metrics": ["mmd"]}
    assert flat_hparams(resolved) == {"train.batch_size": 32, "train.lr": 2e-4, "train.compile": False, "networks.g.arch": "mlp", "networks.g.hidden": "[128, 128]",
                                      "phases.d.optim.lr": 1e-3, "edges.0.generative": "z -> x", "edges.0.options.r1": 1.0, "metrics": '["mmd"]'}


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    """A tiny gan-ring run with `--tensorboard`, read back by TensorBoard's own reader."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        run = train_run(SPEC, [*TINY, "train.eval_every=2"], out=str(tmp_path_factory.mktemp("tb") / "run"), steps=4, registry=load_registry(), quiet=True, track=["tensorboard"])
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return run, acc


def test_trackers_tensorboard_scalars_have_prefixes_and_one_event_per_logged_step(tb_run):
    run, acc = tb_run
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    summary = json.loads((run / "summary.json").read_text())
    metrics = [f"metric/{k}" for k in summary["metrics"]]
    assert metrics and "metric/modes_captured" in metrics
    assert sorted(acc.Tags()["scalars"]) == sorted([*LOSSES, "lr/discriminator", "lr/generator", "time/seconds", *metrics])
    for tag in acc.Tags()["scalars"]:
        assert [e.step for e in acc.Scalars(tag)] == [2, 4], tag  # the last step once, with its final metrics
    for tag in LOSSES:  # the same window means as metrics.csv
        assert [e.value for e in acc.Scalars(tag)] == pytest.approx([float(r[tag.removeprefix("loss/")]) for r in rows], rel=1e-6)
    final = {tag: acc.Scalars(tag)[-1].value for tag in metrics}
    assert all(math.isnan(v) if math.isnan(summary["metrics"][t[7:]]) else v == pytest.approx(summary["metrics"][t[7:]], rel=1e-6) for t, v in final.items())
    assert [e.value for e in acc.Scalars("lr/generator")] == pytest.approx([2e-4, 2e-4])


def test_trackers_tensorboard_shows_the_resolved_spec_and_a_summary(tb_run):
    run, acc = tb_run
    assert set(acc.Tags()["tensors"]) == {"spec/resolved", "summary"}
    spec = acc.Tensors("spec/resolved")
    assert [e.step for e in spec] == [0]
    assert spec[0].tensor_proto.string_val[0].decode() == "```yaml\n" + (run / "spec.resolved.yaml").read_text() + "```"
    assert acc.SummaryMetadata("spec/resolved").plugin_data.plugin_name == "text"
    text = acc.Tensors("summary")[0]
    assert text.step == 4 and "- modes_total: 8.0" in text.tensor_proto.string_val[0].decode()


def test_trackers_tensorboard_hparams_are_the_flattened_spec_with_the_final_metrics(tb_run):
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    run, acc = tb_run
    content = acc.PluginTagToContent("hparams")
    assert set(content) == {"_hparams_/session_start_info", "_hparams_/experiment", "_hparams_/session_end_info"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info.hparams
    assert start["train.batch_size"].number_value == 32 and start["train.steps"].number_value == 4
    assert start["phases.discriminator.optim.lr"].number_value == pytest.approx(2e-4)
    assert start["networks.generator.hidden"].string_value == "[128, 128]" and start["data.source"].string_value == "ring2d"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    summary = json.loads((run / "summary.json").read_text())
    assert [m.name.tag for m in experiment.metric_infos] == [f"metric/{k}" for k in summary["metrics"]]
    assert "train.batch_size" in {h.name for h in experiment.hparam_infos}
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS
    assert [d.name for d in (run / "tensorboard").iterdir() if d.is_dir()] == []  # one run: no sub-run of add_hparams


def test_trackers_tensorboard_logs_each_sample_picture_at_its_step(tb_run):
    run, acc = tb_run
    assert acc.Tags()["images"] == ["samples"]
    images = acc.Images("samples")
    assert [e.step for e in images] == [2, 4]
    for event in images:
        png = (run / "samples" / f"step_{event.step:08d}.png").read_bytes()
        assert event.encoded_image_string == png  # the PNG as written, not encoded again
        assert (event.width, event.height) == (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) and event.width > 100


def test_trackers_tensorboard_resumed_run_keeps_one_event_per_step(tmp_path, monkeypatch, registry):
    """A run continued past its end keeps its events up to the checkpoint (the last step's
    included) and adds the later ones: no step twice, none lost."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = train_run(SPEC, TINY, out=str(tmp_path / "run"), steps=4, registry=registry, quiet=True, track=["tensorboard"])
    train_run(SPEC, TINY, out=str(run), steps=6, registry=registry, quiet=True, track=["tensorboard"], resume="auto")
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars(LOSSES[0])] == [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())] == [2, 4, 6]
    assert [e.step for e in acc.Scalars("metric/modes_captured")] == [4, 6]
    assert [e.step for e in acc.Images("samples")] == [2, 4, 6]
    assert len(acc.Tensors("spec/resolved")) == 2  # each process's spec, at the step it started from (0, 4)


def test_trackers_tensorboard_takes_an_array_picture_too(tmp_path):
    """`on_image` with an array (HWC or CHW) instead of a PNG's path, without a training run."""
    pytest.importorskip("tensorboard")
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from unigen_std.trackers import TensorBoardTracker

    from unigen.runs.trackers import RunStart

    tracker = TensorBoardTracker()
    tracker.on_start(RunStart(tmp_path, "tiny", {"name": "tiny", "phases": [{"name": "p"}], "train": {"steps": 3}}))
    tracker.on_image("picture", np.zeros((5, 7, 3), dtype=np.uint8), 1)
    tracker.on_image("picture", np.ones((3, 4, 6), dtype=np.float32), 2)  # CHW: its last axis is no channel count (1, 3, 4)
    tracker.on_end({"steps": 3, "metrics": {}})
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert [(e.step, e.width, e.height) for e in acc.Images("picture")] == [(1, 7, 5), (2, 6, 4)]
