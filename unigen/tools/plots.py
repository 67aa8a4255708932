"""`unigen sample` and `unigen plot`: pictures of a run.

- samples: drawn as the dataset kind draws them (`DatasetKind.draw_samples`: an image grid, a
  scatter...), one row per class for a model conditioned on a one-hot label;
- traversals: one latent root varied along a row (a dimension, or every value of a
  categorical code), everything else fixed; interpolations: a straight line between two
  draws of a latent root, everything else fixed;
- curves: the losses and metrics of metrics.csv against the step.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch

from unigen.api.registry import Registry
from unigen.errors import UnigenError
from unigen.graph.model import ModelGraph
from unigen.runs.evaluate import open_run
from unigen.runs.rundir import atomic_write
from unigen.runs.samples import COLS, _plt, _png, layout, sample_figure
from unigen.training.model import Model


def draw(model: Model, var: str, n: int, fixed: dict[str, torch.Tensor] | None = None, batch: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """n values of `var` from the p-trace, with some variables set (`fixed`)."""
    return model.generate(n, var, batch, fixed)


def label_parent(graph: ModelGraph, var: str) -> str | None:
    """A one-hot label the p-trace reads from the data to generate `var` (a conditional model)."""
    e = graph.into(var, "generative")
    for p in e.parents if e else ():
        shape = graph.shape(p)
        if graph.p_source(p) == "data" and len(shape) == 1 and shape[0] > 1:
            return p
    return None


def roots(graph: ModelGraph) -> list[str]:
    return [v for v in graph.variables if graph.p_source(v) == "prior"]


def _save(fig: Any, out: Path) -> Path:
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, _png(fig))
    except OSError as exc:
        raise UnigenError.one("E004", f"cannot write `{out}`: {exc.strerror or exc}.", (), "choose an output path in a writable directory.", exit_code=1) from None
    finally:
        _plt().close(fig)
    return out


def picture(x: torch.Tensor, model: Model, rows: int, cols: int, title: str, out: Path, row_labels: list[str] | None = None, paths: bool = False) -> Path:
    """rows x cols samples of `model`, drawn as its dataset kind draws them (one colour or one
    grid row per row; each row a path in order when `paths`)."""
    return _save(sample_figure(model.data_kind, x, model.dataset.info, rows, cols, title, row_labels, paths), out)


def _bad(message: str, hint: str) -> UnigenError:
    return UnigenError.one("E004", message, (), hint)


def _root_request(graph: ModelGraph, text: str, flag: str) -> tuple[str, int | None]:
    name, _, dim = text.partition(":")
    choices = roots(graph)
    if name not in graph.variables or name not in choices:
        what = "is not a variable of the model" if name not in graph.variables else "is not a latent root with a prior"
        raise _bad(f"`{flag} {text}`: `{name}` {what}.", f"name one of the roots the p-trace samples: {', '.join(f'`{c}`' for c in choices) or '(none)'}.")
    if not dim:
        return name, None
    size = math.prod(graph.shape(name))
    if not dim.isdigit() or int(dim) >= size:
        raise _bad(f"`{flag} {text}`: `{dim}` is not a dimension of `{name}`, which has {size}.", f"write `{name}:I` with 0 <= I < {size}, or `{name}` alone.")
    return name, int(dim)


def traversal_values(prior: str, size: int, cols: int) -> torch.Tensor:
    if prior == "uniform":
        return torch.linspace(-1, 1, cols)
    if prior == "bernoulli":
        return torch.tensor([0.0, 1.0])
    return torch.linspace(-2.5, 2.5, cols)


def sample_run(run: str | Path, n: int, out: str | Path, seed: int = 0, checkpoint: str = "last", traverse: str | None = None, interpolate: str | None = None, registry: Registry | None = None, device: str = "cpu") -> Path:
    opened = open_run(run, checkpoint, registry, device)
    model, program = opened.model, opened.program
    graph = program.graph
    var = model.sampled_variable()
    if var is None:
        raise _bad(f"the model of `{opened.run}` generates no observed variable, so there is nothing to draw.", "sample a run whose spec has a generative edge into an observed variable.")
    if n < 1:
        raise _bad(f"`-n {n}`: expected at least one sample.", "pass `-n 64`, say.")
    if traverse and interpolate:
        raise _bad("`--traverse` and `--interpolate` draw different pictures.", "pass one of them.")
    name = program.name
    tag = f"{name}  step {opened.step}"
    with torch.no_grad(), torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(seed)
        label = label_parent(graph, var)
        batch = None
        if label is not None:
            classes = graph.shape(label)[0]
            field = graph.data_field(label)
        if traverse or interpolate:
            request = traverse or interpolate
            assert request is not None
            root, dim = _root_request(graph, request, "--traverse" if traverse else "--interpolate")
            return _latent_picture(model, var, root, dim, bool(traverse), n, seed, tag, Path(out), label)
        if label is not None:
            per = max(1, math.ceil(n / classes))
            onehot = torch.eye(classes, device=model.device).repeat_interleave(per, 0)
            batch = {field: onehot}
            x = draw(model, var, classes * per, batch=batch)
            return picture(x, model, classes, per, f"{tag}  (one row per value of `{label}`)", Path(out), [f"{label}={k}" for k in range(classes)])
        x = draw(model, var, n)
        rows, cols = layout(n)
        return picture(x, model, rows, cols, f"{tag}  ({n} samples, seed {seed})", Path(out))


def _latent_picture(model: Model, var: str, root: str, dim: int | None, traverse: bool, n: int, seed: int, tag: str, out: Path, label: str | None) -> Path:
    graph = model.program.graph
    prior = graph.variables[root].prior_name or ""
    shape = graph.shape(root)
    size = math.prod(shape)
    categorical = prior == "categorical"
    if traverse:
        values = torch.eye(size) if categorical else traversal_values(prior, size, COLS)
        cols = len(values)
        if categorical or dim is not None:
            rows = max(1, min(16, n // cols))
            dims = [dim if dim is not None else 0] * rows
        else:
            rows = min(size, 16)
            dims = list(range(rows))
    else:
        cols = COLS
        rows = max(1, min(16, n // cols))
    # What stays fixed: one draw of every root per row; a traversal of every dimension in turn
    # shares one draw across its rows, so that rows differ only in the dimension they vary.
    shared = traverse and not categorical and dim is None
    base = model.trace("p", None, 1 if shared else rows)
    fixed = {r: base[r].repeat_interleave(cols * rows if shared else cols, 0) for r in roots(graph)}
    batch = None
    if label is not None:  # a conditional model: every row drawn for one class in turn
        classes = graph.shape(label)[0]
        onehot = torch.eye(classes, device=model.device)[torch.arange(rows, device=model.device) % classes]
        batch = {graph.data_field(label): onehot.repeat_interleave(cols, 0)}
    z = fixed[root].reshape(rows, cols, size).clone()
    if traverse:
        for r in range(rows):
            if categorical:
                z[r] = values.to(z)
            else:
                z[r, :, dims[r]] = values.to(z)
        if categorical or dim is not None:
            labels = [f"draw {r}: {root} {'values' if categorical else f'[{dims[r]}]'}" for r in range(rows)]
        else:
            labels = [f"{root}[{dims[r]}]" for r in range(rows)]
        what = f"`{root}` {'through each of its values' if categorical else f'from {float(values[0]):g} to {float(values[-1]):g}'} along each row"
    else:
        other = model.trace("p", None, rows)[root].reshape(rows, 1, size)
        t = torch.linspace(0, 1, cols, device=z.device).reshape(1, cols, 1)
        z = z[:, :1] * (1 - t) + other * t
        labels = [f"row {r}" for r in range(rows)]
        what = f"`{root}` on a straight line between two draws along each row"
    fixed[root] = z.reshape(rows * cols, *shape)
    x = draw(model, var, rows * cols, fixed, batch)
    return picture(x, model, rows, cols, f"{tag}  {what}; the rest fixed (seed {seed})", out, labels, paths=not traverse or not categorical)


def read_metrics(run: Path) -> tuple[list[str], list[dict[str, str]]]:
    path = run / "metrics.csv"
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if r.get("step") not in (None, "")]
            return list(reader.fieldnames or []), rows
    except OSError:
        raise UnigenError.one("E005", f"`{run}` has no readable metrics.csv.", (), "plot a run directory written by `unigen compile-and-train`.") from None
    except csv.Error as exc:
        raise UnigenError.one("E005", f"`{path}` is not a readable CSV file: {exc}.", (), "check the file; a run writes it with a header row.") from None


def _series(rows: list[dict[str, str]], column: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        try:
            x, y = float(r["step"]), float(r.get(column) or "nan")
        except (TypeError, ValueError):
            continue
        if math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return xs, ys


def plot_run(run: str | Path, out: str | Path | None = None) -> list[Path]:
    """losses.png (one panel per phase, a line per term) and, where metrics were evaluated,
    metrics.png (one panel per metric), from metrics.csv; written to `out` (default RUN/plots)."""
    run = Path(run)
    if not run.is_dir():
        raise UnigenError.one("E005", f"`{run}` is not a directory.", (), "pass a run directory.")
    columns, rows = read_metrics(run)
    if not rows:
        raise UnigenError.one("E005", f"`{run / 'metrics.csv'}` holds no rows yet.", (), "plot the run once it has logged a step (`train.log_every`).")
    out_dir = Path(out) if out else run / "plots"
    plt = _plt()
    written = []
    losses = [c for c in columns if "/" in c]
    metrics = [c for c in columns if c not in ("step", "time_s") and "/" not in c and _series(rows, c)[0]]
    phases: dict[str, list[str]] = {}
    for c in losses:
        phases.setdefault(c.split("/", 1)[0], []).append(c)
    for what, groups in (("losses", {p: cs for p, cs in phases.items()}), ("metrics", {c: [c] for c in metrics})):
        if not groups:
            continue
        n = len(groups)
        cols = min(3, n)
        nrows = math.ceil(n / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
        for ax, (title, cs) in zip(axes.flat, groups.items()):
            for c in cs:
                xs, ys = _series(rows, c)
                ax.plot(xs, ys, "-" if len(xs) > 1 else "o", lw=1, label=c.split("/", 1)[-1])
            ax.set_title(title if what == "metrics" else f"phase {title}", fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            if what == "losses":
                ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(f"{run.name}: {what}", fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"{what}.png"))
    return written
