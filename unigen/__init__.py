"""unigen: deep generative models as graphical-model specs, compiled into training phases.

The pipeline: `load_spec` -> `build_graph` -> `validate_graph` -> `bind_phases` -> `build_program` -> `Trainer`.
Families, terms, networks, distributions, datasets and metrics come from pluggy plugins.

The public API (docs/api.md), for notebooks, scripts and plugin authors:

    import unigen
    print(unigen.compile("specs/vae-digits.yaml"))          # the compiled program
    unigen.validate("spec.yaml", ["train.batch_size=0"])     # a list of Diagnostic
    run = unigen.train("specs/vae-digits.yaml", steps=50)    # a Run
    run.sample(16), run.evaluate(["elbo"]), run.metrics()

`import unigen` stays cheap (plugins do it for `hookimpl`): everything else, torch included,
is imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterable as _Iterable
from typing import TYPE_CHECKING, Any

from unigen.api.hookspecs import PLUGIN_API, hookimpl
from unigen.errors import Diagnostic, UnigenError

if TYPE_CHECKING:
    from os import PathLike

    from unigen.api.registry import Registry, default_registry, load_registry
    from unigen.compiler.program import Program
    from unigen.runs.handle import Run
    from unigen.spec.models import Spec
    from unigen.training.model import Model
    from unigen.training.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "load_spec",
    "validate",
    "compile",
    "train",
    "open_run",
    "Run",
    "Trainer",
    "Model",
    "load_registry",
    "default_registry",
    "Diagnostic",
    "UnigenError",
    "hookimpl",
    "PLUGIN_API",
    "__version__",
]

def _overrides(overrides: str | _Iterable[str] | None) -> list[str]:
    if overrides is None:
        return []
    return [overrides] if isinstance(overrides, str) else [str(o) for o in overrides]


def load_spec(path: str | PathLike[str], overrides: str | _Iterable[str] = (), *, registry: Registry | None = None) -> Spec:
    """Read a spec file and validate it, with its family's defaults and `overrides` applied.

    Args:
        path: the spec file (YAML).
        overrides: `dotted.key=value` items, as on the command line (`["train.steps=200"]`).
        registry: the plugins to use; by default the installed ones (`default_registry()`).

    Returns:
        the validated `Spec` (a pydantic model: `spec.train.steps`, `spec.networks`, ...).

    Raises:
        UnigenError: with every diagnostic found, when the file cannot be read or is not a
            valid spec. Graph and plugin checks are `validate`'s and `compile`'s.
    """
    from unigen.api.registry import default_registry
    from unigen.spec.load import load_spec as load

    spec, _, _ = load(path, _overrides(overrides), registry or default_registry())
    return spec


def validate(path: str | PathLike[str], overrides: str | _Iterable[str] = (), *, registry: Registry | None = None) -> list[Diagnostic]:
    """Check a spec as `unigen validate` does: the file, its keys and values, its graph, and
    the plugins it names.

    Args:
        path: the spec file (YAML).
        overrides: `dotted.key=value` items, as on the command line.
        registry: the plugins to use; by default the installed ones.

    Returns:
        every `Diagnostic` found (`d.code`, `d.message`, `d.path`, `d.hint`, `d.line`;
        `str(d)` is the line the CLI prints), or an empty list when the spec compiles.

    Never raises `UnigenError`: a file that cannot be read is a diagnostic too (Y004). Other
    exceptions (a bug in a plugin) are not caught.
    """
    from unigen.api.registry import default_registry
    from unigen.compiler.compiler import compile_file

    try:
        compile_file(path, _overrides(overrides), registry or default_registry())
    except UnigenError as exc:
        return list(exc.diagnostics)
    return []


def compile(path: str | PathLike[str], overrides: str | _Iterable[str] = (), *, registry: Registry | None = None) -> Program:
    """Compile a spec into its training program, as `unigen compile` does.

    Args:
        path: the spec file (YAML).
        overrides: `dotted.key=value` items, as on the command line.
        registry: the plugins to use; by default the installed ones.

    Returns:
        the `Program`: its resolved nodes (`program.data`, `.variables`, `.edges`, `.networks`, `.phases`, `.train`); `str(program)` is
        the text `unigen compile` prints (it starts `program NAME`).

    Raises:
        UnigenError: with every diagnostic found, when the spec does not compile.
    """
    from unigen.api.registry import default_registry
    from unigen.compiler.compiler import compile_file

    return compile_file(path, _overrides(overrides), registry or default_registry()).program


def train(
    path: str | PathLike[str],
    overrides: str | _Iterable[str] = (),
    out: str | PathLike[str] | None = None,
    steps: int | None = None,
    device: str | None = None,
    quiet: bool = True,
    resume: str | PathLike[str] | None = None,
    *,
    registry: Registry | None = None,
) -> Run:
    """Compile a spec and train it into a run directory, as `unigen compile-and-train` does.

    Args:
        path: the spec file (YAML).
        overrides: `dotted.key=value` items, as on the command line.
        out: the run directory; by default `runs/NAME-TIME` under the working directory.
        steps: `train.steps` for this run (an override).
        device: `cpu`, `cuda` or `auto` for `train.device` (an override); the returned run
            loads its model there too (on the CPU when None).
        quiet: no progress lines (True by default); the run's train.log has them either way.
        resume: `auto` (the newest readable checkpoint in `out`), a checkpoint file or a run
            directory: continue that run instead of starting one.
        registry: the plugins to use; by default the installed ones.

    Returns:
        a `Run` of the finished run directory (`run.path`, `run.summary`, `run.sample()`).

    Raises:
        UnigenError: when the spec does not compile, training fails (a non-finite loss, a
            term's error), or the evaluation after training fails (the run is kept).
    """
    from unigen.runs.driver import train_run
    from unigen.runs.handle import Run

    run_dir = train_run(
        path,
        _overrides(overrides),
        out=None if out is None else str(out),
        steps=steps,
        device=device,
        registry=registry,
        quiet=quiet,
        resume=None if resume is None else str(resume),
    )
    return Run(run_dir, device=device or "cpu", registry=registry)


def open_run(run_dir: str | PathLike[str], checkpoint: str = "last", device: str = "cpu", *, registry: Registry | None = None) -> Run:
    """A run directory written by `unigen compile-and-train` or `unigen.train`.

    Args:
        run_dir: the run directory (it holds spec.resolved.yaml and checkpoints/).
        checkpoint: `last` (the newest readable checkpoint), `best` (what `train.best`
            kept) or a checkpoint file; what `run.model`, `run.sample()` and
            `run.evaluate()` load.
        device: where the model is loaded (`cpu`, `cuda`, `auto`).
        registry: the plugins to use; by default the installed ones.

    Returns:
        a `Run`; its model is loaded on first use.

    Raises:
        UnigenError: (E001) when `run_dir` is not a run directory.
    """
    from pathlib import Path

    from unigen.runs.handle import Run

    path = Path(run_dir)
    if not path.is_dir() or not (path / "spec.resolved.yaml").is_file():
        why = "there is no such directory" if not path.exists() else "it is not a directory" if not path.is_dir() else "it has no spec.resolved.yaml"
        raise UnigenError.one("E001", f"`{path}` cannot be opened as a run: {why}.", (), "pass a directory written by `unigen compile-and-train` (it holds spec.resolved.yaml and checkpoints/).")
    return Run(path, checkpoint, device, registry)


# ------------------------------------------------------------------ lazy names (PEP 562)
def __getattr__(name: str) -> Any:
    if name == "Run":
        from unigen.runs.handle import Run as value
    elif name == "Trainer":
        from unigen.training.trainer import Trainer as value
    elif name == "Model":
        from unigen.training.model import Model as value
    elif name == "load_registry":
        from unigen.api.registry import load_registry as value
    elif name == "default_registry":
        from unigen.api.registry import default_registry as value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
