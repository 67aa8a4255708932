"""The networks of a program, built by their architectures from their edges' shapes, refused
when they could not fit in memory; and the device a run trains on."""

from __future__ import annotations

import os

import torch
from torch import nn

from unigen.compiler.program import Program
from unigen.errors import UnigenError, exception_text


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UnigenError.one("S002", "`train.device` is `cuda`, but no CUDA device is available.", ("train", "device"), "use `--device auto` or `--device cpu`.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def memory_bytes(device: torch.device) -> int | None:
    """The memory networks are trained in (None when unknown): a GPU's; on the CPU the least of
    the machine's physical memory, what this process's limits (`ulimit -v`: RLIMIT_AS, and
    RLIMIT_DATA) leave it, and its cgroup's memory limit (a container's, a job's)."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.get_device_properties(device).total_memory)
        except (AttributeError, ValueError, OSError, RuntimeError):
            return None
    known = [v for v in (physical_bytes(), rlimit_bytes(), cgroup_bytes()) if v is not None]
    return min(known) if known else None


def physical_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def rlimit_bytes() -> int | None:
    """What this process's soft limits on its address space and its data leave it (the limit
    less what it holds already); None without a limit."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    status = _read("/proc/self/status")
    left = []
    for limit, field in ((getattr(resource, "RLIMIT_AS", None), "VmSize"), (getattr(resource, "RLIMIT_DATA", None), "VmData")):
        if limit is None:
            continue
        soft = resource.getrlimit(limit)[0]
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        used = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith(field + ":")), 0)
        left.append(max(soft - used, 0))
    return min(left) if left else None


CGROUP = "/sys/fs/cgroup"


def cgroup_bytes() -> int | None:
    """The memory limit of this process's cgroup or of one above it (v2 `memory.max`, v1
    `memory.limit_in_bytes`); None without one."""
    candidates = []
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2, one hierarchy
            candidates += [f"{d}/memory.max" for d in _upwards(CGROUP, path)]
        elif "memory" in controllers.split(","):
            candidates += [f"{d}/memory.limit_in_bytes" for d in _upwards(f"{CGROUP}/memory", path)]
    limits = []
    for file in dict.fromkeys(candidates):
        text = _read(file).strip()
        if text.isdigit() and int(text) < 2**60:  # "max", or v1's huge "no limit"
            limits.append(int(text))
    return min(limits) if limits else None


def _upwards(root: str, path: str) -> list[str]:
    """`root/path` and each folder above it up to `root` (a container sees its own cgroup at
    the root, whatever path the host gives it)."""
    parts = [p for p in path.strip().split("/") if p]
    return [root + "".join(f"/{p}" for p in parts[:i]) for i in range(len(parts), -1, -1)]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def _where(device: torch.device, limit: int) -> str:
    """The memory `limit` is, for a message."""
    if device.type == "cuda":
        return f"this GPU's {_size(limit)} of memory"
    if limit == rlimit_bytes():
        return f"the {_size(limit)} that this process's limits (`ulimit -v`: RLIMIT_AS, RLIMIT_DATA) leave it"
    if limit == cgroup_bytes():
        return f"its cgroup's memory limit of {_size(limit)}"
    return f"this machine's {_size(limit)} of memory"


# Training holds each parameter about four times: the weights, their gradients and two moments
# of an optimizer such as Adam.
TRAINING_COPIES = 4
# Unless `train.on_nonfinite` is `skip`, the last good state is kept in memory too (the weights
# and the optimizer's moments: 3 copies), and a new one is taken while the previous one is held.
SNAPSHOT_COPIES = 2 * 3


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    return f"{nbytes:.3g} EiB"


def build_networks(program: Program, device: torch.device) -> dict[str, nn.Module]:
    """Every network of the program, built by its architecture from its edge's shapes.

    Each is built first on the `meta` device, which allocates nothing: a network too large for
    the machine (`hidden: [10000000]`) is refused (G016) instead of exhausting its memory. An
    architecture that fails to build is reported with the network's name, also G016.
    """
    sizes: dict[str, int] = {}
    for name, net in program.networks.items():
        try:
            with torch.device("meta"):
                probe = net.build()
            sizes[name] = sum(t.numel() * t.element_size() for t in list(probe.parameters()) + list(probe.buffers()))
        except Exception:  # an architecture that cannot be built on `meta` is built for real below
            continue
    check_memory(program, device, sizes)
    nets: dict[str, nn.Module] = {}
    for name, net in program.networks.items():
        inputs, output = net.inputs, net.output
        try:
            nets[name] = net.build()
        except Exception as exc:  # whatever the architecture raises, the user sees which network
            raise UnigenError.one(
                "G016",
                f"network `{name}` ({net.arch}) cannot be built for {', '.join(str(list(s)) for s in inputs)} -> {list(output)}: {_exc_text(exc)}; expected options the architecture accepts.",
                ("networks", name),
                "check the network's options and the shapes of the variables on its edges.",
            ) from exc
    return nets


def check_memory(program: Program, device: torch.device, sizes: dict[str, int]) -> None:
    """G016 when the networks (`sizes`: bytes of each) could not be trained in the memory there
    is: their weights, gradients and optimizer moments, and the good state kept in memory."""
    limit = memory_bytes(device)
    total = sum(sizes.values())
    policy = program.train.on_nonfinite
    copies = TRAINING_COPIES + (SNAPSHOT_COPIES if policy != "skip" else 0)
    if limit is None or not sizes or total * copies <= limit:
        return
    name = max(sizes, key=lambda n: sizes[n])
    kept = f"; {SNAPSHOT_COPIES} of them the last good state that `train.on_nonfinite: {policy}` keeps in memory, two while it is taken anew" if copies > TRAINING_COPIES else ""
    raise UnigenError.one(
        "G016",
        f"the networks would hold {_size(total)} of parameters (`{name}` alone {_size(sizes[name])}), and training them needs about {copies} times that, {_size(total * copies)} (weights, gradients, optimizer moments{kept}), more than {_where(device, limit)}; expected networks that fit.",
        ("networks", name),
        f"make `{name}` smaller (its options, e.g. `hidden`, or the shapes of the variables on its edges)" + ("; `train.on_nonfinite: skip` keeps no copy in memory." if copies > TRAINING_COPIES else "."),
    )


def _exc_text(exc: BaseException) -> str:
    return exception_text(exc, 300).rstrip(": ").rstrip(".")
