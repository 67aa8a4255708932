"""Data parallelism on two CPU processes (gloo): the update equals one process's on the
concatenated batch, for a VAE and for a GAN with an R1 gradient penalty; only rank 0 writes;
a resumed run continues bit for bit. Single-process checks: sharding, precision, errors.

The two processes are started once (torch.multiprocessing) and run every distributed check
in turn; each writes what it saw to a file that the tests read.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from conftest import ROOT

from unigen.api.registry import default_registry
from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.checkpoints import load_checkpoint
from unigen.runs.driver import train_run
from unigen.training.data import Batches
from unigen.training.distributed import World
from unigen.training.trainer import Trainer

VAE = ROOT / "specs" / "vae-digits.yaml"
GAN = ROOT / "specs" / "gan-ring.yaml"
VAE_OPTS = ["train.device=cpu", "networks.encoder.hidden=[32]", "networks.decoder.hidden=[32]", "train.batch_size=32", "train.eval_samples=100"]
GAN_OPTS = ["train.device=cpu", "networks.generator.hidden=[32, 32]", "networks.discriminator.hidden=[32, 32]", "train.batch_size=64", "train.eval_samples=100"]
STEPS = 4
WORLD = 2

_randn = torch.randn


class GlobalNoise:
    """`torch.randn` for a batch dimension shared out over ranks: the i-th call draws the noise of
    the whole global batch from a generator seeded with i, and this rank keeps its rows. One
    process (rank 0 of 1) gets the whole draw: the noise of N ranks, concatenated, is exactly
    one process's, so the two runs can be compared number for number."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size, self.calls = rank, size, 0

    def __call__(self, *shape: Any, dtype: Any = None, device: Any = None, **kw: Any) -> torch.Tensor:
        if kw.get("generator") is not None:  # a seeded draw of its own (the dataset's): untouched
            return _randn(*shape, dtype=dtype, device=device, **kw)
        dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        gen = torch.Generator().manual_seed(10_000 + self.calls)
        self.calls += 1
        full = _randn((dims[0] * self.size, *dims[1:]), generator=gen, dtype=dtype)
        return full[self.rank * dims[0] : (self.rank + 1) * dims[0]].to(device)


def train_steps(spec: Path, opts: list[str], world: World | None) -> dict[str, torch.Tensor]:
    reg = default_registry()
    program = compile_file(spec, opts, reg).program
    trainer = Trainer(program, world=world)
    for _ in range(STEPS):
        trainer.step()
    return {k: v.detach().clone() for k, v in trainer.model.nets.state_dict().items()}


