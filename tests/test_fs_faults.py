"""The filesystem against a run: fifos where a checkpoint, a run file or a picture is expected,
a full disk or a read-only file system while a run starts, logs, draws or checkpoints, doctored
and randomly mutated checkpoints. Each ends in a coded message and a non-zero exit, never a
traceback or a hang, and what was written before (the previous checkpoint, `last`) stays."""

from __future__ import annotations

import copy
import csv
import errno
import json
import os
import pathlib
import random
import re
import shutil
import signal
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT

from unigen.runs import rundir
from unigen.runs.checkpoints import load_checkpoint
from unigen.runs.driver import train_run

GAN = ROOT / "specs" / "gan-ring.yaml"
OPTS = ["networks.generator.hidden=[8]", "networks.discriminator.hidden=[8]", "train.batch_size=16", "train.log_every=2", "train.eval_samples=100", "train.checkpoint_every=2", "train.sample_every=2"]
CODED = re.compile(r"(^|\n|: )[A-Z]\d{3} ")  # a diagnostic, located (`file:line: path: CODE`) or not


@pytest.fixture(autouse=True)
def no_hang():
    """A read that blocks (a fifo opened for reading) fails the test instead of hanging it."""

    def blocked(signum, frame):
        raise AssertionError("blocked: something opened a fifo or waited for ever")

    old = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(90)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, registry) -> Path:
    """4 steps, checkpoints at 2 and 4 (`last` names step 4), samples at 2 and 4."""
    run = tmp_path_factory.mktemp("base") / "run"
    return train_run(GAN, OPTS, out=str(run), steps=4, device="cpu", registry=registry, quiet=True)


@pytest.fixture
def run(base_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def resume(cli, run: Path, steps: int = 8, how: str = "auto") -> tuple[int, str, str]:
    return cli("compile-and-train", GAN, *OPTS, "--out", run, "--steps", steps, "--device", "cpu", "--quiet", "--resume", how)


def last(run: Path) -> str:
    return (run / "checkpoints" / "last").read_text().strip()


def steps_of(run: Path) -> list[int]:
    return [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())]


def files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def assert_coded(code: int, err: str, prefix: str) -> None:
    assert code != 0 and err.startswith(prefix + " ") and "Traceback" not in err, (code, err)


def enospc(what: int = errno.ENOSPC) -> OSError:
    return OSError(what, os.strerror(what))


# ----------------------------------------------------------------------------- fifos
def test_fifo_given_as_the_checkpoint_to_resume_is_c001_and_nothing_starts(tmp_path: Path, cli):
    fifo = tmp_path / "ckpt.pt"
    os.mkfifo(fifo)
    code, _, err = cli("compile-and-train", GAN, *OPTS, "--out", tmp_path / "new", "--steps", 2, "--quiet", "--resume", fifo)
    assert_coded(code, err, "C001")
    assert code == 1 and f"`{fifo}` is a fifo (named pipe), not a checkpoint file" in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", ["last-names-it", "no-last", "resume-path"])
def test_fifo_in_place_of_a_checkpoint_is_refused_before_it_is_opened(run: Path, cli, where: str):
    ckpt = run / "checkpoints"
    (ckpt / "step_00000004.pt").unlink()
    os.mkfifo(ckpt / "step_00000004.pt")
    if where == "resume-path":
        code, _, err = resume(cli, run, how=str(ckpt / "step_00000004.pt"))
        assert_coded(code, err, "C001")
        assert "step_00000004.pt` is a fifo (named pipe), not a checkpoint file" in err
        return
    if where == "no-last":
        (ckpt / "last").unlink()
    code, _, err = resume(cli, run, steps=6)
    assert code == 0, err
    assert "`step_00000004.pt` is unreadable" in err and "is a fifo" in err and "falling back to `step_00000002.pt` (step 2)" in err
    assert json.loads((run / "summary.json").read_text())["resumed_from"]["step"] == 2
    assert stat.S_ISREG(os.stat(ckpt / "step_00000004.pt").st_mode)  # replayed and saved over the fifo
    assert steps_of(run) == [2, 4, 6]


