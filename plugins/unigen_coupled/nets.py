"""Networks with several ports over one parameter set.

`shared`: one block of MLP layers that every port runs through plus one block of its own per
port (CoGAN's coupled generators and discriminators, UNIT's encoders). `tied`: one weight
matrix W read as W x + b by port `up` and as W^T h + c by port `down` (the tied weights of an
RBM, a tied autoencoder, a Helmholtz machine with tied recognition weights).
"""

from __future__ import annotations

import math
import re
from typing import Literal

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn
from unigen_std.nets import ACTIVATIONS, MLP, OUT

from unigen.api.kinds import Arch, Options

Shape = tuple[int, ...]
Signatures = dict[str, tuple[list[Shape], Shape]]

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _shape(s: object) -> str:
    return str(list(s))  # type: ignore[call-overload]


def _normalise(signatures: Signatures) -> dict[str, tuple[list[Shape], Shape]]:
    return {p: ([tuple(s) for s in ins], tuple(out)) for p, (ins, out) in signatures.items()}


def _unknown_ports(signatures: Signatures, ports: tuple[str, ...]) -> list[str]:
    return [f"port `{p}` is not one of the network's ports ({', '.join(f'`{q}`' for q in ports)})" for p in signatures if p not in ports]


# ------------------------------------------------------------------ shared


class SharedOptions(Options):
    """Options of `shared`: the ports, which block comes first, and the layers of each block."""

    ports: list[str] = Field(min_length=2, description="the ports' names (at least two), e.g. `[a, b]`: an edge names one as `net: g.a`")
    share: Literal["first", "last"] = Field("first", description="first: the shared layers come first, then each port's own (CoGAN's generators: a common trunk from z, a branch per domain); last: each port's own layers, then the shared ones including the output layer (CoGAN's discriminators: a branch per domain, a common head giving the logit)")
    shared_hidden: list[PositiveInt] = Field([256], description="widths of the shared hidden layers; `[]`: nothing is shared, each port is an MLP of its own (a baseline without coupling)")
    own_hidden: list[PositiveInt] = Field([256], description="widths of each port's own hidden layers")
    activation: Literal["relu", "leaky_relu", "tanh", "elu", "gelu", "softplus"] = Field("relu", description="nonlinearity after each hidden layer")
    out_activation: Literal["none", "tanh", "sigmoid"] = Field("none", description="applied to the output of every port, e.g. sigmoid for images in [0, 1]")

    @field_validator("ports")
    @classmethod
    def _names(cls, ports: list[str]) -> list[str]:
        bad = [p for p in ports if not re.match(_IDENT, p)]
        if bad:
            raise ValueError(", ".join(f"`{p}`" for p in bad) + " " + ("is not a name" if len(bad) == 1 else "are not names") + " (letters, digits and `_`, not starting with a digit)")
        clash = [p for p in ports if hasattr(nn.ModuleDict, p) or p.startswith("_")]
        if clash:
            raise ValueError(", ".join(f"`{p}`" for p in clash) + " cannot name a port (taken by torch's ModuleDict, or private); choose another name")
        twice = sorted({p for p in ports if ports.count(p) > 1})
        if twice:
            raise ValueError("each port is named once; " + ", ".join(f"`{p}`" for p in twice) + " appears twice")
        return ports

    @field_validator("shared_hidden", "own_hidden")
    @classmethod
    def _widths(cls, widths: list[int]) -> list[int]:
        if any(w <= 0 for w in widths):
            raise ValueError(f"layer widths are positive; got {widths}")
        return widths