def _worker(rank: int, port: int, tmp: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    out: dict[str, Any] = {}
    world = World(rank, WORLD, rank)
    torch.randn = GlobalNoise(rank, WORLD)  # type: ignore[assignment]
    out["vae"] = train_steps(VAE, VAE_OPTS, world)
    torch.randn = GlobalNoise(rank, WORLD)  # type: ignore[assignment]
    out["gan"] = train_steps(GAN, GAN_OPTS, world)
    torch.randn = _randn
    # Whole runs through `train_run`, which reads the world from the environment (as under
    # torchrun). Writes under `tmp` are audited: rank 1 must make none.
    writes: list[str] = []

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[0], str) and args[0].startswith(tmp) and (args[1] or "r") != "r" and "r" != str(args[1]).strip("b"):
            writes.append(args[0])
        elif event == "open" and isinstance(args[0], str) and args[0].startswith(tmp) and args[1] is None and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            writes.append(args[0])
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove") and str(args[0]).startswith(tmp):
            writes.append(f"{event} {args[0]}")

    sys.addaudithook(audit)
    opts = [*GAN_OPTS, "train.log_every=2", "train.checkpoint_every=2"]
    train_run(GAN, opts, out=f"{tmp}/whole", steps=STEPS, quiet=True)
    train_run(GAN, opts, out=f"{tmp}/resumed", steps=STEPS, quiet=True, resume=f"{tmp}/whole/checkpoints/step_00000002.pt")
    out["writes"] = list(writes)
    dist.barrier()
    dist.destroy_process_group()
    Path(tmp, f"rank{rank}.pkl").write_bytes(pickle.dumps(out))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(_free_port(), str(tmp)), nprocs=WORLD, join=True, start_method="spawn")
    return tmp, [pickle.loads((tmp / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")
    # Rounding, not a missing or doubled gradient: almost every number agrees to float precision.
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diffs.mean()) < 1e-7, float(diffs.mean())


@pytest.mark.parametrize("name, spec, opts, atol", [("vae", VAE, VAE_OPTS, 1e-5), ("gan", GAN, GAN_OPTS, 1e-5)])
def test_distributed_update_equals_one_process_on_the_whole_batch(ranks, one_thread, monkeypatch, name: str, spec: Path, opts: list[str], atol: float):
    _, seen = ranks
    monkeypatch.setattr(torch, "randn", GlobalNoise(0, 1))
    alone = train_steps(spec, opts, None)
    assert_close(seen[0][name], alone, atol)
    assert_close(seen[1][name], alone, atol)  # the replicas agree
    # ... and the update is not trivial: the parameters moved from their start.
    monkeypatch.setattr(torch, "randn", GlobalNoise(0, 1))
    reg = default_registry()
    start = Trainer(compile_file(spec, opts, reg).program).model.nets.state_dict()
    assert any(not torch.allclose(start[k], alone[k]) for k in start)


def test_distributed_r1_gan_really_has_its_penalty():
    """The GAN compared above trains with R1 through `autograd.grad` of a DDP-wrapped network."""
    program = compile_file(GAN, GAN_OPTS, default_registry()).program
    assert "r1=1" in str(program)


def test_distributed_only_rank_0_writes(ranks):
    tmp, seen = ranks
    assert seen[1]["writes"] == []
    assert any(w.endswith("metrics.csv") or "metrics.csv" in w for w in seen[0]["writes"])
    whole = tmp / "whole"
    assert {p.name for p in whole.iterdir()} >= {"spec.yaml", "metrics.csv", "summary.json", "checkpoints", "samples", "train.log"}
    assert [p.name for p in sorted((whole / "checkpoints").glob("*.pt"))] == ["step_00000002.pt", "step_00000004.pt"]
    rows = (whole / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["2", "4"]


def test_distributed_checkpoint_holds_every_ranks_streams_and_resume_is_exact(ranks):
    tmp, _ = ranks
    whole = load_checkpoint(tmp / "whole" / "checkpoints" / "step_00000004.pt")
    assert len(whole["rng_ranks"]) == WORLD
    assert not torch.equal(whole["rng_ranks"][0]["torch"], whole["rng_ranks"][1]["torch"])  # each rank its own noise
    resumed = load_checkpoint(tmp / "resumed" / "checkpoints" / "step_00000004.pt")
    assert "resumed" in (tmp / "resumed" / "train.log").read_text() and resumed["step"] == 4
    for k, v in whole["nets"].items():
        assert torch.equal(v, resumed["nets"][k]), k
    for name, opt in whole["optimizers"].items():
        for i, st in opt["state"].items():
            assert all(torch.equal(t, resumed["optimizers"][name]["state"][i][key]) for key, t in st.items() if isinstance(t, torch.Tensor))


# ------------------------------------------------------------- one process
def test_batches_shards_are_the_global_batch_cut_in_rank_order():
    data = {"x": torch.arange(40.0).unsqueeze(1)}
    whole = Batches(data, 8, torch.Generator().manual_seed(3))
    shards = [Batches(data, 8, torch.Generator().manual_seed(3), (r, 2)) for r in range(2)]
    for _ in range(7):  # across an epoch boundary
        expected = whole.next()["x"]
        got = torch.cat([b.next()["x"] for b in shards])
        assert torch.equal(got, expected)


def test_batch_size_must_split_over_the_processes(registry):
    program = compile_file(VAE, [*VAE_OPTS, "train.batch_size=33"], registry).program
    with pytest.raises(UnigenError) as info:
        Trainer(program, world=World(0, 2, 0))
    d = info.value.diagnostics[0]
    assert d.code == "X001" and d.path == ("train", "batch_size") and "`train.batch_size=32` or `34`" in d.hint


def test_nproc_per_node_below_one_is_refused(cli, tmp_path):
    code, _, err = cli("compile-and-train", VAE, "--nproc-per-node", "0", "--out", tmp_path / "r")
    assert code == 2 and err.startswith("X004 ") and "at least 1" in err
    assert not (tmp_path / "r").exists()


def test_bf16_autocast_runs_a_cpu_step(registry, one_thread):
    program = compile_file(VAE, [*VAE_OPTS, "train.precision=bf16"], registry).program
    trainer = Trainer(program)
    seen: list[torch.dtype] = []
    hook = trainer.model.nets["decoder"].body[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = {k: v.clone() for k, v in trainer.model.nets.state_dict().items()}
    trainer.step()
    hook.remove()
    assert seen == [torch.bfloat16]  # the decoder's layers ran in bfloat16
    loss = trainer.runners[0].last["elbo"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    after = trainer.model.nets.state_dict()
    assert all(after[k].dtype == torch.float32 for k in after)  # the weights stay in float32
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_fp16_needs_cuda(registry):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed")
    program = compile_file(VAE, [*VAE_OPTS, "train.precision=fp16"], registry).program
    with pytest.raises(UnigenError) as info:
        Trainer(program)
    assert info.value.diagnostics[0].code == "X005" and info.value.diagnostics[0].path == ("train", "precision")


def test_sync_batchnorm_needs_cuda_under_several_processes(registry):
    program = compile_file(GAN, [*GAN_OPTS, "networks.discriminator.batchnorm=true", "train.sync_batchnorm=true"], registry).program
    with pytest.raises(UnigenError) as info:
        Trainer(program, world=World(0, 2, 0))
    assert info.value.diagnostics[0].code == "X006"


def test_compiled_networks_train_like_plain_ones(registry, one_thread, monkeypatch):
    """`train.compile` runs every network through torch.compile, with the same numbers as eager.
    The test compiles with the `aot_eager` backend: inductor's C++ build is minutes on a busy CPU."""
    compiled: list[type] = []
    real_compile = torch.compile

    def compile_(module, **kw):
        compiled.append(type(module))
        return real_compile(module, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_)
    opts = [*VAE_OPTS, "networks.encoder.hidden=[8]", "networks.decoder.hidden=[8]"]
    states = []
    for flag in ("false", "true"):
        program = compile_file(VAE, [*opts, f"train.compile={flag}"], registry).program
        trainer = Trainer(program)
        trainer.step()
        trainer.step()
        states.append(trainer.model.nets.state_dict())
    assert len(compiled) == 2  # the encoder and the decoder, once each
    assert_close(states[1], states[0])


def test_compiled_gan_alternates_phases_like_eager(registry, one_thread, monkeypatch):
    """Compiled networks stay unfrozen across phases (their graphs must not outlive a change
    of requires_grad); each phase still moves only what it updates, as in eager mode."""
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kw: real_compile(module, backend="aot_eager"))
    opts = [*GAN_OPTS, "networks.generator.hidden=[8]", "networks.discriminator.hidden=[8]", "edges.1.options.r1=0"]  # no double backward when compiled
    states = []
    for flag in ("false", "true"):
        trainer = Trainer(compile_file(GAN, [*opts, f"train.compile={flag}"], registry).program)
        before = {k: v.clone() for k, v in trainer.model.nets["generator"].state_dict().items()}
        trainer.run_phase(trainer.runners[0])  # the discriminator phase leaves the generator as it was
        assert all(torch.equal(v, trainer.model.nets["generator"].state_dict()[k]) for k, v in before.items())
        trainer.run_phase(trainer.runners[1])
        trainer.step()
        assert all(p.requires_grad for p in trainer.all_params) == (flag == "true")
        states.append(trainer.model.nets.state_dict())
    assert_close(states[1], states[0])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_fp16_step_uses_a_gradient_scaler(registry):
    program = compile_file(VAE, ["train.device=cuda", "train.precision=fp16", "train.batch_size=32"], registry).program
    trainer = Trainer(program)
    assert all(r.scaler is not None for r in trainer.runners)
    trainer.step()
    assert torch.isfinite(trainer.runners[0].last["elbo"]) and trainer.runners[0].scaler.get_scale() > 0
    assert "scalers" in trainer.state_dict()


@cuda
def test_cuda_conv_networks_are_channels_last(registry):
    from torch import nn

    program = compile_file(VAE, ["train.device=cuda"], registry).program
    trainer = Trainer(program)
    convs = [m for net in trainer.model.nets.values() for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        pytest.skip("this spec has no convolutional network")
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_torchrun_cli_two_processes_finish_with_one_run_directory(tmp_path: Path):
    """`torchrun --standalone --nproc-per-node 2 -m unigen compile-and-train ...` on the CPU
    (gloo): both ranks exit 0, rank 0 alone writes the run directory and reports it, and no
    rank reads a file another one owns."""
    import json
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "unigen", "compile-and-train", str(VAE), "--steps", "20", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("run written to") == 1  # rank 0 reports; rank 1 stays quiet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # one run directory, nothing else
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["processes"] == 2 and summary["metrics"]
    assert (run / "checkpoints" / "last").read_text().strip() == "step_00000020.pt"
    assert [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]] == ["20"]  # the last step: one row, with its losses and the final metrics
