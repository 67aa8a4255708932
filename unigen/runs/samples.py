"""Pictures of generated samples, drawn as the model's dataset kind draws them
(`DatasetKind.draw_samples`): during training (`samples/step_*.png`) and by `unigen sample`."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unigen.api.kinds import DatasetKind
from unigen.runs.rundir import write_error, write_run_file

if TYPE_CHECKING:
    from unigen.training.model import Model

COLS = 8  # samples a row, unless a picture says otherwise


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    import io

    b = io.BytesIO()
    fig.savefig(b, format="png", dpi=100)
    return b.getvalue()


def layout(n: int) -> tuple[int, int]:
    """Rows and columns of a picture of n samples: rows of `COLS`."""
    cols = max(1, min(COLS, n))
    return max(1, math.ceil(n / cols)), cols


def sample_figure(kind: DatasetKind, samples: torch.Tensor, info: dict[str, Any], rows: int, cols: int, title: str, row_labels: list[str] | None = None, paths: bool = False) -> Any:
    """A matplotlib figure of `rows * cols` samples as `kind` draws them, under `title`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    kind.draw_samples(ax, samples.detach().float().cpu(), info, rows, cols, row_labels, paths)
    width = fig.get_size_inches()[0]
    ax.set_title("\n".join(textwrap.wrap(title, max(30, int(width * 13)))), fontsize=8)
    fig.tight_layout()
    return fig


def picture_count(model: Model) -> int:
    """How many samples a picture drawn during training shows, as the dataset kind says."""
    return int(getattr(model.data_kind, "picture_samples", 64))


def save_samples(path: Path, samples: torch.Tensor, model: Model, title: str = "") -> None:
    """A PNG of generated samples of `model` (the built `unigen.training.model.Model`), as its
    dataset kind draws them. A picture that cannot be written (a full disk, a read-only file
    system, a fifo or a directory where the file goes) is R002, naming the file."""
    rows, cols = layout(len(samples))
    fig = sample_figure(model.data_kind, samples, model.dataset.info, rows, cols, title)
    try:
        buf = _png(fig)
    finally:
        _plt().close(fig)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path.parent, exc, " (the folder of sample pictures)") from exc
    write_run_file(path, buf)
