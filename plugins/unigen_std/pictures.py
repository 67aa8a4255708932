"""How the datasets' samples are drawn: image grids, and 2-D points over a mixture's density.

A dataset kind subclasses one of the kinds below instead of `DatasetKind`, e.g.
`class Digits(ImageSamples)`; its `info` then says what the drawing needs (`image_shape`
(H, W) for images; `modes` and `sigma` for a mixture).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from unigen.api.kinds import DatasetKind


def image_grid(x: torch.Tensor, rows: int, cols: int, shape: tuple[int, int]) -> torch.Tensor:
    """The first channel of up to rows * cols images, in a grid with grey borders (white is ink)."""
    h, w = shape
    imgs = x.detach().float().cpu().reshape(len(x), -1, h, w)[:, 0].clamp(0, 1)
    grid = torch.full((rows * (h + 1) + 1, cols * (w + 1) + 1), 0.5)
    for i in range(min(len(imgs), rows * cols)):
        r, c = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = imgs[i]
    return grid


def draw_image_grid(ax: Any, x: torch.Tensor, rows: int, cols: int, shape: tuple[int, int], row_labels: list[str] | None = None) -> None:
    h = shape[0]
    ax.figure.set_size_inches(max(3.0, 0.5 * cols + 0.8), 0.5 * rows + 0.6)
    ax.imshow(image_grid(x, rows, cols, shape).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        ax.set_yticks([1 + r * (h + 1) + h / 2 for r in range(rows)])
        ax.set_yticklabels(row_labels, fontsize=6)
    else:
        ax.set_yticks([])


class ImageSamples(DatasetKind):
    """Samples drawn as a grid of images of `info["image_shape"]` (H, W), one row a row."""

    def draw_samples(self, ax: Any, samples: torch.Tensor, info: dict[str, Any], rows: int, cols: int, row_labels: list[str] | None = None, paths: bool = False) -> None:
        draw_image_grid(ax, samples, rows, cols, tuple(info["image_shape"])[-2:], row_labels)


def mixture_span(info: dict[str, Any]) -> float:
    return float(torch.as_tensor(info["modes"]).abs().max()) * 1.4 + 0.2


def density_background(ax: Any, info: dict[str, Any], span: float) -> None:
    """The true mixture's log-density as a grey shade, circles of 3 sigma around its modes."""
    import matplotlib.pyplot as plt

    modes = torch.as_tensor(info["modes"]).double().cpu()
    sigma = float(info.get("sigma", 0.05))
    axis = torch.linspace(-span, span, 400, dtype=torch.float64)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    d2 = torch.cdist(pts, modes).pow(2)
    logp = torch.logsumexp(-d2 / (2 * sigma**2), 1) - math.log(len(modes)) - math.log(2 * math.pi * sigma**2)
    img = logp.reshape(400, 400).clamp(min=float(logp.max()) - 12)
    ax.imshow(img.numpy(), extent=(-span, span, -span, span), origin="lower", cmap="Greys", alpha=0.8)
    # The densest region is a few pixels wide when sigma is small: circles of 3 sigma (the
    # high-quality radius of the mode metrics) show where the mass is.
    for i, (mx, my) in enumerate(modes.tolist()):
        ax.add_patch(plt.Circle((mx, my), 3 * sigma, fill=False, color="tab:red", lw=0.8, zorder=3, label="true modes (3 sigma)" if i == 0 else None))


class MixtureSamples(DatasetKind):
    """2-D samples drawn as points over the density of the mixture in `info` (`modes`,
    `sigma`); a picture during training shows enough points to see every mode filled."""

    picture_samples = 2500

    def draw_samples(self, ax: Any, samples: torch.Tensor, info: dict[str, Any], rows: int, cols: int, row_labels: list[str] | None = None, paths: bool = False) -> None:
        span = mixture_span(info)
        density_background(ax, info, span)
        super().draw_samples(ax, samples, info, rows, cols, row_labels, paths)  # the points
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
