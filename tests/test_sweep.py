"""`unigen sweep` (Hydra's multirun grammar; local processes and submitit) and `unigen compare`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import statistics
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, main

from unigen.cli.sweep import split_seeds
from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.sweep import Axis, grid_points, parse_grid, plan_sweep, shared_threads, short_keys, split_values, sweep_dir

VAE = str(ROOT / "specs" / "vae-digits.yaml")
SHORT = ["train.steps=20"]


# ------------------------------------------------------------------ the grammar


@pytest.mark.parametrize(
    "text, parts",
    [
        ("1", ["1"]),
        ("a,b,c", ["a", "b", "c"]),
        ("0.1, 0.2", ["0.1", "0.2"]),
        ("[1,2]", ["[1,2]"]),
        ("[4],[16]", ["[4]", "[16]"]),
        ("{a: 1, b: 2},{a: 3}", ["{a: 1, b: 2}", "{a: 3}"]),
        ("'a,b'", ["'a,b'"]),
        ("'a,b',\"c,d\"", ["'a,b'", '"c,d"']),
        ("f(1,2),g", ["f(1,2)", "g"]),
        ("1,", ["1", ""]),
    ],
)
def test_values_are_cut_at_commas_outside_brackets_and_quotes(text: str, parts: list[str]):
    assert split_values(text) == parts


def test_axes_expand_to_their_product_and_fixed_overrides_go_to_every_point():
    words, seeds = parse_grid(["train.steps=5", "train.optim.lr=1e-3,3e-3", "+networks.encoder.dropout=0,0.5", "~train.best", "variables.z.shape=[4]"])
    assert seeds is None
    assert [w for w in words if isinstance(w, Axis)] == [Axis("train.optim.lr", ("1e-3", "3e-3")), Axis("+networks.encoder.dropout", ("0", "0.5"))]
    points = grid_points(words)
    assert [p.label for p in points] == ["lr=1e-3 dropout=0", "lr=1e-3 dropout=0.5", "lr=3e-3 dropout=0", "lr=3e-3 dropout=0.5"]  # the first axis outermost
    assert points[1].overrides == ("train.steps=5", "train.optim.lr=1e-3", "+networks.encoder.dropout=0.5", "~train.best", "variables.z.shape=[4]")
    assert grid_points(parse_grid(["name='a,b'", "train.steps=3"])[0])[0].overrides == ("name='a,b'", "train.steps=3")  # a quoted comma is no axis


def test_short_keys_are_the_shortest_tails_that_tell_keys_apart():
    assert short_keys(["train.optim.lr", "variables.z.shape"]) == {"train.optim.lr": "lr", "variables.z.shape": "shape"}
    assert short_keys(["phases.a.optim.lr", "phases.b.optim.lr"]) == {"phases.a.optim.lr": "a.optim.lr", "phases.b.optim.lr": "b.optim.lr"}


def test_the_seeds_come_from_seeds_or_a_train_seed_override():
    assert parse_grid(["train.seed=0,1,2"])[1] == [0, 1, 2]
    assert parse_grid(["train.seed=4"])[1] == [4]
    assert split_seeds(["0", "1", "train.optim.lr=1,2"]) == ([0, 1], ["train.optim.lr=1,2"])  # what `--seeds` swallowed goes back


def test_a_plan_is_every_point_at_every_seed_each_value_read_as_a_single_override(tmp_path: Path):
    sweep = plan_sweep(VAE, [*SHORT, "variables.z.shape=[4],[16]", "train.optim.lr=1e-3,3e-3"], [0, 1], str(tmp_path / "s"))
    assert [r.name for r in sweep.runs] == [f"{i:02d}-shape={z}-lr={lr}-seed{s}" for i, (z, lr) in enumerate([(4, "1e-3"), (4, "3e-3"), (16, "1e-3"), (16, "3e-3")]) for s in (0, 1)]
    assert sweep.runs[3].overrides == ["train.steps=20", "variables.z.shape=[4]", "train.optim.lr=3e-3", "train.seed=1"]
    resolved = compile_file(VAE, sweep.runs[3].overrides).resolved
    assert resolved["variables"]["z"]["shape"] == [4] and resolved["train"]["optim"]["lr"] == 0.003 and resolved["train"]["seed"] == 1
    assert not (tmp_path / "s").exists()  # nothing is written before the sweep runs
    assert [r.seed for r in plan_sweep(VAE, ["train.optim.lr=1e-3,3e-3"], None, str(tmp_path / "t")).runs] == [0, 0]  # the spec's own seed


def test_the_default_sweep_directory_is_runs_sweep_stem_then_numbered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert sweep_dir("specs/vae-digits.yaml", None) == Path("runs/sweep-vae-digits")
    (tmp_path / "runs" / "sweep-vae-digits").mkdir(parents=True)
    assert sweep_dir("specs/vae-digits.yaml", None) == Path("runs/sweep-vae-digits")  # empty: used
    (tmp_path / "runs" / "sweep-vae-digits" / "sweep.json").write_text("{}")
    assert sweep_dir("specs/vae-digits.yaml", None) == Path("runs/sweep-vae-digits-2")
    with pytest.raises(UnigenError, match=r"R002 `--dir runs/sweep-vae-digits` exists and is not empty"):
        sweep_dir("specs/vae-digits.yaml", "runs/sweep-vae-digits")


@pytest.mark.parametrize(
    "words, message",
    [
        (["train.optim.lr=1e-3,,3e-3"], "S004 sweep override `train.optim.lr=1e-3,,3e-3`: value 2 of 3 is empty"),
        (["train.optim.lr=1e-3,"], "S004 sweep override `train.optim.lr=1e-3,`: value 2 of 2 is empty"),
        (["train.optim.lr=1e-3,1e-3"], "S004 sweep override `train.optim.lr=1e-3,1e-3`: the value `1e-3` is given twice"),
        (["train.optim.lr=1e-3,3e-3", "train.optim.lr=1e-2"], "S004 sweep override `train.optim.lr=1e-2`: `train.optim.lr` is given twice (first in `train.optim.lr=1e-3,3e-3`)"),
        (["train.seed=1", "--seeds", "0", "1"], "S004 sweep override `train.seed=...` and `--seeds` both give the seeds"),
        (["train.seed=0,x"], "S004 sweep override `train.seed=0,x`: seed `x` is not a whole number"),
        (["--seeds", "1", "1"], "S005 `--seeds 1 1`: seed 1 is given twice"),
        (["--seeds", "0", "one"], "S005 `--seeds one`: `one` is not a whole number"),
        (["train.stepz=10,20"], "S004 sweep point 0 (`stepz=10`): override `train.stepz=10`: unknown key `stepz` in `train`"),
        (["train.batch_size=32,-1", "variables.z.shape=[4],[0]"], "S002 sweep points 1 (`batch_size=32 shape=[0]`), 3 (`batch_size=-1 shape=[0]`): invalid value 0"),
    ],
)
def test_bad_sweeps_are_refused_with_a_coded_message_before_anything_runs(words: list[str], message: str, tmp_path: Path, capsys):
    assert main(["sweep", VAE, *words, "--dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Hint:" in err, err
    assert not (tmp_path / "s").exists()


def test_an_unknown_spec_is_named(tmp_path: Path, capsys):
    assert main(["sweep", str(tmp_path / "nope.yaml"), "train.optim.lr=1e-3,3e-3", "--dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("Y004") == 1 and f"{tmp_path / 'nope.yaml'}: Y004 cannot read the spec" in err and not (tmp_path / "s").exists()


# ------------------------------------------------------------------ a local sweep: a point that trains, a point that fails


LR = ["train.optim.lr=1e-3,1e30"]  # 1e30 passes validation; the first updates make the loss NaN (R001)
NAMES = ["00-lr=1e-3-seed0", "00-lr=1e-3-seed1", "01-lr=1e30-seed0", "01-lr=1e30-seed1"]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory):
    """vae-digits at 20 steps: a learning rate that trains and one that fails, two seeds each."""
    out = tmp_path_factory.mktemp("sweep") / "lr"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        mp.delenv("OMP_NUM_THREADS", raising=False)  # the sweep shares the cores out over the jobs
        code = main(["sweep", VAE, *SHORT, *LR, "--seeds", "0", "1", "--jobs", "2", "--dir", str(out)])
    return code, out, stdout.getvalue(), stderr.getvalue()


def _rows(md: str) -> dict[str, dict[str, str]]:
    """A markdown table's rows by their `point` cell: header -> cell."""
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]]
    return {r["point"]: r for r in rows}


