"""How the datasets' samples are drawn: image grids, and 2-D points over a mixture's density.

A dataset kind subclasses one of the kinds below instead of `DatasetKind`, e.g.
`class Digits(ImageSamples)`; its `info` then says what the drawing needs (`image_shape`
(H, W) for images, whose channels are the rest of each row: 3 are drawn as red, green and
blue, 1 in grey; `modes` and `sigma` for a mixture).

Both kinds also draw reconstructions (`draw_reconstructions`: data beside what the model
makes of it), which the core draws for a model with an encoder.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from unigen.api.kinds import DatasetKind

BORDER = 0.5  # the grey between the images of a grid


def image_grid(x: torch.Tensor, rows: int, cols: int, shape: tuple[int, int]) -> torch.Tensor:
    """Up to rows * cols images in a grid with grey borders (white is ink), values clamped to
    [0, 1]: (H', W', 3) when each image has 3 channels (red, green, blue), else (H', W') of the
    first channel."""
    h, w = shape
    imgs = x.detach().float().cpu().reshape(len(x), -1, h, w).clamp(0, 1)
    imgs = imgs[:, :3].permute(0, 2, 3, 1) if imgs.shape[1] == 3 else imgs[:, 0]
    grid = torch.full((rows * (h + 1) + 1, cols * (w + 1) + 1, *imgs.shape[3:]), BORDER)
    for i in range(min(len(imgs), rows * cols)):
        r, c = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = imgs[i]
    return grid


def draw_image_grid(ax: Any, x: torch.Tensor, rows: int, cols: int, shape: tuple[int, int], row_labels: list[str] | None = None) -> None:
    """The grid of `image_grid` on `ax`, half an inch an image, each row named by `row_labels`."""
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

    reconstruction_samples = 32  # four pairs of rows of eight

    def draw_samples(self, ax: Any, samples: torch.Tensor, info: dict[str, Any], rows: int, cols: int, row_labels: list[str] | None = None, paths: bool = False) -> None:
        draw_image_grid(ax, samples, rows, cols, tuple(info["image_shape"])[-2:], row_labels)

    def draw_reconstructions(self, ax: Any, data: torch.Tensor, recon: torch.Tensor, info: dict[str, Any]) -> None:
        """Pairs of rows of eight: the data, then each image's reconstruction under it."""
        cols = min(8, len(data))
        pairs = math.ceil(len(data) / cols)
        rows = []
        for p in range(pairs):
            block = slice(p * cols, (p + 1) * cols)
            rows += [pad(data[block], cols), pad(recon[block], cols)]
        draw_image_grid(ax, torch.cat(rows), 2 * pairs, cols, tuple(info["image_shape"])[-2:], ["data", "reconstruction"] * pairs)

    def label_columns(self, ax: Any, labels: list[str], title: str, info: dict[str, Any]) -> None:
        """Each column's value under it (a traversal's, an interpolation's), `title` under all."""
        w = tuple(info["image_shape"])[-1]
        ax.set_xticks([1 + c * (w + 1) + (w - 1) / 2 for c in range(len(labels))])
        ax.set_xticklabels(labels, fontsize=6)
        ax.tick_params(axis="x", length=0, pad=2)
        ax.set_xlabel(title, fontsize=7)


def pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """x with rows of zeros up to n rows (a short last row of a grid)."""
    return torch.cat([x, x.new_zeros(n - len(x), *x.shape[1:])]) if len(x) < n else x


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


def mixture_axes(ax: Any, span: float) -> None:
    """The frame every mixture picture shares: the modes' span, equal scales, ticks, a legend."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(5))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("coordinate 1", fontsize=8)
    ax.set_ylabel("coordinate 2", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    shade = Patch(facecolor="0.45", edgecolor="none", alpha=0.8)  # the shade: an image has no legend entry of its own
    # Under the axes: inside, it would hide a mode (the ring's and the grid's corners are small).
    ax.legend([shade, *handles], ["true log-density", *labels], loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=min(4, len(handles) + 1), fontsize=6, frameon=False, markerscale=1.5)


class MixtureSamples(DatasetKind):
    """2-D samples drawn as points over the density of the mixture in `info` (`modes`,
    `sigma`), with axes; a picture during training shows enough points to see every mode
    filled."""

    picture_samples = 2500
    reconstruction_samples = 300

    def draw_samples(self, ax: Any, samples: torch.Tensor, info: dict[str, Any], rows: int, cols: int, row_labels: list[str] | None = None, paths: bool = False) -> None:
        span = mixture_span(info)
        density_background(ax, info, span)
        super().draw_samples(ax, samples, info, rows, cols, row_labels, paths)  # the points
        mixture_axes(ax, span)

    def draw_reconstructions(self, ax: Any, data: torch.Tensor, recon: torch.Tensor, info: dict[str, Any]) -> None:
        """Each data point (blue, on top) joined by a grey line to its reconstruction (orange)."""
        from matplotlib.collections import LineCollection

        span = mixture_span(info)
        density_background(ax, info, span)
        a, b = (t.detach().float().cpu().reshape(len(t), -1)[:, :2] for t in (data, recon))
        ax.add_collection(LineCollection(torch.stack([a, b], 1).numpy(), colors="0.4", linewidths=0.5, alpha=0.6, zorder=2, label="data -> reconstruction"))
        ax.scatter(b[:, 0].numpy(), b[:, 1].numpy(), s=5, color="tab:orange", zorder=3, label="reconstruction")
        ax.scatter(a[:, 0].numpy(), a[:, 1].numpy(), s=5, color="tab:blue", zorder=4, label="data")  # on top: the data is tighter
        mixture_axes(ax, span)
