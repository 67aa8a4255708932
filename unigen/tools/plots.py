"""`unigen sample` and `unigen plot`: pictures of a run.

- samples: drawn as the dataset kind draws them (`DatasetKind.draw_samples`: an image grid, a
  scatter...), one row per class for a model conditioned on a one-hot label; the same figure
  as the pictures a run draws during training (`unigen.runs.samples`);
- reconstructions: test rows of the data beside the decoder's mean at their inferred latents,
  for a model with an encoder;
- traversals: one latent root varied along a row (a dimension, or every value of a
  categorical code), everything else fixed; interpolations: a straight line between two
  draws of a latent root, everything else fixed; the columns are labelled with their values;
- curves: the losses and metrics of metrics.csv against the step, one run or several
  overlaid, with each loss's unit where it is known, the level of a discriminator that cannot
  tell real from fake, and a note (instead of a panel) for each series that never changes.
"""

from __future__ import annotations

import csv
import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unigen.api.registry import Registry, default_registry
from unigen.errors import UnigenError
from unigen.graph.model import ModelGraph
from unigen.runs.evaluate import OpenRun, open_run
from unigen.runs.rundir import atomic_write
from unigen.runs.samples import (
    COLS,
    _plt,
    encoded_latents,
    image_bytes,
    layout,
    picture_count,
    picture_format,
    reconstruct,
    reconstruction_count,
    reconstruction_figure,
    reconstruction_title,
    sample_figure,
)
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
        atomic_write(out, image_bytes(fig, picture_format(out)))
    except OSError as exc:
        raise UnigenError.one("E004", f"cannot write `{out}`: {exc.strerror or exc}.", (), "choose an output path in a writable directory.", exit_code=1) from None
    finally:
        _plt().close(fig)
    return out


@dataclass(frozen=True)
class Columns:
    """What a picture's columns stand for: a label under each, and what they vary."""

    labels: list[str]
    title: str


def picture(x: torch.Tensor, model: Model, rows: int, cols: int, title: str, out: Path, row_labels: list[str] | None = None, paths: bool = False, columns: Columns | None = None) -> Path:
    """rows x cols samples of `model`, drawn as its dataset kind draws them (one colour or one
    grid row per row; each row a path in order when `paths`; the columns labelled)."""
    labels, what = (columns.labels, columns.title) if columns else (None, "")
    return _save(sample_figure(model.data_kind, x, model.dataset.info, rows, cols, title, row_labels, paths, labels, what), out)


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


def value_label(v: float) -> str:
    """A column's value, short: `-2.5`, `-1.79`, `0`, `0.714`."""
    text = f"{v:.3g}"
    return "0" if text in ("-0", "0") else text


def sample_run(run: str | Path, n: int | None, out: str | Path, seed: int = 0, checkpoint: str = "last", traverse: str | None = None, interpolate: str | None = None, registry: Registry | None = None, device: str = "cpu", reconstruct: bool = False) -> Path:
    """The picture `unigen sample` draws (see the module's docstring); `n` None: as many as the
    run's pictures in training show (or its reconstruction pictures, with `reconstruct`)."""
    picture_format(out)  # a name with no picture format is refused before the model loads
    opened = open_run(run, checkpoint, registry, device)
    model, program = opened.model, opened.program
    graph = program.graph
    var = model.sampled_variable()
    if var is None:
        raise _bad(f"the model of `{opened.run}` generates no observed variable, so there is nothing to draw.", "sample a run whose spec has a generative edge into an observed variable.")
    if n is not None and n < 1:
        raise _bad(f"`-n {n}`: expected at least one sample.", "pass `-n 64`, say.")
    if sum(map(bool, (traverse, interpolate, reconstruct))) > 1:
        raise _bad("`--traverse`, `--interpolate` and `--reconstruct` draw different pictures.", "pass one of them.")
    tag = f"{program.name}  step {opened.step}"
    with torch.no_grad(), torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(seed)
        label = label_parent(graph, var)
        if reconstruct:
            return _reconstruction_picture(opened, n, seed, tag, Path(out))
        if traverse or interpolate:
            request = traverse or interpolate
            assert request is not None
            root, dim = _root_request(graph, request, "--traverse" if traverse else "--interpolate")
            return _latent_picture(model, var, root, dim, bool(traverse), n or 64, seed, tag, Path(out), label)
        n = n or picture_count(model)
        if label is not None:
            classes, field_ = graph.shape(label)[0], graph.data_field(label)
            per = max(1, math.ceil(n / classes))
            onehot = torch.eye(classes, device=model.device).repeat_interleave(per, 0)
            x = draw(model, var, classes * per, batch={field_: onehot})
            return picture(x, model, classes, per, f"{tag}  ({classes * per} samples, one row per value of `{label}`, seed {seed})", Path(out), [f"{label}={k}" for k in range(classes)])
        x = draw(model, var, n)
        rows, cols = layout(n)
        return picture(x, model, rows, cols, f"{tag}  ({n} samples, seed {seed})", Path(out))


