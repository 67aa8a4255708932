"""`unigen evaluate`: a finished (or running) run directory in, metrics out.

The run's resolved spec is compiled again, its networks are built and loaded from a
checkpoint (`last`, `best` or a file), and every registered metric that applies is computed,
including those too slow for training (`Metric.during_training = False`).
"""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError

from unigen.api.registry import Registry, default_registry
from unigen.compiler.program import Program
from unigen.errors import UnigenError, did_you_mean, exception_text
from unigen.runs.checkpoints import load_checkpoint, newest_checkpoint, resolve_checkpoint
from unigen.training.metrics import compute_metrics
from unigen.training.model import Model
from unigen.training.networks import pick_device


@dataclass
class OpenRun:
    run: Path
    program: Program
    model: Model
    checkpoint: Path
    step: int


def _not_a_run(run: Path, why: str) -> UnigenError:
    return UnigenError.one("E001", f"`{run}` cannot be evaluated: {why}.", (), "pass a directory written by `unigen compile-and-train` (it holds spec.resolved.yaml and checkpoints/).")


def pick_checkpoint(run: Path, which: str) -> tuple[Path, dict[str, Any]]:
    """`last` (the newest readable one), `best` (what `checkpoints/best` names) or a file."""
    if which == "last":
        path, state, warnings = newest_checkpoint(run)
        for text in warnings:
            print(f"warning: {text}", file=sys.stderr)
        return path, state
    if which == "best":
        pointer = run / "checkpoints" / "best"
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except OSError:
            raise UnigenError.one("E002", f"`{run}` has no best checkpoint (no `checkpoints/best`).", (), "train with `train.best: {metric: NAME, mode: min|max}` (and `train.eval_every`), or use `--checkpoint last`.") from None
        path = run / "checkpoints" / name
        if not name.startswith("step_") or not path.is_file():
            raise UnigenError.one("E002", f"`checkpoints/best` in `{run}` names `{name}`, which is not a checkpoint there.", (), "use `--checkpoint last`, or a checkpoint file.")
        return path, load_checkpoint(path)
    found = resolve_checkpoint(Path(which), run_dir=False)
    if found is None:
        raise UnigenError.one("E002", f"`--checkpoint {which}`: no such checkpoint file.", (), "pass `last`, `best` or a file under the run's checkpoints/.")
    return found[0], found[1]


def open_run(run: str | Path, checkpoint: str = "last", registry: Registry | None = None, device: str = "cpu") -> OpenRun:
    """The run's model with the checkpoint's weights, in evaluation mode."""
    from unigen.compiler.compiler import compile_file

    registry = registry or default_registry()
    run = Path(run)
    if not run.is_dir():
        raise _not_a_run(run, "there is no such directory" if not run.exists() else "it is not a directory")
    resolved = run / "spec.resolved.yaml"
    if not resolved.is_file():
        raise _not_a_run(run, "it has no spec.resolved.yaml")
    try:
        doc = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _not_a_run(run, f"its spec.resolved.yaml cannot be read ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise _not_a_run(run, "its spec.resolved.yaml is not a mapping")
    compiled = compile_file(resolved, [f"train.device={device}"], registry)
    path, state = pick_checkpoint(run, checkpoint)
    program = compiled.program
    torch.manual_seed(program.train.seed)
    model = Model(program, pick_device(device))
    try:
        model.nets.load_state_dict(state["nets"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise UnigenError.one("C001", f"checkpoint `{path}` does not fit the run's networks: {exception_text(exc)}.", (), "evaluate a checkpoint of this run.", exit_code=1) from None
    model.eval()
    return OpenRun(run, program, model, path, int(state["step"]))


def parse_metric_options(items: list[str], registry: Registry) -> dict[str, dict[str, Any]]:
    """`NAME.KEY=VALUE` items (values read as YAML scalars) grouped by metric."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or not name or not option:
            raise UnigenError.one("E003", f"`--option {item}` is not `METRIC.KEY=VALUE`.", (), "write e.g. `--option iwae.k=1000`.")
        if not registry.has("metrics", name):
            raise UnigenError.one("E003", f"`--option {item}`: no metric `{name}` is registered.", (), did_you_mean(name, registry.names("metrics")))
        out.setdefault(name, {})[option] = yaml.safe_load(value)
    return out


def configured_metrics(registry: Registry, names: list[str] | None, options: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
    chosen = []
    for n in names or []:
        if not registry.has("metrics", n):
            raise UnigenError.one("E003", f"no metric `{n}` is registered.", (), did_you_mean(n, registry.names("metrics")))
    for entry in registry.all("metrics"):
        if names and entry.name not in names:
            continue
        metric = entry.obj
        if entry.name in options:
            Opts = getattr(metric, "Options", None)
            if Opts is None:
                raise UnigenError.one("E003", f"metric `{entry.name}` takes no options.", (), "leave out its `--option`.")
            try:
                parsed = Opts(**options[entry.name])
            except ValidationError as exc:
                problems = "; ".join(f"`{'.'.join(str(p) for p in e['loc'])}`: {e['msg']}" for e in exc.errors())
                raise UnigenError.one("E003", f"bad options for metric `{entry.name}`: {problems}.", (), "see `unigen plugins` for the metric, and its options' defaults in its plugin.") from None
            metric = copy.copy(metric)
            metric.options = parsed
        chosen.append((entry.name, metric))
    return chosen


def evaluate_run(run: str | Path, checkpoint: str = "last", names: list[str] | None = None, option_items: list[str] | None = None, registry: Registry | None = None, device: str = "cpu") -> dict[str, Any]:
    registry = registry or default_registry()
    options = parse_metric_options(option_items or [], registry)
    configured_metrics(registry, names, options)  # bad names and options are refused before the run is opened
    opened = open_run(run, checkpoint, registry, device)
    # the run's spec may give a metric options (`metrics: [{metric: NAME, options: ...}]`); `--option` overrides them
    from_spec = {m.metric: dict(m.options) for m in opened.program.graph.spec.metric_refs() if m.options}
    metrics = configured_metrics(registry, names, {n: {**from_spec.get(n, {}), **options.get(n, {})} for n in {*from_spec, *options}})
    model = opened.model
    done = compute_metrics(model, [(name, metric, f"metric `{name}`") for name, metric in metrics], opened.program.train.seed, applicable_only=not names)
    results, seconds, errors = done.values, done.seconds, list(done.failed.values())
    if names is None and not results and not errors:
        raise UnigenError.one("E003", f"no registered metric applies to run `{opened.run}`.", (), "install a plugin with a metric for this kind of model (`unigen plugins` lists the metrics).", exit_code=1)
    return {"run": str(opened.run), "checkpoint": str(opened.checkpoint), "step": opened.step, "metrics": results, "seconds": seconds, "errors": errors}


def format_table(result: dict[str, Any]) -> str:
    """One line per metric; a metric `X` with an `X_floor` shows the floor beside it."""
    metrics = result["metrics"]
    rows = [(k, v, metrics.get(k + "_floor")) for k, v in metrics.items() if not k.endswith("_floor")]
    width = max([len("metric")] + [len(k) for k, _, _ in rows])

    def show(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float) and (v.is_integer() and abs(v) < 1e9):
            return f"{int(v)}"
        return f"{v:.5g}" if isinstance(v, float) and math.isfinite(v) else str(v)

    lines = [f"run {result['run']}, checkpoint {Path(result['checkpoint']).name} (step {result['step']})", f"{'metric':<{width}}  {'value':>12}  {'real-vs-real floor':>18}"]
    lines += [f"{k:<{width}}  {show(v):>12}  {show(f):>18}" for k, v, f in rows]
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
