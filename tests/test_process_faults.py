"""Faults of processes and of plugins, each told with its cause: a signal to the launcher of
several processes (R003, exit 130, the resume command), a training process killed from outside
(X002 naming it, not a plugin), a network's failing forward (R004 naming the network, its
architecture and its plugin), a dataset of integers (D001 naming the dataset and its plugin),
a non-finite loss (R001 naming the term's plugin), networks too large for the process's memory
limits (G016, the in-memory good state counted), and the tests' isolation from other
installed plugins."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from conftest import ROOT, foreign_plugins, own_entry_points
from torch import nn

from unigen import hookimpl
from unigen.api import registry as registry_mod
from unigen.api.kinds import Arch, Bound, Dataset, DatasetKind, Term
from unigen.api.registry import load_registry
from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.checkpoints import load_checkpoint
from unigen.training import networks

VAE = ROOT / "specs" / "vae-digits.yaml"
GAN = ROOT / "specs" / "gan-ring.yaml"
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
ENV.pop("UNIGEN_TRACEBACK", None)


# --------------------------------------------------------------- two processes
def _launch(out: Path) -> subprocess.Popen:
    """`compile-and-train --nproc-per-node 2` of a tiny GAN, long enough to be stopped, in a
    session of its own (as a terminal's job is): its workers are the launcher's children."""
    opts = ["networks.generator.hidden=[8]", "networks.discriminator.hidden=[8]", "train.batch_size=16", "train.log_every=4", "train.eval_samples=100"]
    cmd = [sys.executable, "-m", "unigen", "compile-and-train", str(GAN), *opts, "--out", str(out), "--steps", "100000", "--device", "cpu", "--quiet", "--nproc-per-node", "2"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=out.parent, start_new_session=True)


def _started(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 180
    while not (out / "metrics.csv").exists():  # rank 0 has logged a step: training runs
        assert proc.poll() is None, f"the run ended before it was stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)


def _ended(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _workers(launcher: int) -> list[int]:
    """The training processes the launcher started (multiprocessing's spawned children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def test_ctrl_c_to_a_two_process_run_saves_exits_130_and_says_how_to_resume(tmp_path: Path):
    """SIGINT to the launcher's process group, as a terminal's Ctrl-C sends it: each worker gets
    it once (through the launcher), the step finishes, rank 0 saves, and the launcher ends with
    R003 and the command that continues the run on two processes, no traceback."""
    out = tmp_path / "run"
    proc = _launch(out)
    try:
        _started(proc, out)
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        stdout, stderr = _ended(proc)
    assert proc.returncode == 130, stderr
    assert stderr.startswith("R003 ") and "SIGINT" in stderr, stderr
    assert "Traceback" not in stderr + stdout and "SignalException" not in stderr
    assert f"--out {out} --resume auto" in stderr and "--nproc-per-node 2" in stderr
    ckpt = out / "checkpoints"
    state = load_checkpoint(ckpt / (ckpt / "last").read_text().strip())
    assert state["step"] >= 4 and len(state["rng_ranks"]) == 2
    assert f"stopped by SIGINT after step {state['step']}" in (out / "train.log").read_text()


def test_a_worker_killed_from_outside_is_x002_naming_it_without_tracebacks(tmp_path: Path):
    """kill -9 of one training process: X002 says which process was killed and by what; the
    others, which lost contact with it, blame no plugin; torch prints no traceback."""
    out = tmp_path / "run"
    proc = _launch(out)
    try:
        _started(proc, out)
        workers = _workers(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[-1], signal.SIGKILL)
    finally:
        stdout, stderr = _ended(proc)
    assert proc.returncode == 1, stderr
    assert stderr.startswith("X002 training process ") and "was killed by SIGKILL" in stderr, stderr
    assert f"(pid {workers[-1]})" in stderr
    assert "R004" not in stderr and "plugin" not in stderr
    assert "Traceback" not in stderr + stdout and "torch/distributed" not in stderr and "ChildFailedError" not in stderr


# ------------------------------------------------------------- a toy plugin
class _Broken(nn.Module):
    def __init__(self, out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(1, out)

    def forward(self, *parents: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the toy network broke")


class BrokenArch(Arch):
    """Builds fine; its forward pass raises."""

    def build(self, inputs, output, options):
        return _Broken(int(torch.Size(output).numel()))


class IntDigits(DatasetKind):
    """64 'pixels' as int64, as a plugin that forgot `.float()` returns them."""

    def fields(self, options):
        return {"x": (64,)}

    def load(self, options):
        gen = torch.Generator().manual_seed(0)
        return Dataset({"x": torch.randint(0, 2, (200, 64), generator=gen)}, {"x": torch.randint(0, 2, (50, 64), generator=gen)})


class InfTerm(Term):
    """A loss that is infinite from the first step."""

    target = None

    def bind(self, site):
        return Bound(lambda ctx: torch.tensor(float("inf")) + 0 * ctx.q["z"].sum(), "inf", traces=frozenset("q"), reaches=frozenset({"encoder"}))


@hookimpl
def _networks(register):
    register("toy_broken", BrokenArch())


@hookimpl
def _datasets(register):
    register("toy_ints", IntDigits())


@hookimpl
def _terms(register):
    register("toy_inf", InfTerm())


class _ToyEntryPoint:
    name = "toy"

    class dist:
        name, version = "unigen-toy", "1.0"

    def load(self):
        module = types.ModuleType("unigen_toy")
        module.unigen_register_networks, module.unigen_register_datasets, module.unigen_register_terms = _networks, _datasets, _terms
        return module


@pytest.fixture
def toy_cli(cli, monkeypatch):
    """The CLI, with the toy plugin installed beside unigen's own (as distribution unigen-toy)."""
    monkeypatch.setattr(registry_mod, "_entry_points", lambda: [*own_entry_points(), _ToyEntryPoint()])
    reg = load_registry()
    assert not reg.problems, reg.problems
    monkeypatch.setattr(registry_mod, "_DEFAULT", reg)
    monkeypatch.delenv("UNIGEN_TRACEBACK", raising=False)
    return cli


SMALL = ["networks.encoder.hidden=[16]", "train.batch_size=32", "train.log_every=1", "--steps", "3", "--device", "cpu", "--quiet"]


def test_a_network_failing_in_its_forward_is_named_with_its_architecture_and_plugin(toy_cli, tmp_path: Path):
    code, _, err = toy_cli("compile-and-train", VAE, *SMALL, "~networks.decoder", "+networks.decoder={arch: toy_broken}", "--out", tmp_path / "run")
    assert code == 1 and "Traceback" not in err, err
    assert err.startswith("networks.decoder: R004 phase `elbo`, term `elbo` failed at step 1, inside network `decoder` (architecture `toy_broken`, plugin `toy`, distribution unigen-toy): RuntimeError: the toy network broke"), err
    assert "a bug in architecture `toy_broken` (plugin `toy`, distribution unigen-toy)" in err and "the term's plugin" not in err


def test_a_term_failing_itself_is_named_with_its_plugin(toy_cli, tmp_path: Path, monkeypatch):
    """A failure in a term's own code (no network running) names the term's plugin in the hint."""
    import unigen_vae.terms as vae_terms

    real = vae_terms.ELBO.bind

    def bind(self, site):
        bound = real(self, site)

        def loss(ctx):
            raise ValueError("the elbo broke")

        return Bound(loss, bound.formula, bound.traces, bound.reaches)

    monkeypatch.setattr(vae_terms.ELBO, "bind", bind)
    code, _, err = toy_cli("compile-and-train", VAE, *SMALL, "--out", tmp_path / "run")
    assert code == 1 and "R004 phase `elbo`, term `elbo` failed at step 1: ValueError: the elbo broke" in err, err
    assert "a bug in the plugin of term `elbo` (plugin `vae`, distribution unigen)" in err and "inside network" not in err


def test_a_dataset_of_integers_is_d001_naming_the_dataset_and_its_plugin(toy_cli, tmp_path: Path):
    """Caught when the data is loaded, before any step: not torch's `mat1 and mat2 must have
    the same dtype` from the first matrix product."""
    code, _, err = toy_cli("compile-and-train", VAE, *SMALL, "~data", "+data={source: toy_ints}", "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in err and "mat1" not in err, err
    assert "data: D001 dataset `toy_ints` (registered by plugin `toy`, distribution unigen-toy): field `x` of its train split holds int64 values, but variable `x` reads it as continuous values; expected a floating-point tensor (float32)" in err
    assert "of its test split holds int64" in err and "`tensor.float()`" in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_non_finite_loss_names_the_terms_plugin(toy_cli, tmp_path: Path):
    phases = "phases=[{name: elbo, update: [encoder, decoder], terms: [elbo, toy_inf]}]"
    code, _, err = toy_cli("compile-and-train", VAE, *SMALL, phases, "--out", tmp_path / "run")
    assert code == 1 and err.startswith("R001 non-finite loss: phase `elbo`: term `toy_inf` is inf at step 1 (term `toy_inf`: plugin `toy`, distribution unigen-toy); the last good state (step 0) is saved"), err


# --------------------------------------------------------------- memory guard
@pytest.fixture
def limits(monkeypatch):
    """Sets what the guard reads: the machine's memory, the process's limits, the cgroup's."""

    def set_(physical: int | None = 64 << 30, rlimit: int | None = None, cgroup: int | None = None) -> None:
        monkeypatch.setattr(networks, "physical_bytes", lambda: physical)
        monkeypatch.setattr(networks, "rlimit_bytes", lambda: rlimit)
        monkeypatch.setattr(networks, "cgroup_bytes", lambda: cgroup)

    return set_


# encoder 64 -> 100000 -> 16 and decoder 8 -> 100000 -> 64: about 59 MiB of parameters.
WIDE = ["train.device=cpu", "networks.encoder.hidden=[100000]", "networks.decoder.hidden=[100000]"]


def test_memory_guard_takes_the_least_of_machine_rlimit_and_cgroup(limits):
    cpu = torch.device("cpu")
    limits(physical=64 << 30, rlimit=3 << 30, cgroup=5 << 30)
    assert networks.memory_bytes(cpu) == 3 << 30
    limits(physical=64 << 30, rlimit=None, cgroup=2 << 30)
    assert networks.memory_bytes(cpu) == 2 << 30
    limits(physical=1 << 30, rlimit=None, cgroup=None)
    assert networks.memory_bytes(cpu) == 1 << 30


def test_memory_guard_counts_the_good_state_and_names_the_network(registry, limits):
    """59 MiB of networks: 4 copies (236 MiB) fit in 400 MiB, 10 (with the good state kept in
    memory, twice while it is taken anew) do not; with `on_nonfinite: skip` there is none."""
    limits(rlimit=400 << 20)
    program = compile_file(VAE, WIDE, registry).program
    with pytest.raises(UnigenError) as info:
        networks.build_networks(program, torch.device("cpu"))
    d = info.value.diagnostics[0]
    assert d.code == "G016" and d.path == ("networks", "encoder")
    assert "`encoder` alone 30.9 MiB" in d.message and "about 10 times that" in d.message and "last good state" in d.message
    assert "the 400 MiB that this process's limits (`ulimit -v`: RLIMIT_AS, RLIMIT_DATA) leave it" in d.message
    assert "`train.on_nonfinite: skip`" in d.hint
    limits(cgroup=400 << 20)
    with pytest.raises(UnigenError, match="its cgroup's memory limit of 400 MiB"):
        networks.build_networks(program, torch.device("cpu"))
    skip = compile_file(VAE, [*WIDE, "train.on_nonfinite=skip"], registry).program
    assert set(networks.build_networks(skip, torch.device("cpu"))) == {"encoder", "decoder"}


def test_cgroup_limits_are_read_for_v1_and_v2(monkeypatch, tmp_path: Path):
    files = {
        "/proc/self/cgroup": "4:memory:/job/7\n0::/job/7\n",
        f"{tmp_path}/memory/job/7/memory.limit_in_bytes": "9223372036854771712\n",  # v1: no limit
        f"{tmp_path}/memory/memory.limit_in_bytes": "3221225472\n",
        f"{tmp_path}/job/memory.max": "2147483648\n",
        f"{tmp_path}/job/7/memory.max": "max\n",
    }
    monkeypatch.setattr(networks, "CGROUP", str(tmp_path))
    monkeypatch.setattr(networks, "_read", lambda path: files.get(path, ""))
    assert networks.cgroup_bytes() == 2 << 30
    del files[f"{tmp_path}/job/memory.max"]
    assert networks.cgroup_bytes() == 3 << 30
    files["/proc/self/cgroup"] = "0::/\n"
    assert networks.cgroup_bytes() is None


def test_a_network_too_large_for_ulimit_v_is_refused_before_training(tmp_path: Path):
    """Under a real address-space limit (3 GiB more than a process with torch maps),
    `hidden: [1000000]` (587 MiB of networks, about 5.7 GiB to train with the good state kept)
    is G016 before anything is written; it used to fail in the middle of taking the good
    state, with a traceback."""
    status = Path("/proc/self/status").read_text()
    mapped = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
    cap = mapped + (3 << 30)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    cmd = [sys.executable, "-m", "unigen", "compile-and-train", str(VAE), "networks.encoder.hidden=[1000000]", "networks.decoder.hidden=[1000000]", "--steps", "3", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300, preexec_fn=limit)
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.startswith("networks.encoder: G016 the networks would hold 587 MiB of parameters (`encoder` alone 309 MiB)"), res.stderr
    assert "that this process's limits (`ulimit -v`" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------- isolation
def test_tests_see_unigens_own_plugins_only(tmp_path: Path, monkeypatch):
    """A third-party plugin installed beside unigen (here a distribution on sys.path) is not in
    the tests' registry, and commands the tests start block it by name."""
    site = tmp_path / "site"
    info = site / "unigen_intruder-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unigen-intruder\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[unigen]\nintruder = unigen_intruder\n")
    (site / "unigen_intruder.py").write_text("raise ImportError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(site))
    assert "intruder" in foreign_plugins()
    reg = load_registry()
    assert all(p.dist == "unigen" for p in reg.plugins) and not reg.problems
    assert {p.name for p in reg.plugins} == {ep.name for ep in own_entry_points()}
    for name in foreign_plugins():
        if name != "intruder":  # installed before the session started: blocked in subprocesses
            assert name in os.environ.get("UNIGEN_BLOCK_PLUGINS", "").split(",")
