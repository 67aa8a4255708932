"""Pictures of generated samples, drawn as the model's dataset kind draws them
(`DatasetKind.draw_samples`): during training (`samples/step_*.png`) and by `unigen sample`;
one figure style for both.

A model with an encoder (an inference edge from the data into latents the p-trace generates
the data from) also gets reconstructions: test rows of the data beside what the decoder makes of
their inferred latents (`samples/recon_step_*.png`, `unigen sample --reconstruct`). A dataset
kind draws them with `draw_reconstructions(ax, data, recon, info)` when it has one (and says
how many with `reconstruction_samples`), and puts values under the columns of a traversal with
`label_columns(ax, labels, title, info)`; without them the core draws a row of data over a
row of reconstructions, and lists the column values under the picture.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import torch

from unigen.api.kinds import DatasetKind
from unigen.runs.rundir import write_error, write_run_file
from unigen.training.seeds import SAMPLES_SEED_OFFSET, fork_rng

if TYPE_CHECKING:
    from unigen.graph.model import ModelGraph
    from unigen.training.model import Model

COLS = 8  # samples a row, unless a picture says otherwise
RECON_SEED_OFFSET = SAMPLES_SEED_OFFSET + 1  # the noise of the reconstructions drawn in training


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    return image_bytes(fig, "png")


# A picture's file format by its name's suffix (matplotlib writes each; JPEG through Pillow).
PICTURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}


def picture_format(path: str | Path, option: str = "-o") -> str:
    """The format a picture named `path` is written in, or U002 naming the suffixes there are
    (checked before anything is drawn)."""
    suffix = Path(path).suffix.lower()
    if suffix not in PICTURE_FORMATS:
        from unigen.errors import UnigenError

        why = f"`{suffix}` is no picture format unigen writes" if suffix else "a name without a suffix names no picture format"
        raise UnigenError.one("U002", f"`{option} {path}`: {why}; expected one of {', '.join(PICTURE_FORMATS)}.", (),
                              f"name the file e.g. `{Path(path).stem or 'samples'}.png` or `.jpg`.", exit_code=2)
    return PICTURE_FORMATS[suffix]


def image_bytes(fig: Any, fmt: str) -> bytes:
    """The figure as a file of format `fmt` (`png`, `jpeg`, `svg`, `pdf`)."""
    import io

    b = io.BytesIO()
    extra = {"pil_kwargs": {"quality": 92}} if fmt == "jpeg" else {}
    fig.savefig(b, format=fmt, dpi=100, **extra)
    return b.getvalue()


def layout(n: int) -> tuple[int, int]:
    """Rows and columns of a picture of n samples: rows of `COLS`."""
    cols = max(1, min(COLS, n))
    return max(1, math.ceil(n / cols)), cols


def tidy_title(title: str) -> str:
    """A picture's title as every picture writes it: `step_00000600` reads `step 600`."""
    return re.sub(r"\bstep_0*(\d+)", r"step \1", title)


def _set_title(fig: Any, ax: Any, title: str) -> None:
    width = fig.get_size_inches()[0]
    ax.set_title("\n".join(textwrap.wrap(title, max(30, int(width * 13)))), fontsize=8)


def label_columns(kind: DatasetKind, ax: Any, labels: list[str], title: str, info: dict[str, Any], paths: bool = False) -> None:
    """The value of each column (a traversal's, an interpolation's): as the kind puts them, or
    listed in a line under the picture (along each path, in order, when the rows are paths)."""
    hook = getattr(kind, "label_columns", None)
    if hook is not None:
        hook(ax, labels, title, info)
        return
    where = "along each path" if paths else "columns"
    ax.figure.text(0.5, 0.005, "\n".join(textwrap.wrap(f"{where}, {title}: {', '.join(labels)}", 90)), ha="center", va="bottom", fontsize=6)


