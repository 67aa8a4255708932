"""Resuming a run: `--resume auto|PATH`, bit for bit, from the newest readable checkpoint,
refusing checkpoints of another spec and checkpoints that hold anything but tensors and data."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, assert_equal

from unigen.errors import UnigenError
from unigen.runs.checkpoints import load_checkpoint, newest_checkpoint
from unigen.runs.driver import train_run
from unigen.runs.metrics_log import MetricsLog

GAN = ROOT / "specs" / "gan-ring.yaml"
VAE = ROOT / "specs" / "vae-digits.yaml"
# Small and quick; samples every 4 steps check that pictures do not disturb training's noise.
GAN_OPTS = ["train.log_every=3", "train.eval_samples=200", "train.sample_every=4", "networks.generator.hidden=[32, 32]", "networks.discriminator.hidden=[32, 32]", "train.batch_size=64"]
VAE_OPTS = ["train.log_every=3", "train.eval_samples=200", "train.sample_every=4", "networks.encoder.hidden=[32]", "networks.decoder.hidden=[32]", "train.batch_size=32"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


def train(spec: Path, opts: list[str], out: Path, steps: int, registry, **kw: Any) -> Path:
    return train_run(spec, opts, out=str(out), steps=steps, device="cpu", registry=registry, quiet=True, **kw)


def final_state(run: Path) -> dict[str, Any]:
    return load_checkpoint(run / "checkpoints" / (run / "checkpoints" / "last").read_text().strip())


def loss_rows(run: Path) -> dict[str, dict[str, str]]:
    """metrics.csv losses by step (the last step's one row holds its losses and final metrics)."""
    rows: dict[str, dict[str, str]] = {}
    for r in csv.DictReader((run / "metrics.csv").open()):
        rows.setdefault(r["step"], {k: v for k, v in r.items() if "/" in k})
    return rows


def test_resume_in_a_fresh_process_is_bit_exact(tmp_path: Path, registry):
    """12 steps == 5 steps, then a new process resuming to 12: networks, optimizers, data
    order and random streams identical (torch.equal), and the same losses logged."""
    whole = train(GAN, GAN_OPTS, tmp_path / "whole", 12, registry)
    part = train(GAN, GAN_OPTS, tmp_path / "part", 5, registry)
    assert final_state(part)["step"] == 5
    cmd = [sys.executable, "-m", "unigen", "compile-and-train", str(GAN), *GAN_OPTS, "--out", str(part), "--steps", "12", "--device", "cpu", "--quiet", "--resume", "auto"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    a, b = final_state(whole), final_state(part)
    assert a["step"] == b["step"] == 12
    for key in ("nets", "optimizers", "batches", "rng"):
        assert_equal(a[key], b[key], key)
    same_steps = loss_rows(part)
    assert loss_rows(whole) == {k: v for k, v in same_steps.items() if k != "5"}
    # The resumed run appended to its files: rows up to step 5 kept, spec files untouched; one
    # row per logged step (the last step's holds its losses and the final metrics).
    steps = [r["step"] for r in csv.DictReader((part / "metrics.csv").open())]
    assert steps == ["3", "5", "6", "9", "12"]
    assert (part / "spec.yaml").read_text() == GAN.read_text()
    summary = json.loads((part / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["resumed_from"]["step"] == 5
    assert "resumed" in (part / "train.log").read_text() and "train.steps: run 5, now 12" in (part / "train.log").read_text()


def test_resume_vae_in_process_is_bit_exact(tmp_path: Path, registry):
    whole = train(VAE, VAE_OPTS, tmp_path / "whole", 9, registry)
    part = train(VAE, VAE_OPTS, tmp_path / "part", 4, registry)
    train(VAE, VAE_OPTS, part, 9, registry, resume=str(part))  # PATH: the run directory
    a, b = final_state(whole), final_state(part)
    for key in ("nets", "optimizers", "batches", "rng"):
        assert_equal(a[key], b[key], key)
    assert loss_rows(whole) == {k: v for k, v in loss_rows(part).items() if k != "4"}


def test_resume_auto_falls_back_from_a_corrupt_last_checkpoint(tmp_path: Path, registry, cli):
    run = train(GAN, [*GAN_OPTS, "train.checkpoint_every=2"], tmp_path / "r", 6, registry)
    ckpt = run / "checkpoints"
    assert (ckpt / "last").read_text().strip() == "step_00000006.pt"
    (ckpt / "step_00000006.pt").write_bytes(b"not a checkpoint at all")
    code, out, err = cli("compile-and-train", GAN, *GAN_OPTS, "train.checkpoint_every=2", "--out", run, "--steps", "8", "--device", "cpu", "--quiet", "--resume", "auto")
    assert code == 0, err
    assert "warning:" in err and "step_00000006.pt" in err and "falling back to `step_00000004.pt` (step 4)" in err
    log = (run / "train.log").read_text()
    assert "falling back to `step_00000004.pt`" in log and "from " + str(ckpt / "step_00000004.pt") + " at step 4" in log
    assert json.loads((run / "summary.json").read_text())["resumed_from"]["step"] == 4
    steps = [r["step"] for r in csv.DictReader((run / "metrics.csv").open())]
    assert steps == ["3", "6", "8"]  # the rows after step 4 were replayed, not kept twice
    assert load_checkpoint(ckpt / "step_00000006.pt")["step"] == 6  # rewritten whole by the replay


def test_resume_newest_checkpoint_survives_a_bad_pointer(tmp_path: Path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    for step in (2, 4):
        torch.save({"step": step, "nets": {}}, ckpt / f"step_{step:08d}.pt")
    (ckpt / "last").write_text("../../etc/passwd\n")
    path, state, warnings = newest_checkpoint(tmp_path)
    assert path.name == "step_00000004.pt" and state["step"] == 4
    assert warnings and "checkpoints/last" in warnings[0]
    (ckpt / "last").write_text("step_00000009.pt\n")  # points at a file that is gone
    path, _, warnings = newest_checkpoint(tmp_path)
    assert path.name == "step_00000004.pt" and "`step_00000009.pt` is missing" in warnings[0]
    for p in ckpt.glob("step_*.pt"):
        p.write_bytes(b"\x00" * 10)
    with pytest.raises(UnigenError) as info:
        newest_checkpoint(tmp_path)
    assert info.value.diagnostics[0].code == "C001" and "no readable checkpoint" in str(info.value)


def test_resume_refuses_a_checkpoint_of_another_spec_and_says_what_differs(tmp_path: Path, registry, cli):
    run = train(GAN, GAN_OPTS, tmp_path / "r", 2, registry)
    before = (run / "metrics.csv").read_text()
    code, _, err = cli("compile-and-train", GAN, *GAN_OPTS, "networks.generator.hidden=[16]", "phases.generator.optim.lr=0.1", "--out", run, "--steps", "4", "--quiet", "--resume", "auto")
    assert code == 1
    assert err.startswith("C001 ") and "different spec" in err
    assert "networks.generator.hidden: checkpoint [32, 32], spec [16]" in err
    assert "phases.1.optim.lr: checkpoint 0.0002, spec 0.1" in err
    assert "Traceback" not in err
    assert (run / "metrics.csv").read_text() == before  # nothing touched


def test_resume_refuses_a_checkpoint_that_pickles_an_object(tmp_path: Path, cli):
    """Only tensors and plain data are unpickled: the payload never runs."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    torch.save({"step": 1, "nets": {}, "x": Payload()}, evil)
    code, _, err = cli("compile-and-train", GAN, *GAN_OPTS, "--out", tmp_path / "r", "--steps", "2", "--quiet", "--resume", evil)
    assert code == 1
    assert err.startswith("C001 ") and "cannot be loaded safely" in err and "Traceback" not in err
    assert not marker.exists()
    assert not (tmp_path / "r").exists()  # refused before any file was written
    # The payload is real: a full unpickle would have run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_resume_from_a_checkpoint_file_into_a_new_directory(tmp_path: Path, registry):
    src = train(GAN, [*GAN_OPTS, "train.checkpoint_every=2"], tmp_path / "src", 4, registry)
    fork = train(GAN, GAN_OPTS, tmp_path / "fork", 6, registry, resume=str(src / "checkpoints" / "step_00000002.pt"))
    assert (fork / "spec.yaml").is_file() and (fork / "program.txt").is_file()
    assert final_state(fork)["step"] == 6
    assert [r["step"] for r in csv.DictReader((fork / "metrics.csv").open())] == ["3", "6"]
    assert final_state(src)["step"] == 4  # the source run is left alone


def test_resume_directory_rules(tmp_path: Path, registry, cli):
    # `auto` needs --out.
    code, _, err = cli("compile-and-train", GAN, "--steps", "1", "--quiet", "--resume", "auto")
    assert code == 2 and err.startswith("R002 ") and "--out" in err
    # `auto` on a directory that does not exist yet starts a new run there.
    new = train(GAN, GAN_OPTS, tmp_path / "new", 2, registry, resume="auto")
    assert json.loads((new / "summary.json").read_text())["resumed_from"] is None
    # A non-empty directory that is not a run is not written into.
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    code, _, err = cli("compile-and-train", GAN, "--out", other, "--steps", "1", "--quiet", "--resume", "auto")
    assert code == 2 and "R002" in err and "not a unigen run directory" in err
    # A checkpoint is not continued into somebody else's run.
    code, _, err = cli("compile-and-train", GAN, *GAN_OPTS, "--out", other, "--steps", "3", "--quiet", "--resume", new)
    assert code == 2 and "R002" in err and "not empty" in err
    assert (other / "keep.txt").read_text() == "precious" and sorted(p.name for p in other.iterdir()) == ["keep.txt"]
    # A checkpoint past the requested steps is refused; a missing PATH too.
    code, _, err = cli("compile-and-train", GAN, *GAN_OPTS, "--out", new, "--steps", "1", "--quiet", "--resume", "auto")
    assert code == 1 and "C001" in err and "past `train.steps`" in err
    code, _, err = cli("compile-and-train", GAN, "--steps", "1", "--quiet", "--resume", tmp_path / "nope.pt")
    assert code == 1 and "C001" in err and "no such checkpoint" in err


def test_resume_metrics_keep_rows_up_to_the_checkpoint(tmp_path: Path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,time_s,a/b\n1,0.1,5\n2,0.2,4\n3,0.3,3\n4,0.4")  # a torn last line
    log = MetricsLog.resume(path, 2)
    assert [r["step"] for r in log.rows] == ["1", "2"] and log.last_time() == 0.2
    log.add({"step": 3, "time_s": 0.5, "a/b": 1.5, "m": 7})
    rows = list(csv.DictReader(path.open()))
    assert [(r["step"], r["a/b"], r["m"]) for r in rows] == [("1", "5", ""), ("2", "4", ""), ("3", "1.5", "7")]


@pytest.mark.parametrize(("key", "value", "says"), [
    ("step", "7", "its `step` is '7'; expected a whole number of at least 0"),
    ("step", float("nan"), "its `step` is nan"),
    ("step", -3, "its `step` is -3"),
    ("step", True, "its `step` is True"),
    ("nets", "weights", "its `nets` is not a mapping of parameter names to tensors"),
    ("nan_weight", None, "its weights hold NaN or infinite values"),
    ("batches", {"order": torch.tensor([0.5, 1.5]), "pos": 0}, "its data order (`batches.order`) is not a list of row indices"),
    ("batches", {"order": torch.arange(10), "pos": 11}, "its data position (`batches.pos`) is 11; expected a whole number from 0 to 10"),
    ("batches", {"order": torch.arange(10), "pos": 2.5}, "its data position (`batches.pos`) is 2.5"),
    ("batches", {"order": torch.arange(10) - 3, "pos": 2}, "holds negative row indices"),
])
def test_resume_refuses_a_doctored_checkpoint_with_c001(tmp_path: Path, registry, cli, key: str, value: Any, says: str):
    run = train(GAN, GAN_OPTS, tmp_path / "run", 3, registry)
    path = run / "checkpoints" / "step_00000003.pt"
    state = torch.load(path, weights_only=True)
    if key == "nan_weight":
        first = next(iter(state["nets"]))
        state["nets"][first] = torch.full_like(state["nets"][first], float("nan"))
    else:
        state[key] = value
    torch.save(state, path)
    code, _, err = cli("compile-and-train", GAN, *GAN_OPTS, "--out", run, "--steps", "6", "--quiet", "--resume", str(path))
    assert code == 1 and err.startswith("C001 ") and "is damaged" in err and says in err and "Traceback" not in err, err


def test_out_that_is_a_file_or_a_device_is_r002(tmp_path: Path, cli):
    file = tmp_path / "a-file"
    file.write_text("keep me")
    for out in (file, Path("/dev/null")):
        code, _, err = cli("compile-and-train", GAN, *GAN_OPTS, "--out", out, "--steps", "1", "--quiet")
        assert code == 2 and err.startswith("R002 ") and "is not a directory" in err and "Traceback" not in err, err
    assert file.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink-loop", "100kB"])
def test_resume_falls_back_with_a_warning_from_a_last_pointer_that_is_no_file_name(tmp_path: Path, registry, capsys, kind: str):
    run = train(GAN, [*GAN_OPTS, "train.checkpoint_every=2"], tmp_path / "run", 4, registry)
    pointer = run / "checkpoints" / "last"
    pointer.unlink()
    if kind == "directory":
        pointer.mkdir()
    elif kind == "fifo":
        os.mkfifo(pointer)  # a read would block for ever
    elif kind == "symlink-loop":
        pointer.symlink_to(pointer)
    else:
        pointer.write_text("step_00000004.pt" + " " * 100_000)
    capsys.readouterr()
    again = train(GAN, [*GAN_OPTS, "train.checkpoint_every=2"], run, 6, registry, resume="auto")
    err = capsys.readouterr().err
    assert "checkpoints/last in" in err and "is unreadable" in err and "using the newest checkpoint instead" in err
    assert json.loads((again / "summary.json").read_text())["resumed_from"]["step"] == 4