def _layers(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers between consecutive widths, each followed by the activation."""
    out: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        out += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    return nn.Sequential(*out)


class SharedNet(nn.Module):
    """One shared block and one own block per port; `forward(*inputs, port=...)` runs the
    port's path: shared then own (share first) or own then shared (share last). The output
    layer belongs to the block that comes last (to each port when nothing is shared)."""

    def __init__(self, signatures: dict[str, tuple[list[Shape], Shape]], o: SharedOptions) -> None:
        super().__init__()
        self.share = o.share
        self.outputs = {p: out for p, (_, out) in signatures.items()}
        n_in = {p: sum(math.prod(s) for s in ins) for p, (ins, _) in signatures.items()}
        n_out = {p: math.prod(out) for p, out in self.outputs.items()}
        act = o.activation
        own: dict[str, nn.Module] = {}
        if not o.shared_hidden:  # nothing shared: a separate MLP per port
            self.shared: nn.Module = nn.Identity()
            for p in signatures:
                own[p] = nn.Sequential(*_layers([n_in[p], *o.own_hidden], act), nn.Linear([n_in[p], *o.own_hidden][-1], n_out[p]))
        elif o.share == "first":
            common_in = next(iter(n_in.values()))  # every port's (check_ports)
            self.shared = _layers([common_in, *o.shared_hidden], act)
            for p in signatures:
                widths = [o.shared_hidden[-1], *o.own_hidden]
                own[p] = nn.Sequential(*_layers(widths, act), nn.Linear(widths[-1], n_out[p]))
        else:
            common_out = next(iter(n_out.values()))  # every port's (check_ports)
            for p in signatures:
                own[p] = _layers([n_in[p], *o.own_hidden], act)
            width = o.own_hidden[-1] if o.own_hidden else next(iter(n_in.values()))
            widths = [width, *o.shared_hidden]
            self.shared = nn.Sequential(*_layers(widths, act), nn.Linear(widths[-1], common_out))
        self.own = nn.ModuleDict(own)
        out = OUT[o.out_activation]
        self.out_act: nn.Module = out() if out is not None else nn.Identity()

    def forward(self, *inputs: torch.Tensor, port: str) -> torch.Tensor:
        if port not in self.own:
            raise ValueError(f"this network has no port `{port}`; its ports are " + ", ".join(f"`{p}`" for p in self.own))
        x = MLP._join(inputs)
        y = self.own[port](self.shared(x)) if self.share == "first" else self.shared(self.own[port](x))
        y = self.out_act(y)
        shape = self.outputs[port]
        return y if len(shape) == 1 else y.view(-1, *shape)


class SharedArch(Arch):
    Options = SharedOptions
    doc = "several ports over one parameter set: a shared block of MLP layers and one own block per port; share first (a common trunk, then a branch per port: CoGAN's generators) or last (a branch per port, then a common head: CoGAN's discriminators); parents flattened and concatenated"

    def ports(self, options: SharedOptions) -> tuple[str, ...]:
        return tuple(options.ports)

    def build(self, inputs: list[Shape], output: Shape, options: SharedOptions) -> nn.Module:
        raise TypeError("`shared` has ports: an edge names one, e.g. `net: g." + options.ports[0] + "`")

    def check_ports(self, signatures: Signatures, options: SharedOptions) -> list[str]:
        """What is wrong with the ports' shapes (the edges using them), as messages."""
        sig = _normalise(signatures)
        problems = _unknown_ports(sig, self.ports(options))
        if problems or len(sig) < 2 or not options.shared_hidden:
            return problems
        shown = "; ".join(f"`{p}`: {', '.join(_shape(s) for s in ins)} -> {_shape(out)}" for p, (ins, out) in sig.items())
        if options.share == "first" and len({tuple(ins) for ins, _ in sig.values()}) > 1:
            problems.append(f"with `share: first` every port feeds the same shared layers, so all take the same input shapes; the edges give {shown}. Give the ports parents of the same shapes, or use `share: last`")
        if options.share == "last":
            if len({out for _, out in sig.values()}) > 1:
                problems.append(f"with `share: last` every port ends in the same shared layers, so all give the same output shape; the edges give {shown}. Give the ports children of the same shape (and distribution), or use `share: first`")
            if not options.own_hidden and len({sum(math.prod(s) for s in ins) for ins, _ in sig.values()}) > 1:
                problems.append(f"with `share: last` and `own_hidden: []` the shared layers read each port's inputs directly, so all need as many input elements; the edges give {shown}. Add own layers (`own_hidden: [128]`)")
        return problems

    def build_ports(self, signatures: Signatures, options: SharedOptions) -> nn.Module:
        problems = self.check_ports(signatures, options)
        if problems:
            raise ValueError("; ".join(problems))
        if not signatures:
            raise ValueError("no edge uses any port of this network")
        return SharedNet(_normalise(signatures), options)


# ------------------------------------------------------------------- tied


class TiedNet(nn.Module):
    """W (m x n) with biases b (m) and c (n): port `up` maps x (n elements) to W x + b, port
    `down` maps h (m elements) to W^T h + c; both linear, the edge's distribution applies."""

    def __init__(self, n: int, m: int, outputs: dict[str, Shape]) -> None:
        super().__init__()
        bound = 1 / math.sqrt(n)  # nn.Linear's initialisation for the up map
        self.weight = nn.Parameter(torch.empty(m, n).uniform_(-bound, bound))
        self.up_bias = nn.Parameter(torch.zeros(m))
        self.down_bias = nn.Parameter(torch.zeros(n))
        self.outputs = outputs

    def forward(self, x: torch.Tensor, *, port: str) -> torch.Tensor:
        if port == "up":
            y = x.flatten(1) @ self.weight.t() + self.up_bias
        elif port == "down":
            y = x.flatten(1) @ self.weight + self.down_bias
        else:
            raise ValueError(f"`tied` has the ports `up` and `down`, not `{port}`")
        shape = self.outputs.get(port, (y.shape[1],))
        return y if len(shape) == 1 else y.view(-1, *shape)


class TiedArch(Arch):
    doc = "tied weights: port `up` maps x to W x + b, port `down` maps h to W^T h + c with the same W (an RBM's W and W^T; a tied autoencoder); linear, one parent each, for edges with one network output per element (bernoulli logits, deterministic)"

    def ports(self, options: object) -> tuple[str, ...]:
        return ("up", "down")

    def build(self, inputs: list[Shape], output: Shape, options: object) -> nn.Module:
        raise TypeError("`tied` has ports: an edge names one, `net: t.up` or `net: t.down`")

    def sizes(self, signatures: Signatures) -> tuple[tuple[int, int] | None, list[str]]:
        """(n, m): the elements of the up port's input and output, and the problems."""
        sig = _normalise(signatures)
        problems = _unknown_ports(sig, ("up", "down"))
        for p, (ins, _) in sig.items():
            if len(ins) != 1:
                problems.append(f"port `{p}` maps one parent, but its edge has {len(ins)}: {', '.join(_shape(s) for s in ins)}")
        if problems or not sig:
            return None, problems or ["no edge uses a port of this network"]
        sizes = {p: (math.prod(ins[0]), math.prod(out)) for p, (ins, out) in sig.items()}
        n, m = sizes["up"] if "up" in sizes else sizes["down"][::-1]
        if "up" in sizes and "down" in sizes and sizes["down"] != (m, n):
            up_in, up_out = sig["up"][0][0], sig["up"][1]
            dn_in, dn_out = sig["down"][0][0], sig["down"][1]
            why = ""
            if sizes["down"][0] == m and sizes["down"][1] % n == 0 and sizes["down"][1] != n:
                why = f" The `down` edge asks for {sizes['down'][1] // n} outputs per element of its child (a distribution with several parameters, e.g. normal's mean and log-variance), which W^T cannot give."
            elif sizes["down"][1] == n and m % max(sizes["down"][0], 1) == 0 and m != sizes["down"][0]:
                why = f" The `up` edge asks for {m // sizes['down'][0]} outputs per element of its child (a distribution with several parameters, e.g. normal's mean and log-variance), which W cannot give with W^T mapping back."
            problems.append(
                f"port `up` maps {_shape(up_in)} -> {_shape(up_out)}, so W is {m} x {n} and port `down` (W^T) maps {m} elements to {n}; but its edge maps {_shape(dn_in)} -> {_shape(dn_out)}.{why} "
                "Use a distribution with one output per element on tied edges (`bernoulli`, `deterministic`), or two separate networks"
            )
            return None, problems
        return (n, m), []

    def check_ports(self, signatures: Signatures, options: object) -> list[str]:
        """What is wrong with the ports' shapes (the edges using them), as messages."""
        return self.sizes(signatures)[1]

    def build_ports(self, signatures: Signatures, options: object) -> nn.Module:
        nm, problems = self.sizes(signatures)
        if nm is None:
            raise ValueError("; ".join(problems))
        return TiedNet(nm[0], nm[1], {p: out for p, (_, out) in _normalise(signatures).items()})
