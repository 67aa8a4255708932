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
    """The memory of the device networks are trained on (None when unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError, RuntimeError):
        return None


# Training holds each parameter about four times: the weights, their gradients and two moments
# of an optimizer such as Adam.
TRAINING_COPIES = 4


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
    limit = memory_bytes(device)
    total = sum(sizes.values())
    if limit is not None and total * TRAINING_COPIES > limit:
        name = max(sizes, key=lambda n: sizes[n])
        where = "this GPU's" if device.type == "cuda" else "this machine's"
        raise UnigenError.one(
            "G016",
            f"the networks would hold {_size(total)} of parameters (`{name}` alone {_size(sizes[name])}), and training them needs about {TRAINING_COPIES} times that, more than {where} {_size(limit)} of memory; expected networks that fit.",
            ("networks", name),
            f"make `{name}` smaller (its options, e.g. `hidden`, or the shapes of the variables on its edges).",
        )
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


def _exc_text(exc: BaseException) -> str:
    return exception_text(exc, 300).rstrip(": ").rstrip(".")