@pytest.mark.parametrize("name", ["metrics.csv", "train.log", ".lock", "spec.resolved.yaml"])
def test_fifo_in_place_of_a_run_file_is_r002_before_anything_is_opened(run: Path, cli, name: str):
    (run / name).unlink()
    os.mkfifo(run / name)
    before = files(run)
    code, _, err = resume(cli, run)
    assert_coded(code, err, "R002")
    assert f"`{run / name}` is a fifo (named pipe)" in err and "move" in err
    assert files(run) == before and stat.S_ISFIFO(os.stat(run / name).st_mode)


def test_sample_output_that_is_a_fifo_is_e004_and_stays(run: Path, tmp_path: Path, cli):
    out = tmp_path / "pic.png"
    os.mkfifo(out)
    code, _, err = cli("sample", run, "-n", 8, "-o", out)
    assert_coded(code, err, "E004")
    assert f"cannot write `{out}`: it is a fifo (named pipe), not a regular file" in err
    assert stat.S_ISFIFO(os.stat(out).st_mode)


# ------------------------------------------------------ full disk, read-only file system
@pytest.mark.parametrize("fault", ["torch.save", "os.replace", "mkstemp"])
@pytest.mark.parametrize("what", [errno.ENOSPC, errno.EROFS], ids=["ENOSPC", "EROFS"])
def test_checkpoint_that_cannot_be_written_is_r002_and_the_previous_one_stays(run: Path, cli, monkeypatch, fault: str, what: int):
    real_save, real_replace, real_mkstemp = torch.save, os.replace, tempfile.mkstemp

    def save(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("step") == 6:
            f.write(b"half a checkpoint")
            raise enospc(what)
        return real_save(obj, f, *a, **k)

    def replace(src, dst):
        if Path(dst).name == "step_00000006.pt":
            raise enospc(what)
        return real_replace(src, dst)

    def mkstemp(*a, **k):
        if Path(k.get("dir", "")).name == "checkpoints":
            raise enospc(what)
        return real_mkstemp(*a, **k)

    target = {"torch.save": (torch, "save", save), "os.replace": (os, "replace", replace), "mkstemp": (tempfile, "mkstemp", mkstemp)}[fault]
    monkeypatch.setattr(*target)
    code, _, err = resume(cli, run)
    assert_coded(code, err, "R002")
    assert code == 1 and "step_00000006.pt` (the checkpoint)" in err and os.strerror(what) in err and "--resume auto" in err
    ckpt = run / "checkpoints"
    assert last(run) == "step_00000004.pt" and load_checkpoint(ckpt / "step_00000004.pt")["step"] == 4
    assert not (ckpt / "step_00000006.pt").exists() and not list(ckpt.glob(".*.tmp"))
    monkeypatch.undo()  # space again: the same command continues from step 4
    code, _, err = resume(cli, run)
    assert code == 0, err
    assert steps_of(run) == [2, 4, 6, 8] and last(run) == "step_00000008.pt"  # each logged step once (a 4-step run's last row is its step 4)


@pytest.mark.parametrize("name", ["spec.resolved.yaml", "summary.json"])
def test_full_disk_at_the_start_or_the_end_of_a_run_is_r002_and_the_restart_line_finishes_it(tmp_path: Path, cli, monkeypatch, name: str):
    real = rundir.atomic_write

    def write(path, data):
        if Path(path).name == name:
            raise enospc()
        return real(path, data)

    monkeypatch.setattr(rundir, "atomic_write", write)
    out = tmp_path / "run"
    code, _, err = cli("compile-and-train", GAN, *OPTS, "--out", out, "--steps", 4, "--device", "cpu", "--quiet")
    assert_coded(code, err, "R002")
    assert code == 1 and f"cannot write `{out / name}`: No space left on device" in err and "free space" in err
    assert not (out / name).exists()
    if name == "summary.json":  # the trained state was saved before
        assert last(out) == "step_00000004.pt" and load_checkpoint(out / "checkpoints" / "step_00000004.pt")["step"] == 4
    monkeypatch.undo()
    code, _, err = resume(cli, out, steps=4)
    assert code == 0, err
    assert steps_of(out) == [2, 4]  # the final row once: a finished run's restart writes it again, not twice
    (final,) = ({k: v for k, v in r.items() if "/" in k and not k.startswith("lr/")} for r in list(csv.DictReader((out / "metrics.csv").open()))[1:])
    clean = tmp_path / "clean"
    assert cli("compile-and-train", GAN, *OPTS, "--out", clean, "--steps", 4, "--device", "cpu", "--quiet")[0] == 0
    (expected,) = ({k: v for k, v in r.items() if "/" in k and not k.startswith("lr/")} for r in list(csv.DictReader((clean / "metrics.csv").open()))[1:])
    assert final == expected and all(final.values())  # the final row has the last window's losses, as without the restart
    assert json.loads((out / "summary.json").read_text())["steps"] == 4


@pytest.mark.parametrize("fault", ["ENOSPC", "fifo"])
def test_sample_picture_that_cannot_be_written_is_r002_and_the_checkpoints_stay(run: Path, cli, monkeypatch, fault: str):
    picture = run / "samples" / "step_00000006.png"
    if fault == "fifo":
        os.mkfifo(picture)
    else:
        real = rundir.atomic_write

        def write(path, data):
            if Path(path).suffix == ".png":
                raise enospc()
            return real(path, data)

        monkeypatch.setattr(rundir, "atomic_write", write)
    code, _, err = resume(cli, run)
    assert_coded(code, err, "R002")
    assert code == 1 and f"cannot write `{picture}`" in err
    assert ("No space left on device" if fault == "ENOSPC" else "it is a fifo (named pipe), not a regular file") in err
    assert last(run) == "step_00000004.pt" and load_checkpoint(run / "checkpoints" / "step_00000004.pt")["step"] == 4


def test_full_disk_while_appending_to_metrics_is_r002_and_the_row_is_written_on_restart(run: Path, cli, monkeypatch):
    real = pathlib.Path.open

    def opened(self, mode="r", *a, **k):
        if self.name == "metrics.csv" and "a" in mode:
            raise enospc()
        return real(self, mode, *a, **k)

    monkeypatch.setattr(pathlib.Path, "open", opened)
    code, _, err = resume(cli, run)
    assert_coded(code, err, "R002")
    assert f"cannot write `{run / 'metrics.csv'}`: No space left on device" in err
    assert steps_of(run) == [2, 4] and last(run) == "step_00000004.pt"
    monkeypatch.undo()
    code, _, err = resume(cli, run)
    assert code == 0, err
    assert steps_of(run) == [2, 4, 6, 8]


def test_out_that_is_dev_null_or_below_it_is_r002_and_dev_null_stays(cli):
    for out, exit_code, says in (("/dev/null", 2, "is not a directory"), ("/dev/null/run", 1, "cannot create run directory")):
        code, _, err = cli("compile-and-train", GAN, *OPTS, "--out", out, "--steps", 1, "--quiet")
        assert_coded(code, err, "R002")
        assert code == exit_code and says in err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_resume_on_a_read_only_file_system_is_r002_and_changes_nothing(run: Path, cli, monkeypatch):
    """EROFS for every write under the run (as root, chmod would not stop a write)."""
    real_open, real_mkstemp = pathlib.Path.open, tempfile.mkstemp
    inside = str(run)

    def opened(self, mode="r", *a, **k):
        if str(self).startswith(inside) and any(c in mode for c in "wax+"):
            raise enospc(errno.EROFS)
        return real_open(self, mode, *a, **k)

    def mkstemp(*a, **k):
        if str(k.get("dir", "")).startswith(inside):
            raise enospc(errno.EROFS)
        return real_mkstemp(*a, **k)

    monkeypatch.setattr(pathlib.Path, "open", opened)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    before = files(run)
    code, _, err = resume(cli, run)
    assert_coded(code, err, "R002")
    assert code == 1 and "Read-only file system" in err
    assert files(run) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory; the EROFS test above stands in")
def test_resume_in_a_directory_without_write_permission_is_r002_and_changes_nothing(run: Path, cli):
    before = files(run)
    modes = {p: p.stat().st_mode for p in [run, *run.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)
    try:
        code, _, err = resume(cli, run)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert_coded(code, err, "R002")
    assert files(run) == before


# ------------------------------------------------------------------ doctored checkpoints
def doctor(state: dict[str, Any], change: str) -> None:
    n = len(state["batches"]["order"])
    first = next(iter(state["optimizers"]))
    moment = next(iter(state["optimizers"][first]["state"].values()))
    if change == "order-out-of-range":
        state["batches"]["order"] = torch.arange(n) + 5
    elif change == "order-too-short":
        state["batches"]["order"], state["batches"]["pos"] = torch.arange(10), 0
    elif change == "order-float":
        state["batches"]["order"] = torch.arange(n).double()
    elif change == "pos-negative":
        state["batches"]["pos"] = -1
    elif change == "step-string":
        state["step"] = "4"
    elif change == "step-nan":
        state["step"] = float("nan")
    elif change == "step-negative":
        state["step"] = -4
    elif change == "nan-weights":
        key = next(iter(state["nets"]))
        state["nets"][key] = torch.full_like(state["nets"][key], float("nan"))
    elif change == "nan-adam-moment":
        moment["exp_avg"] = torch.full_like(moment["exp_avg"], float("nan"))
    elif change == "adam-moment-shape":
        moment["exp_avg"] = torch.zeros(3)
    elif change == "train-seconds":
        state["train_seconds"] = "soon"
    elif change == "nonfinite-list":
        state["nonfinite"] = [1, 2]
    else:
        raise AssertionError(change)


REFUSED = {
    "order-out-of-range": "outside the data's",
    "order-too-short": "has 10 rows, but the data has",
    "order-float": "its data order (`batches.order`) is not a list of row indices",
    "pos-negative": "its data position (`batches.pos`) is -1",
    "step-string": "its `step` is '4'",
    "step-nan": "its `step` is nan",
    "step-negative": "its `step` is -4",
    "nan-weights": "its weights hold NaN or infinite values",
    "nan-adam-moment": "it holds NaN or infinite values (`optimizers.",
    "adam-moment-shape": "has shape [3], but its parameter has",
    "train-seconds": "its `train_seconds` is 'soon'",
    "nonfinite-list": "its `nonfinite` is [1, 2]",
}


@pytest.mark.parametrize("change", sorted(REFUSED))
def test_doctored_checkpoint_given_as_resume_path_is_c001_and_is_not_saved_again(run: Path, cli, change: str):
    path = run / "checkpoints" / "step_00000004.pt"
    state = torch.load(path, weights_only=True)
    doctor(state, change)
    torch.save(state, path)
    doctored = path.read_bytes()
    code, _, err = resume(cli, run, how=str(path))
    assert_coded(code, err, "C001")
    assert code == 1 and str(path) in err and REFUSED[change] in err
    assert path.read_bytes() == doctored and last(run) == "step_00000004.pt"  # not re-saved as a good state


@pytest.mark.parametrize("change", ["step-string", "nan-weights", "nan-adam-moment", "order-float"])
def test_resume_auto_falls_back_from_a_doctored_last_checkpoint_with_a_warning(run: Path, cli, change: str):
    path = run / "checkpoints" / "step_00000004.pt"
    state = torch.load(path, weights_only=True)
    doctor(state, change)
    torch.save(state, path)
    code, _, err = resume(cli, run, steps=6)
    assert code == 0, err
    assert "warning: `step_00000004.pt` is unreadable" in err and REFUSED[change] in err and "falling back to `step_00000002.pt` (step 2)" in err
    again = load_checkpoint(path)  # replayed from step 2: a good state, not the doctored one
    assert again["step"] == 4 and all(bool(torch.isfinite(v).all()) for v in again["nets"].values())
    assert steps_of(run) == [2, 4, 6]


# ------------------------------------------------------------------------------ fuzz
FUZZ_CASES = 16
VALUES: list[Any] = [None, "x", -1, 0, 10**12, 2.5, float("nan"), True, [], {}, [1, 2], {"a": 1}, torch.tensor(float("nan")), torch.zeros(3), torch.zeros(0, dtype=torch.long), torch.ones(2, 2, dtype=torch.uint8)]


def leaves(obj: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a state that a mutation can replace or delete (tuples are left whole)."""
    out = [path] if path else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.extend(leaves(v, path + (k,)))
    return out


def mutate(rng: random.Random, state: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """One random change: a field deleted, an element of a tensor made NaN or out of range, a
    tensor cut short, or a value of another type."""
    state = copy.deepcopy(state)
    where = rng.choice(leaves(state))
    parent = state
    for k in where[:-1]:
        parent = parent[k]
    key, value, roll = where[-1], parent[where[-1]], rng.random()
    if roll < 0.15 and isinstance(parent, dict):
        del parent[key]
        how = "deleted"
    elif roll < 0.4 and isinstance(value, torch.Tensor) and value.numel():
        value = value.clone()
        value.view(-1)[rng.randrange(value.numel())] = rng.choice([float("nan"), 1e30]) if value.is_floating_point() else rng.choice([-5, 10**6])
        parent[key], how = value, "an element changed"
    elif roll < 0.5 and isinstance(value, torch.Tensor):
        parent[key], how = value.flatten()[: max(0, value.numel() - 1)], "cut short"
    else:
        parent[key] = rng.choice(VALUES)
        how = f"= {parent[key]!r}"[:40]
    return state, ".".join(map(str, where)) + " " + how


def test_randomly_mutated_checkpoints_resume_or_are_refused_with_a_code(base_run: Path, tmp_path: Path, cli):
    """Every resume from a mutated checkpoint exits 0 or with a coded message; none raises or
    prints a traceback, and none fails inside a training step (R004) as a state that was
    accepted but cannot be trained would."""
    state = torch.load(base_run / "checkpoints" / "step_00000004.pt", weights_only=True)
    rng = random.Random(20240617)
    outcomes: list[tuple[str, int]] = []
    for i in range(FUZZ_CASES):
        mutated, what = mutate(rng, state)
        run = Path(shutil.copytree(base_run, tmp_path / f"case{i}"))
        (run / "checkpoints" / "step_00000002.pt").unlink()  # no older one to fall back to
        torch.save(mutated, run / "checkpoints" / "step_00000004.pt")
        code, _, err = resume(cli, run, steps=6)
        assert code == 0 or (CODED.search(err) and "Traceback" not in err), (what, code, err)
        assert "R004" not in err, (what, err)
        outcomes.append((what, code))
    assert len(outcomes) == FUZZ_CASES
    assert any(code == 0 for _, code in outcomes) and any(code != 0 for _, code in outcomes), outcomes



# --------------------------------------- drawings, train.log on a full disk, run files' modes
@pytest.mark.parametrize("fmt", ["dot", "svg"])
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_draw_output_that_is_a_fifo_or_a_directory_is_u002_and_stays(tmp_path: Path, cli, kind: str, fmt: str):
    out = tmp_path / f"model.{fmt}"
    os.mkfifo(out) if kind == "fifo" else out.mkdir()
    code, _, err = cli("draw", GAN, "-o", out, "--engine", "matplotlib")
    assert_coded(code, err, "U002")
    says = "a fifo (named pipe)" if kind == "fifo" else "a directory"
    assert code == 1 and f"cannot write `{out}`: it is {says}, not a regular file" in err and "Hint:" in err
    assert (stat.S_ISFIFO if kind == "fifo" else stat.S_ISDIR)(os.stat(out).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left


def test_draw_on_a_full_disk_is_u002_and_the_old_drawing_stays(tmp_path: Path, cli, monkeypatch):
    out = tmp_path / "model.svg"
    out.write_text("the old drawing")
    real = os.replace

    def replace(src, dst):
        if Path(dst) == out:
            raise enospc()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = cli("draw", GAN, "-o", out, "--engine", "matplotlib")
    assert_coded(code, err, "U002")
    assert code == 1 and f"cannot write `{out}`: No space left on device" in err
    assert out.read_text() == "the old drawing" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    monkeypatch.undo()
    code, stdout, err = cli("draw", GAN, "-o", out, "--engine", "matplotlib")
    assert code == 0 and "(matplotlib)" in stdout, err
    assert out.read_text().lstrip().startswith("<?xml") and "<svg" in out.read_text()


@pytest.mark.parametrize("then", ["finishes", "checkpoint-fails"])
def test_full_disk_on_train_log_is_one_warning_and_training_goes_on(run: Path, cli, monkeypatch, then: str):
    """Each write to train.log fails (ENOSPC): one warning line, no logging tracebacks; the run
    trains on, and a checkpoint that cannot be written then stops it (R002)."""
    from unigen.runs import driver

    real_open, real_save = driver.TrainLog._open, torch.save
    writes: list[str] = []

    def full_open(self):
        stream = real_open(self)

        def write(text: str) -> int:
            writes.append(text)
            raise enospc()

        stream.write = write
        return stream

    def save(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("step") == 6:
            raise enospc()
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(driver.TrainLog, "_open", full_open)
    if then == "checkpoint-fails":
        monkeypatch.setattr(torch, "save", save)
    before = (run / "train.log").read_bytes()
    code, _, err = resume(cli, run)
    warned = [line for line in err.splitlines() if "train.log" in line]
    assert len(warned) == 1 and warned[0] == f"warning: R002 cannot write `{run / 'train.log'}`: No space left on device; training goes on without its log (metrics.csv and the checkpoints are still written). Hint: free space on that disk.", err
    assert "Logging error" not in err and "Traceback" not in err and len(writes) == 1  # the log stopped at its first failure
    assert (run / "train.log").read_bytes() == before
    if then == "finishes":
        assert code == 0, err
        assert last(run) == "step_00000008.pt" and steps_of(run) == [2, 4, 6, 8]
        return
    assert code == 1 and "R002 cannot write" in err and "step_00000006.pt` (the checkpoint)" in err
    assert last(run) == "step_00000004.pt" and not (run / "checkpoints" / "step_00000006.pt").exists()
    monkeypatch.undo()  # space again: the same command continues from step 4, and logs again
    code, _, err = resume(cli, run)
    assert code == 0 and "train.log" not in err, err
    assert last(run) == "step_00000008.pt" and steps_of(run) == [2, 4, 6, 8]
    assert (run / "train.log").read_bytes().startswith(before) and b"resumed" in (run / "train.log").read_bytes()[len(before):]


@pytest.fixture
def umask():
    """Set the process's umask for one test; the old one comes back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def test_run_files_get_the_mode_the_umask_gives(run: Path, cli, umask):
    umask(0o022)
    code, _, err = resume(cli, run)
    assert code == 0, err
    written = ["summary.json", "metrics.csv", "checkpoints/last", "checkpoints/step_00000006.pt", "checkpoints/step_00000008.pt", "samples/step_00000008.png"]
    assert {name: oct(stat.S_IMODE(os.stat(run / name).st_mode)) for name in written} == dict.fromkeys(written, "0o644")


@pytest.mark.parametrize("proc", ["/proc", "no /proc"])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask, monkeypatch, proc: str):
    from unigen.runs.checkpoints import save_checkpoint

    if proc == "no /proc":  # the umask read by setting it and putting it back
        def no_proc(*a, **k):
            raise OSError(errno.ENOENT, "no /proc here")

        monkeypatch.setattr(rundir, "open", no_proc, raising=False)
    (tmp_path / "checkpoints").mkdir()
    for mask, mode in ((0o002, 0o664), (0o027, 0o640), (0o022, 0o644)):
        umask(mask)
        assert rundir.current_umask() == mask and os.umask(mask) == mask  # read, and left as it was
        rundir.write_run_file(tmp_path / "summary.json", "{}")
        ckpt = save_checkpoint(tmp_path, {"step": mask})
        for path in (tmp_path / "summary.json", ckpt, tmp_path / "checkpoints" / "last"):
            assert stat.S_IMODE(os.stat(path).st_mode) == mode, (oct(mask), path)