def _summaries(out: Path, names: list[str]) -> list[dict]:
    return [json.loads((out / n / "summary.json").read_text())["metrics"] for n in names]


def test_each_point_and_seed_is_a_run_of_its_own(local_sweep):
    code, out, _, err = local_sweep
    assert code == 1  # a run failed
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name[0].isdigit()) == NAMES
    for name in NAMES[:2]:
        text = (out / name / "spec.resolved.yaml").read_text()
        assert f"seed: {name[-1]}" in text and "steps: 20" in text and "lr: 0.001" in text
        assert json.loads((out / name / "summary.json").read_text())["steps"] == 20
        assert json.loads((out / name / "env.json").read_text())["threads"] == shared_threads(2)
    assert {p.name for p in (out / "logs").iterdir()} == {f"{n}.log" for n in NAMES}
    assert "[4/4]" in err and "sweep " in err


def test_a_failed_point_is_marked_with_its_code_and_the_others_finish(local_sweep):
    code, out, stdout, err = local_sweep
    data = json.loads((out / "sweep.json").read_text())
    runs = {r["dir"]: r for p in data["points"] for r in p["runs"]}
    assert [runs[n]["status"] for n in NAMES] == ["done", "done", "failed", "failed"]
    assert runs[NAMES[2]]["exit_code"] == 1 and runs[NAMES[2]]["error"].startswith("R001 non-finite loss")
    assert "--resume" not in runs[NAMES[0]]["command"] and "train.optim.lr=1e30 train.seed=1" in runs[NAMES[3]]["command"]
    table = _rows((out / "sweep.md").read_text())
    assert table["lr=1e30"]["runs"] == "0/2; failed R001 (seeds 0, 1)" and table["lr=1e30"]["test_nelbo"] == "—"
    assert table["lr=1e-3"]["runs"] == "2/2"
    assert stdout == (out / "sweep.md").read_text()
    assert "X002 2 of 4 sweep runs failed: 01-lr=1e30-seed0, 01-lr=1e30-seed1." in err


