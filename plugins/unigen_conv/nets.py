"""Convolutional networks for images, sized from the shapes of the edge they compute.

- `dcgan_generator` / `conv_decoder`: a vector (the flattened, concatenated parents) to an
  image [C, H, W] through a linear layer onto an s x s grid and stride-2 transposed
  convolutions that double it to H (Radford et al. 2016: no pooling, batch norm, ReLU).
- `dcgan_discriminator` / `conv_encoder`: an image [C, H, W] (the first parent) through
  stride-2 convolutions with LeakyReLU(0.2) to a vector; further parents (vectors) join the
  flattened features before the last linear layer.

H = s * 2^k with s the smallest size >= 4 reached by halving while the size stays even: 8x8
digits use one stage from 4x4, 28x28 images two from 7x7, 32x32 images three from 4x4.

Options shared by all: `base` channels, `norm` (batch, virtual batch norm `vbn` with a
fixed reference batch, or none), `spectral_norm`; the discriminator side adds
`minibatch_features` (minibatch discrimination, Salimans et al. 2016). A down network
exposes `features(*inputs)`, its last hidden layer, for feature matching.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from unigen.api.kinds import Arch, Options


def stages(size: int) -> tuple[int, int]:
    """(k, s): size = s * 2^k, halving while the size is even and the half is at least 4."""
    k = 0
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
        k += 1
    return k, size


REFERENCE = 64  # rows of the fixed reference batch of virtual batch norm


class VirtualBatchNorm(nn.Module):
    """Virtual batch norm (Salimans et al. 2016): the network runs a fixed reference batch in
    front of every batch (the first `REFERENCE` rows of its input); each example is normalised
    with the statistics, per channel, of the reference batch together with itself, so an
    example's output does not depend on the other examples of its batch."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = REFERENCE
        spatial = list(range(2, x.dim()))
        per_mean = x.mean(spatial) if spatial else x  # (N, C): each example's own statistics
        per_sq = x.pow(2).mean(spatial) if spatial else x.pow(2)
        mean = (per_mean[:m].mean(0) * m + per_mean) / (m + 1)
        sq = (per_sq[:m].mean(0) * m + per_sq) / (m + 1)
        var = (sq - mean.pow(2)).clamp_min(0)
        shape = list(mean.shape) + [1] * len(spatial)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return y * self.weight.view([1, -1] + [1] * len(spatial)) + self.bias.view([1, -1] + [1] * len(spatial))


