"""One run on several processes: data parallelism with torch.distributed.

Each process (a *rank*) holds the whole model. The spec's `train.batch_size` is the *global*
batch: every rank draws the same batch indices (one data order, one seed) and keeps its own
slice of `batch_size / world_size` rows, so N ranks together see exactly the batch one process
would. Each network that some phase updates gets its own `DistributedDataParallel` wrapper,
and a phase calls the wrappers of the networks it updates only: a frozen network runs as its
plain module, so no allreduce waits for gradients that a phase never computes. DDP averages
the gradients over the ranks; each rank's loss is a mean over its slice, so the average is the
gradient of the mean over the global batch, and the update equals one process's on the whole
batch (tests/test_distributed.py checks this, a gradient penalty through `autograd.grad`
included).

Noise (priors, reparameterised samples) is drawn per rank from its own stream: rank 0 keeps
the stream of a one-process run, rank r > 0 is seeded from (seed, r).

Processes come from `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT in the
environment, several nodes through its rendezvous) or from `--nproc-per-node N`, which starts
N local workers through torch's elastic launcher. gloo on the CPU, NCCL on CUDA (one GPU per
local rank). Only rank 0 writes files; a checkpoint holds every rank's random streams, and on
resuming rank 0 reads it and hands it to the others.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from unigen.errors import Diagnostic, UnigenError

T = TypeVar("T")


# Rank r > 0 seeds its noise from the run's seed and r: distinct, reproducible streams.
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def noise_seed(self, seed: int) -> int:
        return (seed + RANK_SEED_STRIDE * self.rank) % 2**63

    # ------------------------------------------------------------ collectives
    def from_main(self, fn: Callable[[], T]) -> T:
        """`fn()` run on rank 0 only, its result (or its UnigenError) on every rank: files are
        read once, and an error reaches every rank instead of leaving them waiting."""
        if not self.active:
            return fn()
        box: list[Any] = [None]
        error: BaseException | None = None
        if self.main:
            try:
                box[0] = ("ok", fn())
            except UnigenError as exc:
                box[0], error = ("error", exc.diagnostics, exc.exit_code), exc
            except Exception as exc:  # the others must not wait for an answer that never comes
                box[0], error = ("crash", f"{type(exc).__name__}: {exc}"), exc
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        kind, *rest = box[0]
        if kind == "ok":
            return rest[0]  # type: ignore[no-any-return]
        if kind == "error":
            raise UnigenError(list(rest[0]), rest[1])
        raise RuntimeError(f"rank 0 failed: {rest[0]}")

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def all_true(self, flags: torch.Tensor) -> torch.Tensor:
        """Elementwise AND of a bool tensor over the ranks (stays on the device)."""
        if not self.active:
            return flags
        t = flags.to(torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return t.bool()


SINGLE = World()


def env_world() -> World | None:
    """The world torchrun (or the elastic launcher) describes in the environment, if any."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise UnigenError.one("X004", f"RANK={env['RANK']!r}, WORLD_SIZE={env['WORLD_SIZE']!r} are not whole numbers.", (), "start distributed runs with `torchrun` or `--nproc-per-node N`.") from None
    return World(rank, size, local)


def uses_cuda(device: str) -> bool:
    return device != "cpu" and torch.cuda.is_available()


def start(device: str) -> tuple[World, bool]:
    """Joins the process group the environment describes (gloo on the CPU, NCCL on CUDA).
    Returns the world and whether this call created the group (and so must end it)."""
    world = env_world()
    if world is None or not world.active:
        return SINGLE, False
    if dist.is_initialized():
        return world, False
    cuda = uses_cuda(device)
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise UnigenError.one("X004", f"local rank {world.local_rank} has no GPU: this node has {torch.cuda.device_count()}.", (), "start at most one process per GPU (`--nproc-per-node`), or train on the CPU with `--device cpu`.")
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=world.rank, world_size=world.size)
    return world, True


def stop(owned: bool) -> None:
    if owned and dist.is_initialized():
        dist.destroy_process_group()


def device_for(world: World, device: torch.device) -> torch.device:
    """One GPU per local rank; the CPU is shared."""
    if world.active and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def shard_size(world: World, batch_size: int, path: tuple[str | int, ...] = ("train", "batch_size")) -> int:
    """Rows of the global batch each rank computes; X001 unless the batch splits evenly."""
    if batch_size % world.size:
        lower = batch_size - batch_size % world.size
        raise UnigenError.one(
            "X001",
            f"`train.batch_size` = {batch_size} does not split evenly over {world.size} processes; expected a multiple of {world.size} (it is the global batch, each process takes an equal share).",
            path,
            f"use `train.batch_size={lower or world.size}` or `{lower + world.size}`, or another number of processes.",
        )
    return batch_size // world.size


