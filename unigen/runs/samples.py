"""samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unigen.runs.rundir import atomic_write


def save_samples(path: Path, samples: torch.Tensor, info: dict[str, Any], title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = samples.detach().float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    image_shape = info.get("image_shape")
    if image_shape is not None:
        h, w = image_shape[-2], image_shape[-1]
        imgs = samples.reshape(len(samples), -1, h, w)[:64, 0].clamp(0, 1)
        n = len(imgs)
        cols = 8
        rows = max(1, (n + cols - 1) // cols)
        grid = torch.full((rows * (h + 1) + 1, cols * (w + 1) + 1), 0.5)  # grey borders: white is ink
        for i in range(n):
            r, c = divmod(i, cols)
            grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = imgs[i]
        fig, ax = plt.subplots(figsize=(4, 4 * rows / cols + 0.3))
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        pts = samples.reshape(len(samples), -1)[:, :2].numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, color="tab:blue", label="samples")
        modes = info.get("modes")
        if modes is not None:
            m = torch.as_tensor(modes).cpu().numpy()
            ax.scatter(m[:, 0], m[:, 1], s=40, marker="x", color="tab:red", label="true modes")
            span = float(abs(m).max()) * 1.4 + 0.2
            ax.set_xlim(-span, span)
            ax.set_ylim(-span, span)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    buf = _png(fig)
    plt.close(fig)
    atomic_write(path, buf)


def _png(fig: Any) -> bytes:
    import io

    b = io.BytesIO()
    fig.savefig(b, format="png", dpi=100)
    return b.getvalue()
