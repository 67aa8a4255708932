"""One process trains in a run directory at a time; a run stopped before its first checkpoint
restarts afresh with the documented line; what a killed process left half-written goes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from unigen.errors import UnigenError
from unigen.runs.driver import train_run
from unigen.runs.lock import RunLock

GAN = ROOT / "specs" / "gan-ring.yaml"
VAE = ROOT / "specs" / "vae-digits.yaml"
SMALL = ["train.log_every=2", "train.eval_samples=100", "networks.generator.hidden=[16]", "networks.discriminator.hidden=[16]", "train.batch_size=32"]


def train(out: Path, steps: int, registry, spec: Path = GAN, opts: list[str] = SMALL, **kw):
    return train_run(spec, opts, out=str(out), steps=steps, device="cpu", registry=registry, quiet=True, **kw)


def steps_of(run: Path) -> list[int]:
    return [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())]


def test_run_lock_held_elsewhere_refuses_a_second_trainer_and_writes_nothing(tmp_path: Path, registry):
    run = train(tmp_path / "run", 4, registry)
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    with RunLock(run):  # another process's lock (flock treats each open file on its own)
        with pytest.raises(UnigenError) as info:
            train(run, 6, registry, resume="auto")
    d = info.value.diagnostics[0]
    assert d.code == "R002" and "is in use" in d.message and f"process {os.getpid()}" in d.message and "wait for that run" in d.hint
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # nothing written, nothing lost
    # Released, the same command continues the run.
    assert json.loads((train(run, 6, registry, resume="auto") / "summary.json").read_text())["steps"] == 6


def test_run_lock_of_a_dead_process_does_not_block(tmp_path: Path, registry):
    run = train(tmp_path / "run", 2, registry)
    # A process that took the lock and was killed: the kernel dropped its flock, the file stays.
    code = f"import sys, os; sys.path.insert(0, {str(ROOT)!r}); from unigen.runs.lock import RunLock; RunLock(sys.argv[1]).acquire(); os._exit(0)"
    subprocess.run([sys.executable, "-c", code, str(run)], check=True)
    assert "process" in (run / ".lock").read_text()
    assert steps_of(train(run, 4, registry, resume="auto")) == [2, 4]


def test_two_processes_resuming_one_run_one_is_refused_and_no_step_is_duplicated(tmp_path: Path, registry):
    run = train(tmp_path / "run", 2, registry)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "unigen", "compile-and-train", str(GAN), *SMALL, "--out", str(run), "--resume", "auto", "--device", "cpu", "--quiet"]
    first = subprocess.Popen([*cmd, "--steps", "3000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while first.poll() is None and str(first.pid) not in ((run / ".lock").read_text() if (run / ".lock").exists() else ""):
            assert time.time() < deadline, "the first process never took the lock"
            time.sleep(0.05)
        second = subprocess.run([*cmd, "--steps", "3000"], env=env, capture_output=True, text=True, timeout=120)
    finally:
        out, err = first.communicate(timeout=600)
    assert second.returncode == 2 and second.stderr.startswith("R002 ") and f"process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, err
    # The first run's row (step 2, its last), then the resumed run's, each step once (the last
    # with the final metrics): one process's rows, none interleaved from the refused one.
    assert steps_of(run) == [2, *range(4, 3001, 2)]
    assert (run / "train.log").read_text().count(f"resumed {run} on") == 1  # one process resumed it


def test_run_stopped_before_its_first_checkpoint_restarts_afresh_there(tmp_path: Path, registry, capsys):
    run = train(tmp_path / "run", 4, registry)
    for ckpt in (run / "checkpoints").iterdir():  # as if killed before the first checkpoint
        ckpt.unlink()
    (run / "summary.json").unlink()
    again = train(run, 4, registry, resume="auto")
    assert "holds no checkpoint yet" in capsys.readouterr().err
    summary = json.loads((again / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["resumed_from"] is None
    assert steps_of(again) == [2, 4]  # a fresh metrics.csv, not the killed run's rows appended
    fresh = train(tmp_path / "fresh", 4, registry)
    assert (again / "checkpoints" / "step_00000004.pt").read_bytes() != b"" and steps_of(fresh) == steps_of(again)
    # Another spec's directory without checkpoints is not written over.
    for ckpt in (run / "checkpoints").iterdir():
        ckpt.unlink()
    with pytest.raises(UnigenError) as info:
        train(run, 4, registry, spec=VAE, opts=["train.batch_size=32", "networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]"], resume="auto")
    d = info.value.diagnostics[0]
    assert d.code == "R002" and "started for a different spec" in d.message and "never writes over another run" in d.message


def test_temporaries_a_killed_process_left_are_removed_on_resume(tmp_path: Path, registry):
    run = train(tmp_path / "run", 2, registry)
    left = [run / "checkpoints" / ".abcd.tmp", run / ".metrics.csv.x1y2.tmp", run / "samples" / ".step.png.zz.tmp"]
    for p in left:
        p.write_bytes(b"half a file")
    kept = run / "checkpoints" / "notes.txt"
    kept.write_text("mine")
    train(run, 4, registry, resume="auto")
    assert not any(p.exists() for p in left) and kept.read_text() == "mine"


# Every shipped spec that names `train.best`, made small (vae-mnist on generated IDX files).
SMALL_BEST = {
    "vae-mnist": ["networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]", "variables.z.shape=[2]", "metrics=[elbo]"],
    "vae-digits": ["networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]"],
    "iwae-digits": ["networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]", "metrics=[elbo]"],
    "iwae-mnist": ["networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]", "variables.z.shape=[2]", "metrics=[elbo]"],
    "made-digits": ["networks.made.hidden=[16]"],
    "pixelcnn-digits": ["networks.pixelcnn.channels=4", "networks.pixelcnn.layers=2"],
    "avb-digits": ["networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]", "networks.adversary.hidden=[16]"],
}


def test_every_shipped_spec_with_train_best_is_in_the_nproc_test():
    named = {p.stem for p in (ROOT / "specs").glob("*.yaml") if "\n  best:" in p.read_text()}
    assert named == set(SMALL_BEST)


@pytest.mark.parametrize("name", sorted(SMALL_BEST))
def test_nproc_per_node_two_with_train_best_finishes(name: str, tmp_path: Path, registry, monkeypatch):
    """The best checkpoint gathers every rank's streams, so every rank takes part in it (a rank
    that skipped it left the other waiting for ever)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    opts = [*SMALL_BEST[name], "train.batch_size=32", "train.eval_every=8", "train.log_every=2"]  # one evaluation: the end
    if "mnist" in name:
        from test_mnist import write_idx

        write_idx(tmp_path / "mnist", n_train=64, n_test=16)
        opts.append(f"data.path={tmp_path / 'mnist'}")
    run = train_run(ROOT / "specs" / f"{name}.yaml", opts, out=str(tmp_path / "run"), steps=8, device="cpu", registry=registry, quiet=True, nproc_per_node=2)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 8 and summary["best"]["metric"]
    assert (run / "checkpoints" / "best").read_text().strip().startswith("step_")
