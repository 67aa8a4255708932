"""`Run`: a run directory as a Python object, for notebooks and scripts (`unigen.train`,
`unigen.open_run`).

A `Run` reads what the run wrote (summary.json, metrics.csv) each time it is asked, so it
follows a run that is still training; its model is built and loaded from the checkpoint on
first use (`unigen.runs.evaluate.open_run`) and kept.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unigen.errors import UnigenError

if TYPE_CHECKING:
    import torch

    from unigen.api.registry import Registry
    from unigen.compiler.program import Program
    from unigen.runs.evaluate import OpenRun
    from unigen.training.model import Model


class Run:
    """A run directory written by `unigen compile-and-train` (or `unigen.train`).

    `checkpoint` (`last`, `best` or a checkpoint file) and `device` choose what `.model`,
    `.sample()` and `.evaluate()` load; `registry` defaults to the installed plugins'.
    `os.fspath(run)` is its directory, so a `Run` goes where a path does.
    """

    def __init__(self, path: str | Path, checkpoint: str = "last", device: str = "cpu", registry: "Registry | None" = None) -> None:
        self.path = Path(path)
        self.checkpoint = checkpoint
        self.device = device
        self._registry = registry
        self._opened: OpenRun | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, checkpoint={self.checkpoint!r}, device={self.device!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------ what the run wrote
    @property
    def summary(self) -> dict[str, Any] | None:
        """summary.json as a dict (final losses, metrics, timings), or None while the run has
        not finished. Raises `UnigenError` (E001) when the file is there but not JSON."""
        path = self.path / "summary.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UnigenError.one("E001", f"`{path}` cannot be read: {exc.strerror or exc}.", (), "check the run directory.") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise UnigenError.one("E001", f"`{path}` is not JSON: {exc}.", (), "a finished run writes it whole; check the file.") from None
        return doc if isinstance(doc, dict) else None

    def metrics(self) -> list[dict[str, float]]:
        """metrics.csv, one dict per logged row: `step` (an int), `time_s` and each logged loss
        and metric as floats. A cell left empty in a row (a metric evaluated at other steps) is
        left out of that row's dict. An empty list before the first row is logged; raises
        `UnigenError` (E005) when the file is not readable CSV."""
        return read_metrics_rows(self.path / "metrics.csv")

    # ------------------------------------------------------------ the trained model
    def _open(self) -> "OpenRun":
        if self._opened is None:
            from unigen.runs.evaluate import open_run

            self._opened = open_run(self.path, self.checkpoint, self._registry, self.device)
        return self._opened

    @property
    def model(self) -> "Model":
        """The run's `Model` with the checkpoint's weights, in evaluation mode; loaded on first
        use and kept. Raises `UnigenError` (E001, E002, C001) when the run or its checkpoint
        cannot be loaded."""
        return self._open().model

    @property
    def program(self) -> "Program":
        """The `Program` compiled from the run's spec.resolved.yaml (loaded with `.model`)."""
        return self._open().program

    @property
    def step(self) -> int:
        """The training step of the loaded checkpoint."""
        return self._open().step

    def sample(self, n: int = 64, seed: int = 0) -> "torch.Tensor":
        """`n` samples of the observed variable the model generates (what the run's sample
        pictures show), drawn with the seeded noise `seed` (the same seed, the same samples;
        the caller's random streams are left as they were). A model whose p-trace reads
        variables from the data (a conditional one) takes them from the test split's first
        rows. Returns a tensor of shape `[n, *shape]` on the run's device; raises
        `UnigenError` (E004) for a model that generates no observed variable or `n` < 1."""
        import torch

        model = self.model
        var = model.sampled_variable()
        if var is None:
            raise UnigenError.one("E004", f"the model of `{self.path}` generates no observed variable, so there is nothing to sample.", (), "sample a run whose spec has a generative edge into an observed variable.")
        if n < 1:
            raise UnigenError.one("E004", f"`n={n}`: expected at least one sample.", (), "pass n=64, say.")
        graph = model.program.graph
        batch = None
        if any(graph.p_source(v) == "data" for v in graph.variables) and model.dataset.test:
            rows = next(iter(model.dataset.test.values())).shape[0]
            index = torch.arange(n, device=model.device) % max(rows, 1)
            batch = {k: v[index] for k, v in model.dataset.test.items()}
        with torch.no_grad(), torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return model.generate(n, var, batch)

    def evaluate(self, metrics: Iterable[str] | None = None, options: Mapping[str, Mapping[str, Any]] | Iterable[str] | None = None) -> dict[str, float]:
        """Compute metrics on the checkpoint, as `unigen evaluate RUN` does: `metrics` names the
        registered metrics to compute (None: every one that applies to the model, including
        those too slow for training); `options` sets their options, as `{"iwae": {"k": 1000}}`
        or as `["iwae.k=1000"]`. Returns the values by name (a metric may report several,
        e.g. `elbo` gives `test_nelbo`, `test_recon`, `test_kl`). A metric that fails is left
        out with a `RuntimeWarning` (R005); raises `UnigenError` (E003) for an unknown metric
        or option, or when no metric applies."""
        import warnings

        from unigen.runs.evaluate import evaluate_run

        names = [metrics] if isinstance(metrics, str) else list(metrics) if metrics is not None else None
        result = evaluate_run(self.path, self.checkpoint, names, option_items(options), self._registry, self.device)
        for text in result["errors"]:
            warnings.warn(f"R005 {text}; it is left out of the results.", RuntimeWarning, stacklevel=2)
        return dict(result["metrics"])


def option_items(options: Mapping[str, Mapping[str, Any]] | Iterable[str] | None) -> list[str]:
    """`{"iwae": {"k": 1000}}` as `["iwae.k=1000"]` (values written as YAML reads them)."""
    if options is None:
        return []
    if isinstance(options, str):
        return [options]
    if isinstance(options, Mapping):
        return [f"{name}.{key}={json.dumps(value)}" for name, opts in options.items() for key, value in opts.items()]
    return [str(o) for o in options]


def read_metrics_rows(path: Path) -> list[dict[str, float]]:
    """The whole rows of a metrics.csv with their non-empty cells as numbers (see
    `Run.metrics`); a torn last line (a crash mid-write) is dropped."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UnigenError.one("E005", f"`{path}` cannot be read: {exc.strerror or exc}.", (), "check the run directory.") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UnigenError.one("E005", f"`{path}` is not a readable CSV file: {exc}.", (), "check the file; a run writes it with a header row.") from None
    out: list[dict[str, float]] = []
    for row in rows:
        if None in row or any(v is None for v in row.values()):
            continue  # more or fewer cells than the header: a torn line
        values: dict[str, float] = {}
        for key, text in row.items():
            if text in ("", None):
                continue
            try:
                value = float(text)
            except ValueError:
                continue
            values[key] = int(value) if key == "step" and math.isfinite(value) else value
        if "step" in values:
            out.append(values)
    return out
