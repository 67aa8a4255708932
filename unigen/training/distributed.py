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

Under `--nproc-per-node` the launcher owns SIGINT and SIGTERM and passes each on once to every
worker (the workers leave its process group, so a terminal's Ctrl-C reaches them through it
only): they finish the step, rank 0 saves, and the run ends with R003 as one process does. A
rank that fails reports its unigen error through a file; one that was killed from outside is
X002 naming it, and the others' errors, which only say that it went away, are no cause.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
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
# What a rank that lost its peers sees (gloo, NCCL): the cause is the other rank, not a term.
PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "remote worker crash", "communicator was aborted", "socket closed")
WAIT_FOR_MAIN_S = 60.0  # how long a failing rank > 0 waits for rank 0 to finish saving


def peer_lost(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) says that another process of the run went away."""
    while exc is not None:
        if isinstance(exc, getattr(dist, "DistNetworkError", ())) or (isinstance(exc, RuntimeError) and any(s in str(exc).lower() for s in PEER_LOST)):
            return True
        exc = exc.__cause__
    return False


@dataclass(frozen=True)
class Report:
    """What a rank ended with: its diagnostics and exit code; `lost`: it failed because
    another process went away."""

    rows: tuple[tuple[Any, ...], ...]
    code: int
    lost: bool = False

    def error(self) -> UnigenError:
        return UnigenError([Diagnostic(*d) for d in self.rows], self.code)


class Ranks:
    """The launcher's view of its workers, through files in one folder: each rank's pid
    (`pid_R`) and, when it failed with a unigen error, its report (`rank_R.pkl`)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def pids(self) -> dict[int, int]:
        out = {}
        for path in self.folder.glob("pid_*"):
            try:
                out[int(path.name[4:])] = int(path.read_text())
            except (OSError, ValueError):  # being written
                continue
        return out

    def reports(self) -> dict[int, Report]:
        import pickle

        return {int(p.stem[5:]): Report(*pickle.loads(p.read_bytes())) for p in sorted(self.folder.glob("rank_*.pkl"))}

    def write_report(self, rank: int, report: Report) -> None:
        import pickle

        tmp = self.folder / f".rank_{rank:05d}.tmp"
        tmp.write_bytes(pickle.dumps((report.rows, report.code, report.lost)))
        tmp.replace(self.folder / f"rank_{rank:05d}.pkl")  # whole, or not there

    def wait_for_main(self, timeout: float = WAIT_FOR_MAIN_S) -> None:
        """Until rank 0 has reported or ended: a rank that stops first must not make the
        launcher end rank 0 while it still saves the run's checkpoint."""
        import time

        pid = self.pids().get(0)
        deadline = time.monotonic() + timeout
        while pid is not None and time.monotonic() < deadline and not (self.folder / "rank_00000.pkl").exists():
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.05)


class Relay:
    """SIGINT and SIGTERM in the launcher, passed on once each to every worker: the workers
    (in process groups of their own, so that a terminal's Ctrl-C reaches them through here
    only) finish the step and save, as one process does; a second signal stops them at once.
    torch's agent keeps SIGHUP and SIGQUIT."""

    SIGNALS = ("SIGINT", "SIGTERM")
    AGENT = "SIGHUP,SIGQUIT"  # what torch's agent is left to handle

    def __init__(self, ranks: Ranks) -> None:
        self.ranks = ranks
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        self._env: str | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum
        pids = self.ranks.pids()
        if not pids:  # no worker runs yet: nothing to save, the agent ends what it started
            raise KeyboardInterrupt
        for pid in pids.values():
            try:
                os.kill(pid, signum)
            except OSError:  # it has ended
                pass

    def __enter__(self) -> "Relay":
        import signal
        import threading

        self._env = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
        if threading.current_thread() is threading.main_thread():
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = self.AGENT  # the launcher sets it again from its config
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._old[sig] = signal.signal(sig, self)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        if self._env is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = self._env


def launch(nproc: int, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """`fn(**kwargs)` (a module-level function, such as the run driver's) on `nproc` local
    processes (torch's elastic launcher, as `torchrun --standalone` does): rank 0's result, or
    the error the run ended with. A rank that fails exits non-zero, so the launcher stops the
    others rather than leave them waiting in a collective; its diagnostics come back through a
    file, and torch's own report of each failed rank (tracebacks) is not printed: the unigen
    error says what happened (`UNIGEN_TRACEBACK=1` shows both)."""
    import tempfile

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torch's agent keeps to SIGHUP and SIGQUIT; SIGINT and SIGTERM are the relay's.
    agent: dict[str, Any] = {"signals_to_handle": Relay.AGENT} if "signals_to_handle" in getattr(LaunchConfig, "__dataclass_fields__", {}) else {}
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
        **agent,
    )
    with tempfile.TemporaryDirectory(prefix="unigen-ranks-") as tmp, Relay(Ranks(tmp)) as relay, QuietTorch():
        try:
            results = elastic_launch(config, _worker)(fn, kwargs, tmp)
        except ChildFailedError as exc:
            raise run_failure(relay, exc.get_first_failure()) from None
        except SignalException as exc:  # SIGHUP or SIGQUIT: torch's agent ended the workers
            name = getattr(exc.sigval, "name", str(exc.sigval))
            raise UnigenError.one("X002", f"training stopped by {name}: the training processes were ended without saving a checkpoint.", (), "`--resume auto` continues from the newest checkpoint in the run directory; stop a run with SIGINT or SIGTERM to save one first.", exit_code=128 + int(exc.sigval)) from None
    return results[0]


