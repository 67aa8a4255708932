"""`unigen compare`: runs and sweeps side by side. A sweep directory brings its points (from
sweep.json); run directories given by themselves are grouped into points, the runs whose
resolved specs differ only in `train.seed`, each labelled by the keys in which the points
differ. The table gives each point's final metrics as median (min–max) over its seeds
(unigen/runs/sweep.py's table); the plot overlays the metric curves of every run's
metrics.csv, one line per run, a colour per point."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from unigen.errors import UnigenError, did_you_mean
from unigen.runs.samples import _plt
from unigen.runs.sweep import SEED_KEY, Group, Result, final_metrics, markdown_table, metric_names, short_keys
from unigen.tools.plots import _save, _series, read_metrics


def read_groups(paths: list[str]) -> list[Group]:
    """The points of `paths` (sweep directories and run directories), in the order given;
    anything else is E001. Labels that two points share are prefixed with their sweep."""
    groups: list[tuple[Group, str]] = []  # each with the sweep it comes from ("" for runs given alone)
    loose: list[Result] = []
    resolved: dict[Path, dict[str, Any]] = {}
    for p in map(Path, paths):
        if (p / "sweep.json").is_file():
            groups += [(g, p.name) for g in sweep_groups(p)]
        elif (p / "summary.json").is_file() or (p / "spec.resolved.yaml").is_file():
            resolved[p] = _resolved(p)
            metrics = final_metrics(p)
            loose.append(Result(p, resolved[p].get("train", {}).get("seed"), "done" if metrics is not None else "unfinished", "" if metrics is not None else "no summary.json", metrics or {}))
        else:
            what = "does not exist" if not p.exists() else "is neither a run directory (summary.json, spec.resolved.yaml) nor a sweep directory (sweep.json)"
            raise UnigenError.one("E001", f"`{p}` {what}.", (), "pass run directories written by `unigen compile-and-train` or sweep directories written by `unigen sweep`.")
    groups += [(g, "") for g in group_runs(loose, resolved)]
    labels = [g.label for g, _ in groups]
    for g, source in groups:
        if source and labels.count(g.label) > 1:
            g.label = f"{source}: {g.label}"
    return [g for g, _ in groups]


def sweep_groups(path: Path) -> list[Group]:
    try:
        data = json.loads((path / "sweep.json").read_text(encoding="utf-8"))
        out = []
        for point in data["points"]:
            results = [Result(path / r["dir"], r.get("seed"), r["status"], r.get("error") or "", (final_metrics(path / r["dir"]) or {}) if r["status"] == "done" else {}) for r in point["runs"]]
            out.append(Group(point.get("label") or Path(str(data.get("spec", path.name))).stem, results))
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnigenError.one("E001", f"`{path / 'sweep.json'}` cannot be read as a sweep ({type(exc).__name__}: {exc}).", (), "pass a directory written by `unigen sweep`, or its run directories.") from None


def _resolved(run: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load((run / "spec.resolved.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec as `dotted.key: value` (lists of mappings by index)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}{i}.").items()}
    return {prefix[:-1]: value}


def group_runs(results: list[Result], resolved: dict[Path, dict[str, Any]]) -> list[Group]:
    """Runs whose resolved specs differ only in `train.seed` are one point, labelled by the
    keys in which the points differ (at most four named), or by the spec's name."""
    keyed: dict[str, list[Result]] = {}
    specs: dict[str, dict[str, Any]] = {}
    for r in results:
        spec = {k: v for k, v in flat(resolved[r.path] or {"run": str(r.path)}).items() if k != SEED_KEY}
        key = json.dumps(spec, sort_keys=True, default=str)
        keyed.setdefault(key, []).append(r)
        specs[key] = spec
    every = sorted({k for spec in specs.values() for k in spec}, key=lambda k: (k != "name", k))
    differ = [k for k in every if len({json.dumps(s.get(k, "(unset)"), default=str) for s in specs.values()}) > 1]
    short = short_keys(differ)
    groups = []
    for key, runs in keyed.items():
        tags = [f"{short[k]}={_text(specs[key].get(k, '(unset)'))}" for k in differ]
        label = " ".join(tags[:4]) + (f" (+{len(tags) - 4} more)" if len(tags) > 4 else "")
        groups.append(Group(label or str(specs[key].get("name", runs[0].path.name)), runs))
    return groups


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)


