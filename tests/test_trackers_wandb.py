"""The Weights & Biases tracker (`--track wandb`), offline: a tiny run's transaction log
(RUN/wandb/offline-run-*/run-*.wandb) read back by W&B's own reader, `wandb leet inspect`.
Tests that need wandb skip without it."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from unigen_std.trackers_wandb import WandbTracker, json_safe

from unigen.runs.driver import train_run
from unigen.runs.trackers import RunStart

GAN = ROOT / "specs" / "gan-ring.yaml"
TINY = ["data.n_train=256", "data.n_test=128", "train.batch_size=32", "train.eval_samples=100", "train.log_every=2", "train.sample_every=2", "train.eval_every=2"]
LOSSES = ["loss/discriminator/adversarial.d@adv_x", "loss/generator/adversarial.g@adv_x"]


@pytest.fixture
def offline_only(monkeypatch, tmp_path):
    """An environment that asks W&B to go online, to a port where nothing listens: the tracker
    must stay offline (a run that went online would fail, not reach anything)."""
    pytest.importorskip("wandb", reason="the W&B tracker's tests need wandb")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def records(run_dir: Path) -> list[dict]:
    """The records of an offline run's .wandb file, as `wandb leet inspect --json` prints them."""
    (log,) = run_dir.glob("run-*.wandb")
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "No such command" in done.stderr:
        pytest.skip(f"this wandb has no `leet inspect` to read an offline run back: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def history(recs: list[dict]) -> dict[int, dict]:
    return {r["history"]["step"]["num"]: r["history"]["item"] for r in recs if r["type"] == "history"}


def offline_runs(run: Path) -> list[Path]:
    return sorted((run / "wandb").glob("offline-run-*"))


def test_wandb_offline_run_holds_the_spec_the_rows_the_pictures_and_the_summary(offline_only, tmp_path):
    hooks = (sys.exit, sys.excepthook)
    run = train_run(GAN, TINY, out=str(tmp_path / "run"), steps=4, quiet=True, track=["wandb"])
    assert (sys.exit, sys.excepthook) == hooks  # W&B's, while the run was on, given back
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trackers"] == {"wandb": "ok"}
    (one,) = offline_runs(run)
    kept = json.loads((run / "wandb" / "run.json").read_text())
    assert one.name.endswith("-" + kept["id"]) and kept["project"] == "gan-ring"
    recs = records(one)
    (start,) = [r["run"] for r in recs if r["type"] == "run"]
    assert start["project"] == "gan-ring" and start["display_name"] == run.name and start["telemetry"]["feature"]["offline"]
    config = {k: v for k, v in start["config"]["update"].items() if k != "_wandb"}
    assert config == json_safe(yaml.safe_load((run / "spec.resolved.yaml").read_text()))

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    steps = history(recs)
    assert sorted(steps) == [int(r["step"]) for r in rows] == [2, 4]  # the last step once
    metrics = {f"metric/{k}" for k in summary["metrics"]}
    for row, (step, item) in zip(rows, sorted(steps.items())):
        assert {*LOSSES, "lr/discriminator", "lr/generator", "time/seconds", *metrics} <= set(item)
        for tag in LOSSES:
            assert item[tag] == pytest.approx(float(row[tag.removeprefix("loss/")]), rel=1e-6)
        assert item["lr/generator"] == pytest.approx(2e-4)
        png = (run / "samples" / f"step_{step:08d}.png").read_bytes()
        assert item["samples._type"] == "image-file" and item["samples.sha256"] == hashlib.sha256(png).hexdigest()  # the PNG as written
        assert (one / "files" / item["samples.path"]).read_bytes() == png
    assert steps[4]["metric/modes_total"] == 8

    (end,) = [r["exit"] for r in recs if r["type"] == "exit"]
    assert end.get("exit_code", 0) == 0
    final = {}
    for r in recs:
        if r["type"] == "summary":
            final.update(r["summary"]["update"])
    assert final["summary"]["steps"] == 4 and final["summary"]["metrics"]["modes_total"] == 8
    saved = {f["path"] for r in recs if r["type"] == "files" for f in r["files"]["files"]}
    assert {"spec.resolved.yaml", "summary.json"} <= saved
    assert (one / "files" / "spec.resolved.yaml").read_text() == (run / "spec.resolved.yaml").read_text()
    assert (one / "files" / "summary.json").read_text() == (run / "summary.json").read_text()  # its trackers as before on_end: all "ok"
    assert list(tmp_path.iterdir()) == [run]  # nothing in the working directory (no ./wandb)


def test_wandb_resumed_run_keeps_its_id_and_logs_from_where_it_resumed(offline_only, tmp_path):
    run = train_run(GAN, TINY, out=str(tmp_path / "run"), steps=4, quiet=True, track=["wandb"])
    train_run(GAN, TINY, out=str(run), steps=6, quiet=True, track=["wandb"], resume="auto")
    kept = json.loads((run / "wandb" / "run.json").read_text())["id"]
    first, second = offline_runs(run)
    assert first.name.endswith("-" + kept) and second.name.endswith("-" + kept)
    assert sorted(history(records(first))) == [2, 4] and sorted(history(records(second))) == [6]


def test_wandb_takes_array_pictures_and_a_failed_run_exits_1(offline_only, tmp_path):
    """Array pictures (HWC, CHW); a failed evaluation and a process that ends before training
    did both exit 1; sys.exit and sys.excepthook, which W&B takes while a run is on, come back."""
    import numpy as np

    hooks = (sys.exit, sys.excepthook)
    tracker = WandbTracker()
    tracker.on_start(RunStart(tmp_path / "run", "tiny", {"name": "tiny", "phases": [{"name": "p"}], "train": {"steps": 3}}))
    tracker.on_metrics(1, {"step": 1, "p/t@e": 1.0})
    tracker.on_image("picture", np.zeros((5, 7, 3), dtype=np.uint8), 1)
    tracker.on_image("picture", np.ones((3, 4, 6), dtype=np.float32), 2)  # CHW
    tracker.on_end({"steps": 3, "metrics": {"x": float("nan")}, "errors": ["metric `x` failed"]})
    assert (sys.exit, sys.excepthook) == hooks
    (one,) = offline_runs(tmp_path / "run")
    recs = records(one)
    steps = history(recs)
    assert steps[1]["loss/p/t@e"] == 1.0
    assert [(steps[s]["picture.width"], steps[s]["picture.height"]) for s in (1, 2)] == [(7, 5), (6, 4)]
    assert [r["exit"]["exit_code"] for r in recs if r["type"] == "exit"] == [1]

    other = WandbTracker()
    other.on_start(RunStart(tmp_path / "other", "tiny", {"name": "tiny"}))
    other.on_metrics(1, {"step": 1, "score": 2.0})
    other.abandon()  # what runs at exit when training never finished
    assert (sys.exit, sys.excepthook) == hooks
    recs = records(offline_runs(tmp_path / "other")[0])
    assert history(recs)[1]["metric/score"] == 2.0 and [r["exit"]["exit_code"] for r in recs if r["type"] == "exit"] == [1]


def test_wandb_is_a_named_tracker_of_the_std_plugin(registry):
    entry = registry.entries["trackers"]["wandb"]
    assert entry.plugin == "std" and entry.obj is WandbTracker and not WandbTracker.always


def test_wandb_missing_package_is_u004(cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    code, _, err = cli("compile-and-train", GAN, "--out", tmp_path / "run", "--track", "wandb")
    assert code == 2 and "U004" in err and "`--track wandb` needs the `wandb` package" in err and "pip install wandb" in err
    assert not (tmp_path / "run").exists()


def test_wandb_too_old_is_u004(cli, tmp_path, monkeypatch):
    """A wandb without `reinit="create_new"` (before 0.19.10) is named before the run starts."""
    import importlib.metadata

    real_spec, real_version = importlib.util.find_spec, importlib.metadata.version
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "wandb" else real_spec(name, *a))
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.19.9" if name == "wandb" else real_version(name))
    code, _, err = cli("compile-and-train", GAN, "--out", tmp_path / "run", "--track", "wandb")
    assert code == 2 and "U004" in err and "needs wandb 0.19.10 or newer, and wandb 0.19.9 is installed (`pip install -U wandb`)" in err
    assert not (tmp_path / "run").exists()