def sample_figure(kind: DatasetKind, samples: torch.Tensor, info: dict[str, Any], rows: int, cols: int, title: str, row_labels: list[str] | None = None, paths: bool = False, col_labels: list[str] | None = None, col_title: str = "") -> Any:
    """A matplotlib figure of `rows * cols` samples as `kind` draws them, under `title`; the
    columns named by `col_labels` (what they vary: `col_title`) when given."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    kind.draw_samples(ax, samples.detach().float().cpu(), info, rows, cols, row_labels, paths)
    if col_labels:
        label_columns(kind, ax, col_labels, col_title, info, paths)
    _set_title(fig, ax, tidy_title(title))
    fig.tight_layout(rect=(0, 0.04, 1, 1) if col_labels and not hasattr(kind, "label_columns") else None)
    return fig


def picture_count(model: Model) -> int:
    """How many samples a picture drawn during training shows, as the dataset kind says."""
    return int(getattr(model.data_kind, "picture_samples", 64))


def reconstruction_count(model: Model) -> int:
    """How many data rows a reconstruction picture shows, as the dataset kind says."""
    return int(getattr(model.data_kind, "reconstruction_samples", COLS))


def _write_png(path: Path, fig: Any) -> None:
    try:
        buf = _png(fig)
    finally:
        _plt().close(fig)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path.parent, exc, " (the folder of sample pictures)") from exc
    write_run_file(path, buf)


def save_samples(path: Path, samples: torch.Tensor, model: Model, title: str = "") -> None:
    """A PNG of generated samples of `model` (the built `unigen.training.model.Model`), as its
    dataset kind draws them, and beside it (`recon_<name>`) the reconstructions of a model with
    an encoder. A picture that cannot be written (a full disk, a read-only file system, a fifo
    or a directory where the file goes) is R002, naming the file."""
    rows, cols = layout(len(samples))
    head = f"{title}  ({len(samples)} samples)" if title else f"{len(samples)} samples"
    _write_png(path, sample_figure(model.data_kind, samples, model.dataset.info, rows, cols, head))
    if encoded_latents(model.program.graph, model.sampled_variable()):
        save_reconstructions(path.with_name("recon_" + path.name), model, title)


# --------------------------------------------------------------------- reconstructions


def encoded_latents(graph: ModelGraph, var: str | None) -> list[str]:
    """The latents the q-trace infers from the data of `var` that the p-trace generates `var`
    from, in the q-trace's order; none when the model has no encoder for it."""
    if var is None or graph.p_source(var) != "edge":
        return []
    inferred = nx.descendants(graph.inference_dag(), var)
    needed = nx.ancestors(graph.generative_dag(), var)
    return [v for v in nx.topological_sort(graph.inference_dag()) if v in inferred and v in needed and graph.q_source(v) == "edge"]


def _point(dist: torch.distributions.Distribution) -> torch.Tensor:
    """A distribution's most likely value where it has one (the code an encoder means), else
    its mean, else a draw."""
    for what in ("mode", "mean"):
        try:
            value = getattr(dist, what)
        except (NotImplementedError, AttributeError):
            continue
        if isinstance(value, torch.Tensor) and bool(torch.isfinite(value).all()):
            return value
    return dist.sample()


def reconstruct(model: Model, n: int) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """The first n test rows of the sampled variable, their reconstructions (the decoder's mean
    at the encoder's most likely latents; latents nothing infers are drawn from their priors),
    and the latents inferred; None for a model without an encoder for its data."""
    var = model.sampled_variable()
    latents = encoded_latents(model.program.graph, var)
    if var is None or not latents:
        return None
    split = model.dataset.test if len(model.dataset.test.get(model.fields[var], ())) else model.dataset.train
    n = max(1, min(n, len(split[model.fields[var]])))
    rows = {k: v[:n] for k, v in split.items()}
    batch = model.observed_batch(rows)
    with torch.no_grad():
        q = model.trace("q", batch, n)
        for v in latents:
            edge = model.sources["q"][v][1]
            assert edge is not None
            q.values[v] = _point(q.cond(edge))
        recon = model.generate(n, var, rows, {v: q[v] for v in latents})
    return batch[var], recon, latents


def reconstruction_figure(kind: DatasetKind, data: torch.Tensor, recon: torch.Tensor, info: dict[str, Any], title: str) -> Any:
    """Data beside reconstructions, as the kind draws them (`draw_reconstructions`), else a row
    of data over a row of reconstructions."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    data, recon = data.detach().float().cpu(), recon.detach().float().cpu()
    hook = getattr(kind, "draw_reconstructions", None)
    if hook is not None:
        hook(ax, data, recon, info)
    else:
        k = min(COLS, len(data))
        kind.draw_samples(ax, torch.cat([data[:k], recon[:k]]), info, 2, k, ["data", "reconstruction"])
    _set_title(fig, ax, tidy_title(title))
    fig.tight_layout()
    return fig


def reconstruction_title(title: str, data: torch.Tensor, recon: torch.Tensor, latents: list[str], var: str, graph: ModelGraph, seed: int | None = None) -> str:
    """What a reconstruction picture says of itself: rows, what was inferred, what was drawn
    from a prior instead (and the seed of that draw), the mean absolute error per element."""
    error = float((data.float() - recon.float()).abs().mean())
    drawn = [r for r in nx.ancestors(graph.generative_dag(), var) if graph.p_source(r) == "prior" and r not in latents]
    prior = f"; {', '.join(f'`{r}`' for r in drawn)} drawn from the prior" + (f" (seed {seed})" if seed is not None else "") if drawn else ""
    inferred = ", ".join(f"`{v}`" for v in latents)
    return f"{title}  {len(data)} test rows of `{var}` and their reconstructions from the inferred {inferred}{prior}; mean |error| {error:.3g}".strip()


def save_reconstructions(path: Path, model: Model, title: str = "") -> None:
    """The reconstruction picture of training: the averaged networks where the spec keeps
    averages, in evaluation mode and in a random stream of its own (training goes on as if
    nothing was drawn)."""
    was = model.training
    model.eval()
    try:
        with fork_rng(model.device, int(model.program.train.seed) + RECON_SEED_OFFSET), model.averages.swapped():
            made = reconstruct(model, reconstruction_count(model))
    finally:
        model.train(was)
    if made is None:
        return
    data, recon, latents = made
    var = model.sampled_variable() or ""
    head = reconstruction_title(title, data, recon, latents, var, model.program.graph)
    _write_png(path, reconstruction_figure(model.data_kind, data, recon, model.dataset.info, head))
