"""A small gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders") for single-channel images, in raster order (row by row, left to right: the order of
the flattened index).

Two stacks of gated layers, y = tanh(a) * sigmoid(b):

- the vertical stack, a (k//2 + 1) x k convolution over the rows above and the current row,
  so that its features at row r see the rows <= r;
- the horizontal stack, a 1 x (k//2 + 1) convolution over the pixels to the left in the same
  row, plus the vertical stack's pre-activation shifted down by one row (1 x 1 convolution):
  its features at (r, c) see the rows above r and the pixels (r, c') left of c.

The first horizontal layer leaves out the current pixel (mask A: c' < c); the later ones include
it (mask B: c' <= c), whose features already exclude the pixel's own value. The horizontal stack
has residual connections after the first layer. Parents, if any, are flattened, concatenated
and added to every layer's pre-activations through a linear map (the conditional PixelCNN's
V^T h). Two 1 x 1 convolutions with ReLU give the n_params logits of each pixel.

The shifts are padding and cropping, not masked weights: no kernel weight ever reaches a pixel
at or after the current one, which the G021 rule checks numerically.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unigen.api.kinds import Arch, Options


class PixelCNNOptions(Options):
    channels: int = Field(32, gt=0, description="feature maps of each stack (the gates use twice as many pre-activations)")
    layers: int = Field(4, ge=1, description="gated layers (the first with mask A, the others with mask B)")
    kernel: int = Field(3, ge=3, description="odd kernel size k of the k x k receptive field of a layer")
    image: list[int] | None = Field(None, min_length=2, max_length=2, description="[H, W] of a flat child (shape [H*W]), e.g. [8, 8]; by default a square image")


def image_shape(child: tuple[int, ...], o: PixelCNNOptions) -> tuple[int, int, int] | str:
    """(C, H, W) of the child, or what is wrong with it."""
    if len(child) == 3:
        if o.image is not None and list(child[1:]) != list(o.image):
            return f"`image: {o.image}` differs from the child's [H, W] = {list(child[1:])}."
        return (child[0], child[1], child[2])
    if len(child) != 1:
        return f"the child's shape {list(child)} is neither [C, H, W] nor flat [H*W]."
    if o.image is not None:
        if math.prod(o.image) != child[0]:
            return f"`image: {o.image}` holds {math.prod(o.image)} pixels, but the child has {child[0]} elements."
        return (1, o.image[0], o.image[1])
    side = math.isqrt(child[0])
    if side * side != child[0]:
        return f"the flat child [{child[0]}] is no square image; give `image: [H, W]`."
    return (1, side, side)


def down(x: torch.Tensor) -> torch.Tensor:
    """Shift feature maps down by one row (row 0 gets zeros): row r then holds row r - 1's."""
    return F.pad(x, (0, 0, 1, 0))[:, :, : x.shape[2], :]


class GatedLayer(nn.Module):
    """One gated layer of both stacks."""

    def __init__(self, c_in: int, channels: int, k: int, first: bool, n_cond: int) -> None:
        super().__init__()
        half = k // 2
        self.first, self.half = first, half
        self.v_conv = nn.Conv2d(c_in, 2 * channels, (half + 1, k))  # rows r-half..r, columns c-half..c+half
        # Mask A sees columns c-half..c-1; mask B columns c-half..c.
        self.h_conv = nn.Conv2d(c_in, 2 * channels, (1, half if first else half + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Linear(n_cond, 4 * channels) if n_cond else None

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        half, width = self.half, h.shape[3]
        v_pre = self.v_conv(F.pad(v, (half, half, half, 0)))
        # Mask A: pad `half` on the left, a kernel of width `half` ends at c - 1 (the extra last column is cropped).
        h_pre = self.h_conv(F.pad(h, (half, 0, 0, 0)))[:, :, :, :width] + self.v_to_h(down(v_pre))
        if self.cond is not None and cond is not None:
            cv, ch = self.cond(cond).chunk(2, dim=1)
            v_pre = v_pre + cv[:, :, None, None]
            h_pre = h_pre + ch[:, :, None, None]
        v_out = gate(v_pre)
        h_gated = self.h_out(gate(h_pre))
        return v_out, (h_gated if self.first else h + h_gated)


def gate(pre: torch.Tensor) -> torch.Tensor:
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class PixelCNN(nn.Module):
    """Called as `net(x, *parents)` with x of the child's shape; returns (n, *output), whose
    element block p (param-major, as the child is flattened) is the p-th parameter of each pixel."""

    def __init__(self, chw: tuple[int, int, int], parents: list[tuple[int, ...]], output: tuple[int, ...], o: PixelCNNOptions) -> None:
        super().__init__()
        c, self.height, self.width = chw
        n_params = math.prod(output) // math.prod(chw)
        n_cond = sum(math.prod(s) for s in parents)
        self.layers = nn.ModuleList(GatedLayer(c if i == 0 else o.channels, o.channels, o.kernel, i == 0, n_cond) for i in range(o.layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(o.channels, o.channels, 1), nn.ReLU(), nn.Conv2d(o.channels, n_params * c, 1))
        self.chw, self.output = chw, output

    def forward(self, x: torch.Tensor, *parents: torch.Tensor) -> torch.Tensor:
        img = x.reshape(-1, *self.chw)
        cond = torch.cat([p.flatten(1) for p in parents], 1) if parents else None
        v = h = img
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return self.head(h).reshape(-1, *self.output)


class PixelCNNArch(Arch):
    Options = PixelCNNOptions
    causal = True
    doc = "gated PixelCNN (van den Oord et al. 2016) over a single-channel image in raster order; vertical and horizontal stacks, mask A then B"

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: PixelCNNOptions) -> list[str]:
        if not inputs:
            return ["`pixelcnn` evaluates a variable's own value: it needs the child's shape as its first input (use it under an autoregressive density)."]
        chw = image_shape(tuple(inputs[0]), options)
        if isinstance(chw, str):
            return [chw]
        if chw[0] != 1:
            return [f"`pixelcnn` models single-channel images; the child has {chw[0]} channels (masks across channels are not implemented)."]
        if options.kernel % 2 == 0:
            return [f"`kernel: {options.kernel}` is even; expected an odd size such as 3 or 5."]
        if math.prod(output) % math.prod(inputs[0]):
            return [f"output {list(output)} is no whole number of copies of the child {list(inputs[0])}."]
        return []

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: PixelCNNOptions) -> nn.Module:
        chw = image_shape(tuple(inputs[0]), options)
        if isinstance(chw, str):
            raise ValueError(chw)
        return PixelCNN(chw, [tuple(s) for s in inputs[1:]], tuple(output), options)