def agree_stop(world: World, stop: Any, device: torch.device) -> bool:
    """Whether to stop: a signal that reached some ranks only (`stop.signum`) stops them all.
    The ranks agree at logged steps; those that got none take SIGTERM as theirs."""
    if not world.active:
        return stop.signum is not None
    import signal

    running = bool(world.all_true(torch.tensor(stop.signum is None, device=device)))
    if not running and stop.signum is None:
        stop.signum = int(signal.SIGTERM)
    return not running


# ------------------------------------------------------------------ networks
def wrap(net: nn.Module, device: torch.device) -> nn.Module:
    """A network's DDP wrapper. Buffers are not broadcast at each forward: a discriminator
    called twice in one phase (real, then fake) would see its batch-norm statistics rewritten
    between the two calls, under autograd; `sync_buffers` copies rank 0's after each step."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    # Newer torch names the option `forward_sync_buffers` (and warns on the old name).
    sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters else {"broadcast_buffers": False}
    return DDP(net, device_ids=ids, output_device=device.index if ids else None, **sync)


def sync_batchnorm(nets: Iterable[tuple[str, nn.Module]], holder: nn.ModuleDict) -> list[str]:
    """Batch norm -> SyncBatchNorm in place (same parameters); the names of networks changed."""
    changed = []
    for name, net in list(nets):
        new = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        if any(isinstance(m, nn.SyncBatchNorm) for m in new.modules()):
            holder[name] = new
            changed.append(name)
    return changed


def sync_buffers(nets: Iterable[nn.Module]) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank."""
    for net in nets:
        for b in net.buffers():
            dist.broadcast(b, src=0)


def fingerprint(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in params]) if params else torch.zeros(0, dtype=torch.float64)


def check_in_step(world: World, nets: dict[str, nn.Module], step: int) -> None:
    """X003 when the replicas of a network differ between ranks: a term called it through
    `model.nets` (unwrapped) instead of `ctx.net`, so its gradients were never averaged."""
    names = list(nets)
    params = [p for n in names for p in nets[n].parameters()]
    if not params:
        return
    sums = torch.stack([fingerprint(list(nets[n].parameters())).sum() for n in names])
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    apart = [n for n, a, b in zip(names, lo.tolist(), hi.tolist()) if a != b]
    if apart:
        raise UnigenError.one(
            "X003",
            f"after step {step}, the copies of network{'s' if len(apart) > 1 else ''} {', '.join(f'`{n}`' for n in apart)} differ between processes; expected every process to hold the same weights.",
            ("networks", apart[0]),
            "a plugin's term calls the network through `model.nets[...]`, which skips the gradient averaging; call it through `ctx.net(name)` (or `model.calls`).",
            exit_code=1,
        )


# ------------------------------------------------------------------ launching
def launch(nproc: int, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """`fn(**kwargs)` (a module-level function, such as the run driver's `train_run`) on `nproc` local processes (torch's elastic launcher, as
    `torchrun --standalone` does): rank 0's result, or the error a rank reported. A rank that
    fails exits non-zero, so the launcher stops the others rather than leave them waiting in a
    collective; its diagnostics come back through a file."""
    import pickle
    import tempfile
    from pathlib import Path

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"unigen-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port, chosen by the store
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    with tempfile.TemporaryDirectory(prefix="unigen-ranks-") as tmp:
        try:
            results = elastic_launch(config, _worker)(fn, kwargs, tmp)
        except ChildFailedError as exc:
            for path in sorted(Path(tmp).glob("rank_*.pkl")):
                diags, code = pickle.loads(path.read_bytes())
                raise UnigenError([Diagnostic(*d) for d in diags], code) from None
            first = next(iter(exc.failures.values()), None) if exc.failures else None
            text = str(first.message) if first is not None and first.message else str(exc)
            last = text.strip().splitlines()[-1] if text.strip() else "no message"
            raise UnigenError.one("X002", f"a training process failed: {last}.", (), "run with `--nproc-per-node 1` to see the error of one process; `UNIGEN_TRACEBACK=1` shows where it happened.", exit_code=1) from None
    return results[0]


def _worker(fn: Callable[..., Any], kwargs: dict[str, Any], errors: str) -> Any:
    import pickle
    from pathlib import Path


    try:
        return fn(**kwargs)
    except UnigenError as exc:
        rank = int(os.environ.get("RANK", "0"))
        rows = [(d.code, d.message, d.path, d.hint, d.file, d.line, d.col) for d in exc.diagnostics]
        (Path(errors) / f"rank_{rank:05d}.pkl").write_bytes(pickle.dumps((rows, exc.exit_code)))
        raise
