"""SIGINT and SIGTERM during training: the step finishes, a checkpoint is saved, the process
exits 130 / 143 saying how to resume, and `--resume auto` runs to the end."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from unigen.runs.checkpoints import load_checkpoint

GAN = ROOT / "specs" / "gan-ring.yaml"
STEPS = 400
# A tiny model so the whole run takes a second or two; metrics.csv appears with the first row
# (step 4), so the test knows when training has started.
OPTS = ["networks.generator.hidden=[8]", "networks.discriminator.hidden=[8]", "train.batch_size=16", "train.log_every=4", "train.eval_samples=100"]
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "unigen", "compile-and-train", str(GAN), *OPTS, "--out", str(out), "--steps", str(STEPS), "--device", "cpu", "--quiet", *extra]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_checkpoints_exits_and_resumes(sig: signal.Signals, code: int, tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.Popen(command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.csv").exists():  # the first training steps are done
            assert proc.poll() is None, f"the run ended before it was signalled: {proc.communicate()}"
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.01)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert stderr.startswith("R003 ") and sig.name in stderr and "Traceback" not in stderr
    assert "--resume auto" in stderr and str(out) in stderr
    assert "run written" not in stdout and not (out / "summary.json").exists()
    # `last` points at a whole checkpoint of the step the signal interrupted.
    ckpt = out / "checkpoints"
    state = load_checkpoint(ckpt / (ckpt / "last").read_text().strip())
    stopped = state["step"]
    assert 1 <= stopped < STEPS, "the signal came after the run had ended"
    assert f"stopped by {sig.name} after step {stopped}" in (out / "train.log").read_text()
    assert not list(ckpt.glob(".*.tmp"))

    resumed = subprocess.run(command(out, "--resume", "auto"), capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["resumed_from"]["step"] == stopped
    steps = [int(r["step"]) for r in csv.DictReader((out / "metrics.csv").open())]
    assert steps == list(range(4, STEPS + 1, 4))  # every logged step once (the last one with the final evaluation)


def test_signal_handler_sets_a_flag_then_stops_at_once_and_is_restored():
    from unigen.runs.signals import StopSignals

    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second signal does not wait for the step
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGTERM) is before