def _reconstruction_picture(opened: OpenRun, n: int | None, seed: int, tag: str, out: Path) -> Path:
    model = opened.model
    var = model.sampled_variable() or ""
    if not encoded_latents(opened.program.graph, var):
        raise _bad(
            f"`--reconstruct`: the model of `{opened.run}` infers no latent from `{var}` that it generates `{var}` from (no encoder), so there is nothing to reconstruct.",
            "reconstruct a run whose spec has an inference edge from the data into the latents of its generative edges (a VAE, an AAE, ALI), or draw samples without `--reconstruct`.",
        )
    made = reconstruct(model, n or reconstruction_count(model))
    assert made is not None
    data, recon, latents = made
    title = reconstruction_title(tag, data, recon, latents, var, opened.program.graph, seed)
    return _save(reconstruction_figure(model.data_kind, data, recon, model.dataset.info, title), out)


def _grid(graph: ModelGraph, root: str, dim: int | None, traverse: bool, n: int) -> tuple[torch.Tensor, int, list[int], Columns]:
    """A latent picture's column values (a traversal's settings, an interpolation's t), its
    rows, the dimension each row varies, and the columns' labels."""
    prior = graph.variables[root].prior_name or ""
    size = math.prod(graph.shape(root))
    if not traverse:
        t = torch.linspace(0, 1, COLS)
        return t, max(1, min(16, n // COLS)), [], Columns([value_label(v) for v in t.tolist()], "t: 0 at one draw, 1 at the other")
    if prior == "categorical":
        return torch.eye(size), max(1, min(16, n // size)), [0] * max(1, min(16, n // size)), Columns([str(k) for k in range(size)], f"the value of `{root}`")
    values = traversal_values(prior, size, COLS)
    labels = [value_label(v) for v in values.tolist()]
    if dim is not None:
        rows = max(1, min(16, n // len(values)))
        return values, rows, [dim] * rows, Columns(labels, f"the value of `{root}[{dim}]`")
    rows = min(size, 16)
    return values, rows, list(range(rows)), Columns(labels, f"the value of the row's dimension of `{root}`")


def _latent_picture(model: Model, var: str, root: str, dim: int | None, traverse: bool, n: int, seed: int, tag: str, out: Path, label: str | None) -> Path:
    graph = model.program.graph
    shape = graph.shape(root)
    size = math.prod(shape)
    categorical = (graph.variables[root].prior_name or "") == "categorical"
    values, rows, dims, columns = _grid(graph, root, dim, traverse, n)
    cols = len(values)
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
            labels = [f"draw {r}" for r in range(rows)]
        else:
            labels = [f"{root}[{dims[r]}]" for r in range(rows)]
        what = f"`{root}` {'through each of its values' if categorical else f'from {float(values[0]):g} to {float(values[-1]):g}'} along each row"
    else:
        other = model.trace("p", None, rows)[root].reshape(rows, 1, size)
        t = values.to(z.device).reshape(1, cols, 1)
        z = z[:, :1] * (1 - t) + other * t
        labels = [f"row {r}" for r in range(rows)]
        what = f"`{root}` on a straight line between two draws along each row"
    fixed[root] = z.reshape(rows * cols, *shape)
    x = draw(model, var, rows * cols, fixed, batch)
    if traverse and categorical and not hasattr(model.data_kind, "label_columns"):
        # A kind that cannot name its columns (points) gets a row, one colour, per value.
        x = x.reshape(rows, cols, -1).transpose(0, 1).reshape(rows * cols, *x.shape[1:])
        what = f"one colour for each value of `{root}`, a point for each of {rows} draws of the rest"
        return picture(x, model, cols, rows, f"{tag}  {what} (seed {seed})", out, [f"{root}={k}" for k in range(cols)])
    return picture(x, model, rows, cols, f"{tag}  {what}; the rest fixed (seed {seed})", out, labels, paths=not traverse or not categorical, columns=columns)


# ------------------------------------------------------------------------------ curves


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


LR = "lr/"  # the trainer's learning-rate columns, one a phase
LOG_WORDS = re.compile(r"\blog\b|\bKL\s*\(|ELBO|\bCE\b|entropy")


def unit_of(*texts: str) -> str | None:
    """The unit of a loss from what it says of itself (its formula; an adversarial term's
    objective's description too): nats for a log-density, a KL or a cross-entropy (natural
    logarithms throughout); None (unknown) for a squared error, or anything else."""
    text = " ".join(texts)
    if "^2" in text:
        return None
    return "nats" if LOG_WORDS.search(text) else None


def chance_level(link: Any) -> float | None:
    """The D-loss of a discriminator that cannot tell real from fake: the lowest its link's
    objective gives when both sides get one and the same output (2 log 2 = log 4 for the
    standard sum of two binary cross-entropies). None for a critic (its loss is unbounded
    below), or a link whose discriminator also does something else (its objective's note)."""
    objective, options = link.kind, link.options
    if getattr(objective, "d_loss_min", 0.0) is None or link.note:
        return None

    def at(c: float) -> float:
        same = torch.full((4, 1), c)
        return float(objective.d_loss(same, same, options))

    try:
        with torch.no_grad():
            grid = [i / 10 for i in range(-60, 61)]
            best = min(grid, key=at)
            fine = [best + i / 1000 for i in range(-100, 101)]
            value = min(at(c) for c in fine)
    except Exception:  # an objective that cannot be evaluated on a dummy batch draws no line
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Facts:
    """What the run's program says of one loss column."""

    unit: str | None = None
    chance: float | None = None


def loss_facts(run: Path, registry: Registry | None = None) -> dict[str, Facts]:
    """Each loss column's unit and chance level, from the run's spec compiled here; nothing when
    it no longer compiles (a plugin gone, say): the curves are drawn without them."""
    from unigen.compiler.compiler import compile_file

    try:
        program = compile_file(run / "spec.resolved.yaml", [], registry or default_registry()).program
    except (UnigenError, OSError, ValueError):
        return {}
    out: dict[str, Facts] = {}
    for phase in program.phases:
        for t in phase.terms:
            link = program.edges.get(t.edge.name) if t.edge is not None and t.edge.kind == "adversarial" else None
            kind = program.kinds.entries.get(("terms", t.term))
            unit = getattr(kind, "unit", None) or (getattr(link.kind, "unit", None) if link else None)
            unit = unit or unit_of(t.bound.formula, getattr(link.kind, "doc", "") if link else "")
            judge = link is not None and link.info.net in phase.update  # the phase trains the link's discriminator
            out[f"{phase.name}/{t.label}"] = Facts(unit, chance_level(link) if judge else None)
    return out


@dataclass
class RunCurves:
    """One run's metrics.csv and what its program says of the loss columns."""

    label: str
    columns: list[str]
    rows: list[dict[str, str]]
    facts: dict[str, Facts] = field(default_factory=dict)

    def series(self, column: str) -> tuple[list[float], list[float]]:
        return _series(self.rows, column) if column in self.columns else ([], [])


def load_curves(run: str | Path, label: str | None = None, registry: Registry | None = None) -> RunCurves:
    run = Path(run)
    if not run.is_dir():
        raise UnigenError.one("E005", f"`{run}` is not a directory.", (), "pass a run directory.")
    columns, rows = read_metrics(run)
    if not rows:
        raise UnigenError.one("E005", f"`{run / 'metrics.csv'}` holds no rows yet.", (), "plot the run once it has logged a step (`train.log_every`).")
    return RunCurves(label or run.name, columns, rows, loss_facts(run, registry))


def constant(runs: list[RunCurves], column: str) -> bool:
    """Whether a column never changes in any run that logged it twice or more."""
    logged = [ys for r in runs for ys in [r.series(column)[1]] if ys]
    return bool(logged) and all(len(ys) > 1 and max(ys) == min(ys) for ys in logged)


def constant_note(runs: list[RunCurves], columns: list[str]) -> str:
    """`name = value` of each constant column (a value per run where they differ)."""
    parts = []
    for c in columns:
        values = [(r.label, r.series(c)[1][0]) for r in runs if r.series(c)[1]]
        shown = {f"{v:.4g}" for _, v in values}
        text = next(iter(shown)) if len(shown) == 1 else ", ".join(f"{v:.4g} ({label})" for label, v in values)
        parts.append(f"{c} = {text}")
    return "constant, so no panel: " + "; ".join(parts) if parts else ""


@dataclass
class Panels:
    """What a figure of curves shows: panel title -> its columns; the constant columns."""

    groups: dict[str, list[str]]
    constants: list[str]


def panels(runs: list[RunCurves]) -> tuple[Panels, Panels]:
    """The losses' figure (a panel per phase, then the learning rates) and the metrics' (a
    panel per metric); a column that never changes gets no panel, only a line in the note."""
    columns = list(dict.fromkeys(c for r in runs for c in r.columns))
    losses, metrics = Panels({}, []), Panels({}, [])
    for c in columns:
        if c in ("step", "time_s") or not any(r.series(c)[0] for r in runs):
            continue
        into = losses if "/" in c else metrics
        if constant(runs, c):
            into.constants.append(c)
            continue
        title = "learning rates" if c.startswith(LR) else f"phase {c.split('/', 1)[0]}" if "/" in c else c
        into.groups.setdefault(title, []).append(c)
    if losses.groups.get("learning rates"):  # after the phases
        losses.groups["learning rates"] = losses.groups.pop("learning rates")
    return losses, metrics


STYLES = ("-", ":", "-.", (0, (5, 1, 1, 1)))  # a line style per term when runs are told by colour


def _draw_panel(ax: Any, runs: list[RunCurves], title: str, columns: list[str], loss: bool) -> None:
    """One panel: every run's curve of each column; its unit on the y axis; chance levels."""
    units = {c: next((r.facts[c].unit for r in runs if c in r.facts), None) for c in columns}
    shared = set(units.values())
    for i, r in enumerate(runs):
        for j, c in enumerate(columns):
            xs, ys = r.series(c)
            if not xs:
                continue
            name = c.split("/", 1)[-1] if "/" in c else c
            if loss and len(shared) > 1:
                name += f" [{units[c] or 'no unit'}]"
            label = name if len(runs) == 1 else f"{r.label}: {name}" if len(columns) > 1 else r.label
            color, style = (f"C{j % 10}", "-") if len(runs) == 1 else (f"C{i % 10}", STYLES[j % len(STYLES)])
            few = len(xs) <= 20  # a few evaluations: each one marked
            ax.plot(xs, ys, ls=style if len(xs) > 1 else "none", marker="o" if few else None, ms=3, color=color, lw=1, label=label)
    for level in sorted({r.facts[c].chance for r in runs for c in columns if c in r.facts and r.facts[c].chance is not None}):
        ax.axhline(level, ls="--", color="0.35", lw=0.9, label=f"chance {level:.4g}: D cannot tell real from fake")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    if title == "learning rates":
        ax.set_ylabel("learning rate", fontsize=8)
    elif loss:
        ax.set_ylabel(f"loss ({shared.pop()})" if len(shared) == 1 and None not in shared else "loss", fontsize=8)
    ax.tick_params(labelsize=7)
    if loss or len(runs) > 1:
        ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def curve_figure(runs: list[RunCurves], shown: Panels, what: str, note: str) -> Any:
    """The figure of `shown`'s panels (three a row), the note of constant series under them."""
    n = max(1, len(shown.groups))
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    plt = _plt()
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows + (0.3 if note else 0)), squeeze=False)
    for ax, (title, columns) in zip(axes.flat, shown.groups.items()):
        _draw_panel(ax, runs, title, columns, what == "losses")
    for ax in list(axes.flat)[len(shown.groups) :]:
        ax.axis("off")
    if not shown.groups:
        axes.flat[0].text(0.5, 0.5, "no series changes", ha="center", va="center", fontsize=9)
    names = runs[0].label if len(runs) == 1 else " vs ".join(r.label for r in runs)
    fig.suptitle(f"{names}: {what}", fontsize=10)
    lines = textwrap.wrap(note, int(4.2 * cols * 16))
    if lines:
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, va="bottom", color="0.25")
    fig.tight_layout(rect=(0, (0.14 * len(lines) + 0.1) / fig.get_size_inches()[1] if lines else 0, 1, 1))
    return fig


@dataclass
class Plotted:
    """What `plot_runs` wrote: the files, each figure's panels, and the constant series."""

    paths: list[Path]
    panels: dict[str, list[str]]
    constants: list[str]
    note: str


def plot_runs(runs: Sequence[str | Path], out: str | Path | None = None, registry: Registry | None = None) -> Plotted:
    """losses.png (a panel per phase, a line per term, then the learning rates) and, where
    metrics were evaluated, metrics.png (a panel per metric), from each run's metrics.csv,
    several runs overlaid; written to `out` (default RUN/plots for one run; needed for more)."""
    if not runs:
        raise UnigenError.one("S005", "`unigen plot` needs a run directory.", (), "pass one or more run directories.")
    if len(runs) > 1 and out is None:
        raise UnigenError.one("S005", f"`unigen plot` of {len(runs)} runs needs `-o DIR`: their plots belong to no one run.", (), "add `-o DIR`, e.g. `-o plots/compare`.")
    labels = [Path(r).name for r in runs]
    if len(set(labels)) < len(labels):  # runs of one name in different folders: their paths
        labels = [str(r) for r in runs]
    curves = [load_curves(r, label, registry) for r, label in zip(runs, labels)]
    out_dir = Path(out) if out else Path(runs[0]) / "plots"
    losses, metrics = panels(curves)
    note = constant_note(curves, losses.constants + metrics.constants)
    written = [_save(curve_figure(curves, losses, "losses", note), out_dir / "losses.png")]
    if metrics.groups:
        written.append(_save(curve_figure(curves, metrics, "metrics", constant_note(curves, metrics.constants)), out_dir / "metrics.png"))
    return Plotted(written, {"losses": list(losses.groups), "metrics": list(metrics.groups)}, losses.constants + metrics.constants, note)


def plot_run(run: str | Path, out: str | Path | None = None, registry: Registry | None = None) -> list[Path]:
    """The plots of one run (`plot_runs`); the files written."""
    return plot_runs([run], out, registry).paths
