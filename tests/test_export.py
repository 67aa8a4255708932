"""`unigen export`: the networks' weights of a run's newest checkpoint, as safetensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT
from safetensors import safe_open
from safetensors.torch import load_file

from unigen.runs.checkpoints import load_checkpoint
from unigen.runs.driver import train_run

GAN = ROOT / "specs" / "gan-ring.yaml"
OPTS = ["networks.generator.hidden=[16]", "networks.discriminator.hidden=[16]", "train.batch_size=32", "train.eval_samples=100", "train.checkpoint_every=2", "train.log_every=2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry) -> Path:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_run(GAN, OPTS, out=str(tmp_path_factory.mktemp("export") / "run"), steps=3, device="cpu", registry=registry, quiet=True)
    finally:
        torch.set_num_threads(old)


def test_export_writes_the_newest_checkpoints_weights(run: Path, cli):
    code, out, err = cli("export", run)
    assert code == 0, err
    path = run / "weights.safetensors"
    assert f"to {path}" in out and "of step 3" in out
    ckpt = load_checkpoint(run / "checkpoints" / "step_00000003.pt")
    weights = load_file(path)
    assert weights.keys() == ckpt["nets"].keys()
    assert {k.split(".")[0] for k in weights} == {"generator", "discriminator"}
    for key, tensor in ckpt["nets"].items():
        assert weights[key].dtype == tensor.dtype and torch.equal(weights[key], tensor), key
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "unigen-weights" and meta["step"] == "3"
    assert meta["checkpoint"].endswith("step_00000003.pt") and meta["spec_digest"] == ckpt["spec_digest"]


def test_export_to_a_named_file_and_from_a_checkpoint_file(run: Path, tmp_path: Path, cli):
    out = tmp_path / "g.safetensors"
    code, _, err = cli("export", run / "checkpoints" / "step_00000002.pt", "-o", out)
    assert code == 0, err
    older = load_checkpoint(run / "checkpoints" / "step_00000002.pt")["nets"]
    weights = load_file(out)
    assert all(torch.equal(weights[k], v) for k, v in older.items())
    newest = load_checkpoint(run / "checkpoints" / "step_00000003.pt")["nets"]
    assert not all(torch.equal(newest[k], v) for k, v in older.items())  # the file named was exported, not the newest


def test_export_follows_last_past_a_corrupt_checkpoint(run: Path, tmp_path: Path, cli):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "step_00000003.pt").write_bytes(b"torn")
    code, out, err = cli("export", copy, "-o", tmp_path / "w.safetensors")
    assert code == 0, err
    assert "warning:" in err and "falling back to `step_00000002.pt`" in err and "of step 2" in out


def test_export_errors_are_coded(tmp_path: Path, cli):
    code, _, err = cli("export", tmp_path / "nope")
    assert code == 2 and err.startswith("R002 ") and "neither a run directory nor a checkpoint file" in err
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    code, _, err = cli("export", empty)
    assert code == 1 and err.startswith("C001 ") and "holds no checkpoint" in err
    bogus = tmp_path / "x.pt"
    bogus.write_bytes(b"not a checkpoint")
    code, _, err = cli("export", bogus)
    assert code == 1 and err.startswith("C001 ") and "cannot be loaded safely" in err


def test_export_unwritable_output_is_r002(run: Path, tmp_path: Path, cli):
    code, _, err = cli("export", run, "-o", tmp_path / "no" / "such" / "dir" / "w.safetensors")
    assert code == 1 and err.startswith("R002 ") and "cannot write" in err and "Traceback" not in err