def compare_table(groups: list[Group], wanted: list[str] | None = None) -> tuple[str, list[str]]:
    """The markdown table (a caption below it) and the metrics it has; `wanted` are E003 when
    neither a final metric nor a column of some run's metrics.csv."""
    names = metric_names(groups)
    if not wanted:
        return markdown_table(groups, names) + "\nmedian (min–max) over the seeds of each point; runs: finished of run.\n", names
    columns = {c for g in groups for r in g.results for c in _columns(r.path)}
    unknown = [w for w in wanted if w not in names and w not in columns]
    if unknown:
        raise UnigenError.one("E003", f"`--metric {unknown[0]}`: no run has that metric.", (), did_you_mean(unknown[0], [*names, *columns]))
    shown = [w for w in dict.fromkeys(wanted) if w in names]
    return markdown_table(groups, shown) + "\nmedian (min–max) over the seeds of each point; runs: finished of run.\n", list(dict.fromkeys(wanted))


def _columns(run: Path) -> list[str]:
    try:
        return read_metrics(run)[0]
    except UnigenError:
        return []


def curves(groups: list[Group]) -> dict[str, list[tuple[int, Result, list[float], list[float]]]]:
    """Each metrics.csv column (step, time and learning rates left out): (point, run, steps,
    values) for every run that logged it."""
    out: dict[str, list[tuple[int, Result, list[float], list[float]]]] = {}
    for i, g in enumerate(groups):
        for r in g.results:
            try:
                columns, rows = read_metrics(r.path)
            except UnigenError:
                continue  # a run that never logged a step has no curve
            for c in columns:
                xs, ys = _series(rows, c) if c not in ("step", "time_s") and not c.startswith("lr/") else ([], [])
                if xs:
                    out.setdefault(c, []).append((i, r, xs, ys))
    return out


def compare_plot(groups: list[Group], metrics: list[str] | None, out: Path, title: str = "") -> Path:
    """The curves overlaid, a panel per metric (`metrics`, else the final metrics, then the
    losses), into `out` (PNG); E005 when no run has a curve to draw."""
    lines = curves(groups)
    final = metric_names(groups)
    shown = [m for m in metrics if m in lines] if metrics else [*(m for m in final if m in lines), *(c for c in lines if c not in final)]
    if not shown:
        raise UnigenError.one("E005", "no run has a metrics.csv with a curve to draw" + (f" of {', '.join(f'`{m}`' for m in metrics)}." if metrics else "."), (), "compare runs that have logged steps (`train.log_every`, `train.eval_every`).")
    plt = _plt()
    cols, ncol = min(3, len(shown)), min(4, len(groups))
    rows, legend = math.ceil(len(shown) / cols), 0.25 * math.ceil(len(groups) / ncol) + 0.3
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows + legend + 0.4), squeeze=False)
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(groups))]
    for ax, column in zip(axes.flat, shown):
        _panel(ax, column, lines[column], colors)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, lw=2, label=f"{g.label}  ({_runs(g)})") for g, c in zip(groups, colors)]
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    unfinished = any(r.status != "done" for g in groups for r in g.results)
    note = "one line per run, a colour per point" + ("; dotted: runs that did not finish" if unfinished else "")
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
    fig.tight_layout(rect=(0, legend / fig.get_size_inches()[1], 1, 1))
    return _save(fig, out)


def _runs(group: Group) -> str:
    n, done = len(group.results), sum(r.status == "done" for r in group.results)
    return f"{n} run{'s' * (n != 1)}" + (f", {done} finished" if done < n else "")


def _panel(ax: Any, column: str, lines: list[tuple[int, Result, list[float], list[float]]], colors: list[Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    for i, r, xs, ys in lines:
        few = len(xs) <= 12
        ax.plot(xs, ys, ls="-" if r.status == "done" else ":", color=colors[i], lw=1.3, alpha=0.85, marker="o" if few else None, ms=3.5)
    phase, _, term = column.partition("/")
    name = f"{term} (loss of phase {phase})" if term else column
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel(column, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