class Reference(nn.Module):
    """Holds the fixed reference input of a network with virtual batch norm: the first
    `REFERENCE` rows the network ever sees in training (repeated if the batch is smaller),
    kept as a buffer, so checkpoints carry it."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("rows", torch.zeros(REFERENCE, *shape))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def prepend(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.ready):
            with torch.no_grad():
                idx = torch.arange(REFERENCE, device=x.device) % len(x)
                self.rows.copy_(x.detach()[idx])
                self.ready.fill_(True)
        return torch.cat([self.rows.to(x.dtype), x], 0)


class MinibatchDiscrimination(nn.Module):
    """Appends, for each example, how close it is to the others of its batch in `kernels`
    learned projections: o_b = sum_j exp(-||M_i,b - M_j,b||_1) (Salimans et al. 2016)."""

    def __init__(self, n_in: int, kernels: int, dims: int = 8) -> None:
        super().__init__()
        self.kernels, self.dims = kernels, dims
        self.T = nn.Parameter(torch.randn(n_in, kernels * dims) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x @ self.T).view(-1, self.kernels, self.dims)
        dist = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(3)  # (n, n, kernels)
        o = torch.exp(-dist).sum(1) - 1  # leave out each example's distance to itself
        return torch.cat([x, o], 1)


class ConvOptions(Options):
    base: int = Field(32, gt=0, lt=4096, description="channels of the layer nearest the image; they double at each stage away from it")
    norm: Literal["batch", "vbn", "none"] = Field("batch", description="normalisation after each hidden layer: batch norm, virtual batch norm (a fixed reference batch), or none")
    spectral_norm: bool = Field(False, description="spectral normalisation of every convolution and linear layer (Miyato et al. 2018)")


class UpOptions(ConvOptions):
    out_activation: Literal["none", "sigmoid", "tanh"] = Field("sigmoid", description="applied to the image: sigmoid for data in [0, 1]; none for logits (a Bernoulli edge)")


class DownOptions(ConvOptions):
    minibatch_features: int = Field(0, ge=0, description="kernels of a minibatch-discrimination layer before the output (0: none)")


class DecoderOptions(UpOptions):
    out_activation: Literal["none", "sigmoid", "tanh"] = "none"


class EncoderOptions(DownOptions):
    norm: Literal["batch", "vbn", "none"] = "none"


def _norm(kind: str, channels: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    if kind == "vbn":
        return [VirtualBatchNorm(channels)]
    return []


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return spectral_norm(layer) if on else layer


class ConvUp(nn.Module):
    def __init__(self, n_in: int, output: tuple[int, ...], o: UpOptions) -> None:
        super().__init__()
        c_out, h, w = output
        k, s = stages(h)
        self.start = (o.base * 2 ** max(k - 1, 0), s, w // 2**k)
        c = self.start[0]
        self.reference = Reference((n_in,)) if o.norm == "vbn" else None
        self.head = nn.Sequential(_sn(nn.Linear(n_in, c * s * self.start[2]), o.spectral_norm))
        self.head_norm = nn.Sequential(*_norm(o.norm, c), nn.ReLU())
        layers: list[nn.Module] = []
        for i in range(k):
            last = i == k - 1
            nxt = c_out if last else c // 2
            layers.append(_sn(nn.ConvTranspose2d(c, nxt, 4, 2, 1), o.spectral_norm))
            if not last:
                layers += [*_norm(o.norm, nxt), nn.ReLU()]
            c = nxt
        if k == 0:
            layers.append(_sn(nn.Conv2d(c, c_out, 3, 1, 1), o.spectral_norm))
        if o.out_activation == "sigmoid":
            layers.append(nn.Sigmoid())
        elif o.out_activation == "tanh":
            layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([t.flatten(1) for t in inputs], 1) if len(inputs) > 1 else inputs[0].flatten(1)
        if self.reference is not None:
            x = self.reference.prepend(x)
        h = self.head(x).view(-1, *self.start)
        y = self.body(self.head_norm(h))
        return y[REFERENCE:] if self.reference is not None else y


class ConvDown(nn.Module):
    def __init__(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], o: DownOptions) -> None:
        super().__init__()
        c, h, w = inputs[0]
        k, s = stages(h)
        layers: list[nn.Module] = []
        width = o.base
        for i in range(max(k, 1)):
            stride = 2 if k else 1
            layers.append(_sn(nn.Conv2d(c, width, 4 if k else 3, stride, 1), o.spectral_norm))
            if i > 0:  # no normalisation on the first layer, as in DCGAN
                layers += _norm(o.norm, width)
            layers.append(nn.LeakyReLU(0.2))
            c, width = width, width * 2
        self.body = nn.Sequential(*layers)
        self.reference = Reference(tuple(inputs[0])) if o.norm == "vbn" else None
        n_feat = c * s * (w // 2**k) + sum(math.prod(t) for t in inputs[1:])
        self.minibatch = MinibatchDiscrimination(n_feat, o.minibatch_features) if o.minibatch_features else None
        n_last = n_feat + (o.minibatch_features or 0)
        self.out = _sn(nn.Linear(n_last, math.prod(output)), o.spectral_norm)
        self.output = output

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (flattened convolution features, other parents appended)."""
        x = inputs[0]
        if self.reference is not None:
            x = self.reference.prepend(x)
        h = self.body(x).flatten(1)
        if self.reference is not None:
            h = h[REFERENCE:]
        return torch.cat([h, *[t.flatten(1) for t in inputs[1:]]], 1) if len(inputs) > 1 else h

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        h = self.features(*inputs)
        if self.minibatch is not None:
            h = self.minibatch(h)
        y = self.out(h)
        return y if len(self.output) == 1 else y.view(-1, *self.output)


def _image_problems(shape: tuple[int, ...], what: str) -> list[str]:
    if len(shape) != 3:
        return [f"{what} must be an image [C, H, W], not {list(shape)}; give the variable a shape such as [1, 28, 28] (e.g. `flatten: false` on the digits)."]
    c, h, w = shape
    kh, _ = stages(h)
    kw, _ = stages(w)
    if kh != kw:
        return [f"{what} {list(shape)}: height and width must halve the same number of times (e.g. 8x8, 28x28, 32x32)."]
    return []


class UpArch(Arch):
    Options = UpOptions
    doc = "DCGAN generator: vector -> image [C, H, W] by stride-2 transposed convolutions, batch norm, ReLU"

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: UpOptions) -> list[str]:
        return _image_problems(output, "the output")

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: UpOptions) -> nn.Module:
        return ConvUp(sum(math.prod(s) for s in inputs), output, options)


class DownArch(Arch):
    Options = DownOptions
    doc = "DCGAN discriminator: image [C, H, W] (first parent) -> vector by stride-2 convolutions, batch norm, LeakyReLU(0.2)"

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: DownOptions) -> list[str]:
        return _image_problems(inputs[0], "the first input") if inputs else ["needs an image input."]

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: DownOptions) -> nn.Module:
        return ConvDown(inputs, output, options)


class DecoderArch(UpArch):
    Options = DecoderOptions
    doc = "convolutional VAE decoder: as dcgan_generator, outputs without activation (logits or means)"


class EncoderArch(DownArch):
    Options = EncoderOptions
    doc = "convolutional VAE encoder: as dcgan_discriminator, without normalisation by default"
