"""kill -9 at random moments, again and again, then the documented restart line
(`unigen compile-and-train SPEC --resume auto --out DIR`): the run ends exactly as an
uninterrupted one (every checkpoint tensor by tensor, every metrics.csv row), each step logged
once, and no temporary file or other stray left.

The killed processes are forked from one launcher process (this file run as a script) that has
imported torch and unigen once, so that each starts training at once instead of spending seconds
on imports; each runs the documented command line through `unigen.cli.commands.main`, and the
last restart is a fresh `python -m unigen` process.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from conftest import assert_equal

ROOT = Path(__file__).resolve().parents[1]
GAN = ROOT / "specs" / "gan-ring.yaml"
STEPS = 60
# Tiny networks; a row every 2 steps, a checkpoint every 3 and a picture every 10, so that kills
# land between rows and checkpoints, inside checkpoint and picture writes, and at the end.
OPTS = ["networks.generator.hidden=[8]", "networks.discriminator.hidden=[8]", "train.batch_size=16", "train.log_every=2", "train.checkpoint_every=3", "train.sample_every=10", "train.eval_samples=100", "train.eval_every=0", f"train.steps={STEPS}"]
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
KILLS = 20


def restart_line(out: Path) -> list[str]:
    """The documented line that continues (or starts) the run in `out`."""
    return ["compile-and-train", str(GAN), *OPTS, "--resume", "auto", "--out", str(out), "--device", "cpu", "--quiet"]


# ---------------------------------------------------------------- the launcher (a script)
def launch(reference: Path, out: Path, kills: int, seed: int) -> dict[str, Any]:
    """In the launcher process: a warm-up run, a 3-step run and an uninterrupted run into
    `reference` (both timed), then `kills` processes running the restart line into `out`, each
    sent SIGKILL at a random moment: within a span that lets each one train about
    1/`kills` of the steps, so that the kills fall across the whole run."""
    torch.set_num_threads(1)
    from unigen.cli.commands import main

    def timed(out: Path, *extra: str) -> tuple[int, float]:
        start = time.perf_counter()
        code = main(["compile-and-train", str(GAN), *OPTS, "--out", str(out), "--device", "cpu", "--quiet", *extra])
        return code, time.perf_counter() - start

    with open(os.devnull, "w") as null:
        sys.stdout = sys.stderr = null
        timed(reference.parent / "warm-up", "--steps", "3")  # imports, the data, lazy set-up
        _, fixed = timed(reference.parent / "three-steps", "--steps", "3")  # starting and finishing
        code, whole = timed(reference)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    span = fixed + 2 * max(whole - fixed, 0.1) / kills
    rng = random.Random(seed)
    report: dict[str, Any] = {"reference_exit": code, "seconds": [fixed, whole], "killed": 0, "exits": [], "last": []}
    for _ in range(kills):
        pid = os.fork()
        if pid == 0:  # the child: the restart line, its output into a log
            status = 99
            try:
                fd = os.open(out.parent / "children.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                status = main(restart_line(out))
            finally:
                os._exit(status)
        ended(pid, time.monotonic() + rng.uniform(0.0, span), report)
        pointer = out / "checkpoints" / "last"
        report["last"].append(pointer.read_text().strip() if pointer.is_file() else None)
    return report


def ended(pid: int, deadline: float, report: dict[str, Any]) -> bool:
    """Wait for our child `pid` until `deadline`; SIGKILL it then if it still runs. Until it is
    reaped here the pid stays its, so the signal cannot reach another process."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            report["exits"].append(os.waitstatus_to_exitcode(status))
            return True
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        report["killed"] += 1
    else:  # it ended on its own just before the signal
        report["exits"].append(os.waitstatus_to_exitcode(status))
    return False


# ---------------------------------------------------------------------------- the test
def rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv without its times."""
    return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader((run / "metrics.csv").open())]


def test_kill_9_at_random_moments_then_the_restart_line_ends_as_an_uninterrupted_run(tmp_path: Path):
    reference, out = tmp_path / "reference", tmp_path / "killed"
    launcher = subprocess.run([sys.executable, __file__, str(reference), str(out), str(KILLS), "17"], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert launcher.returncode == 0, launcher.stderr
    report = json.loads(launcher.stdout)
    assert report["reference_exit"] == 0
    # Most children died by the signal, and training went on across them.
    assert report["killed"] >= KILLS // 2, report
    assert all(code == 0 for code in report["exits"]), (report, (tmp_path / "children.log").read_text())
    assert len({name for name in report["last"] if name}) >= 3, report

    final = subprocess.run([sys.executable, "-m", "unigen", *restart_line(out)], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr

    ckpt, ref = out / "checkpoints", reference / "checkpoints"
    assert (ckpt / "last").read_text() == (ref / "last").read_text() == f"step_{STEPS:08d}.pt\n"
    for path in sorted(ref.glob("step_*.pt")):  # every checkpoint, the final one included
        a, b = torch.load(path, weights_only=True), torch.load(ckpt / path.name, weights_only=True)
        a.pop("train_seconds"), b.pop("train_seconds")
        assert_equal(b, a, path.name)
    steps = [int(r["step"]) for r in rows(out)]
    assert steps == [*range(2, STEPS + 1, 2)]  # each logged step once (the last with the final evaluation)
    assert rows(out) == rows(reference)  # the same losses and metrics, bit for bit
    # No temporary file or other stray: the same files as the uninterrupted run.
    names = {str(p.relative_to(out)) for p in out.rglob("*")}
    assert names == {str(p.relative_to(reference)) for p in reference.rglob("*")}
    assert not [n for n in names if n.endswith(".tmp")]
    assert json.loads((out / "summary.json").read_text())["steps"] == STEPS


if __name__ == "__main__":
    print(json.dumps(launch(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