def run_failure(relay: Relay, first: tuple[int, Any]) -> BaseException:
    """The error a failed multi-process run ends with. A rank's own unigen error comes first
    (a signal's R003 included); a rank that failed only because another went away is no cause.
    A rank that ended without reporting (killed from outside, or crashed in native code) is X002,
    naming it; a second signal that stopped every rank at once is KeyboardInterrupt."""
    reports = relay.ranks.reports()
    own = [r for r in sorted(reports) if not reports[r].lost]
    if own:
        return reports[own[0]].error()
    if relay.signum is not None:
        return KeyboardInterrupt()
    rank, failure = first
    pids = relay.ranks.pids()
    outside = "something outside the run ended it (the out-of-memory killer, a job scheduler, `kill`)"
    if rank in reports:  # the first to fail lost its peers: the cause is a rank that did not report
        silent = [r for r in sorted(pids) if r not in reports]
        what = f"training process {', '.join(map(str, silent)) or '?'} ended without a report, and the others lost contact with it; {outside}, or it crashed in native code"
    else:
        pid = pids.get(rank, getattr(failure, "pid", "?"))
        exitcode = int(getattr(failure, "exitcode", 1) or 1)
        if exitcode < 0:
            what = f"training process {rank} (pid {pid}) was killed by {failure.signal_name()}; {outside}"
        else:
            what = f"training process {rank} (pid {pid}) ended with exit code {exitcode} without a unigen error (a plugin that calls `os._exit`, or a crash in native code)"
    saved = next((d[3][d[3].index("The last good state"):] for r in sorted(reports) for d in reports[r].rows if "The last good state" in (d[3] or "")), "")
    hint = saved[:1].lower() + saved[1:] or "`--resume auto` with the run's `--out` continues from its newest checkpoint."
    return UnigenError.one("X002", f"{what}. The other processes were stopped.", (), hint + " `UNIGEN_TRACEBACK=1` shows torch's report of each process.", exit_code=1)


class QuietTorch:
    """torch's elastic launcher logs each failed rank with its traceback, and each worker it
    stops; unigen reports the run's end in one coded line instead (`UNIGEN_TRACEBACK=1` keeps
    torch's logs)."""

    PREFIXES = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")

    def __enter__(self) -> "QuietTorch":
        import logging

        self.muted: list[logging.Logger] = []
        if os.environ.get("UNIGEN_TRACEBACK", "") not in ("", "0"):
            return self
        for name in list(logging.root.manager.loggerDict):
            log = logging.getLogger(name)
            if name.startswith(self.PREFIXES) and not log.disabled:
                log.disabled = True
                self.muted.append(log)
        return self

    def __exit__(self, *exc: Any) -> None:
        for log in self.muted:
            log.disabled = False


def _own_process_group() -> None:
    """A worker leaves the launcher's process group: a terminal's Ctrl-C then reaches the
    launcher alone, which passes it on once (two would stop the worker without a checkpoint)."""
    try:
        os.setpgid(0, 0)
    except (AttributeError, OSError):
        pass


def _worker(fn: Callable[..., Any], kwargs: dict[str, Any], errors: str) -> Any:
    import sys
    import traceback

    rank = int(os.environ.get("RANK", "0"))
    ranks = Ranks(errors)
    _own_process_group()
    (ranks.folder / f"pid_{rank:05d}").write_text(str(os.getpid()))
    verbose = os.environ.get("UNIGEN_TRACEBACK", "") not in ("", "0")
    try:
        return fn(**kwargs)
    except UnigenError as exc:
        lost = peer_lost(exc.__cause__)  # the loop says so as X002; the cause is another rank
        rows = tuple((d.code, d.message, d.path, d.hint, d.file, d.line, d.col) for d in exc.diagnostics)
        report, cause = Report(rows, exc.exit_code, lost), exc.__cause__
    except KeyboardInterrupt:  # a second signal: stopped at once, nothing to report
        sys.exit(130)
    except Exception as exc:  # not a unigen error: named, with where it happened under UNIGEN_TRACEBACK
        from unigen.errors import exception_text

        text = f"training process {rank} failed: {exception_text(exc, 300)}."
        report, cause = Report((("X002", text, (), "run with `--nproc-per-node 1` to see the error of one process; `UNIGEN_TRACEBACK=1` shows where it happened.", "", 0, 0),), 1, peer_lost(exc)), exc
    if verbose and cause is not None:
        traceback.print_exception(cause, file=sys.stderr)
    ranks.write_report(rank, report)
    if rank:
        ranks.wait_for_main()
    sys.exit(report.code or 1)  # no exception out of here: torch would print its traceback