def _cell(values: list[float]) -> str:
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{med:.4g}" if lo == hi else f"{med:.4g} ({lo:.4g}–{hi:.4g})"


def test_the_table_gives_each_point_the_median_and_range_over_its_seeds(local_sweep):
    _, out, _, _ = local_sweep
    summaries = _summaries(out, NAMES[:2])
    table = _rows((out / "sweep.md").read_text())["lr=1e-3"]
    point = json.loads((out / "sweep.json").read_text())["points"][0]
    assert list(point["metrics"]) == list(summaries[0])
    for metric in summaries[0]:
        values = [s[metric] for s in summaries]
        assert table[metric] == _cell(values)
        assert point["metrics"][metric] == {"median": statistics.median(values), "min": min(values), "max": max(values), "n": 2}
    assert any("(" in table[m] for m in summaries[0])  # the seeds differ


def test_compare_prints_the_table_and_plots_every_run_coloured_by_point(local_sweep, tmp_path: Path, capsys):
    _, out, _, _ = local_sweep
    png = tmp_path / "plot.png"
    assert main(["compare", str(out), "-o", str(png)]) == 0
    printed = capsys.readouterr()
    assert _rows(printed.out) == _rows((out / "sweep.md").read_text())
    assert "median (min–max) over the seeds" in printed.out and f"wrote {png}" in printed.err
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 400 and image.shape[1] > 800 and image[..., :3].min() < 0.5  # drawn, not blank


def test_compare_groups_run_directories_by_their_spec_without_the_seed(local_sweep, capsys):
    _, out, _, _ = local_sweep
    assert main(["compare", *(str(out / n) for n in reversed(NAMES)), "--metric", "test_nelbo"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == ["lr=1e+30", "lr=0.001"]  # in the order first seen, values as resolved
    assert rows["lr=1e+30"]["runs"] == "0/2; unfinished (seeds 1, 0)"
    assert rows["lr=0.001"]["test_nelbo"] == _cell([s["test_nelbo"] for s in _summaries(out, NAMES[:2])])
    assert list(rows["lr=0.001"]) == ["#", "point", "runs", "test_nelbo"]


def test_compare_refuses_what_is_no_run_an_unknown_metric_and_another_format(local_sweep, tmp_path: Path, capsys):
    _, out, _, _ = local_sweep
    assert main(["compare", str(tmp_path)]) == 2
    assert f"E001 `{tmp_path}` is neither a run directory" in capsys.readouterr().err
    assert main(["compare", str(out), "--metric", "test_nelb"]) == 2
    err = capsys.readouterr().err
    assert "E003 `--metric test_nelb`: no run has that metric." in err and "did you mean `test_nelbo`?" in err
    assert main(["compare", str(out), "-o", str(tmp_path / "plot.svg")]) == 2
    assert "U002 `-o " in capsys.readouterr().err and not (tmp_path / "plot.svg").exists()


# ------------------------------------------------------------------ submitit


def test_the_submitit_launcher_without_submitit_says_how_to_install_it(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    assert main(["sweep", VAE, "train.optim.lr=1e-3,3e-3", "--launcher", "submitit", "--dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "U005 `--launcher submitit` needs the `submitit` package" in err and "`pip install submitit`" in err and not (tmp_path / "s").exists()


def test_a_sweep_through_submitit_s_local_executor(tmp_path: Path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = tmp_path / "sub"
    code = main(["sweep", VAE, *SHORT, "train.optim.lr=1e-3,3e-3", "--launcher", "submitit", "--cluster", "local", "--jobs", "2", "--dir", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "sweep.json").read_text())
    runs = [r for p in data["points"] for r in p["runs"]]
    assert data["launcher"] == "submitit (local)" and [r["dir"] for r in runs] == ["00-lr=1e-3-seed0", "01-lr=3e-3-seed0"]
    assert all(r["status"] == "done" and r["job_id"] and r["command"].endswith("--resume auto") for r in runs)
    for r in runs:
        assert json.loads((out / r["dir"] / "summary.json").read_text())["steps"] == 20
        assert json.loads((out / r["dir"] / "env.json").read_text())["threads"] == shared_threads(2)  # the cores shared out, as locally
        assert (out / "submitit" / f"{r['job_id']}_submitted.pkl").is_file()
    assert list(_rows((out / "sweep.md").read_text())) == ["lr=1e-3", "lr=3e-3"]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the job's process in Linux's /proc")
def test_a_preempted_submitit_job_saves_a_checkpoint_is_requeued_and_continues_its_run(tmp_path: Path):
    """submitit's preemption signal (USR2) to the job: PointJob stops the training with SIGTERM
    (it saves a checkpoint), the job is requeued as the same command, whose `--resume auto`
    continues the run from that checkpoint to its end."""
    submitit = pytest.importorskip("submitit")
    from unigen.runs.sweep import PointJob

    run = tmp_path / "run"
    ex = submitit.LocalExecutor(folder=tmp_path / "submitit")
    ex.update_parameters(timeout_min=5)
    cmd = [sys.executable, "-m", "unigen", "compile-and-train", VAE, "train.steps=150", "train.log_every=5", "--out", str(run), "--quiet", "--resume", "auto"]
    job = ex.submit(PointJob(cmd, str(tmp_path / "run.log"), str(ROOT), threads=1))
    deadline = time.monotonic() + 240
    while not (run / "train.log").is_file() or " step " not in (run / "train.log").read_text():  # training is under way
        assert time.monotonic() < deadline and not job.done(), (tmp_path / "run.log").read_text()
        time.sleep(0.1)
    (worker,) = _children(job._process.pid)  # the controller's one task: the job's Python process
    os.kill(worker, signal.SIGUSR2)  # what Slurm sends a job before its time limit or preemption
    assert job.result() == 0
    log = (run / "train.log").read_text()
    stopped = int(re.search(r"stopped by SIGTERM after step (\d+)", log).group(1))
    assert 0 < stopped < 150 and re.search(rf"resumed .* from .*step_0*{stopped}\.pt at step {stopped}", log), log
    assert json.loads((run / "summary.json").read_text())["steps"] == 150
    assert "Requeued job" in "".join(p.read_text() for p in (tmp_path / "submitit").glob("*_log.*"))
