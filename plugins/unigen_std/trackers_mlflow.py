"""The MLflow tracker (`--track mlflow`).

Where a run goes: by default an SQLite store inside the run directory, RUN/mlflow/mlflow.db,
with the artefacts in RUN/mlflow/artifacts; nothing leaves the machine. MLflow 3 refuses its
plain file store (`./mlruns`) unless told otherwise, so the local store is SQLite, which needs
`sqlalchemy` and `alembic` beside `mlflow-skinny` (the full `mlflow` package has them, and its
`mlflow ui --backend-store-uri sqlite:///RUN/mlflow/mlflow.db` shows the run). Making a new
store's tables takes a few seconds, once per run directory.
MLflow's own variables choose another store or experiment: `MLFLOW_TRACKING_URI` (a server,
a shared `sqlite:///...` file) and `MLFLOW_EXPERIMENT_NAME` (default: the spec's name); so do
the `tracking_uri` and `experiment` arguments of `MlflowTracker`. MLflow's usage telemetry is
off (MLFLOW_DISABLE_TELEMETRY=true) unless the environment sets that variable.

What an MLflow run holds (one per run directory; its name is the directory's):

- parameters: the resolved spec, flattened as TensorBoard's HParams are (`train.batch_size`,
  `networks.encoder.hidden`, `phases.elbo.optim.lr`, ...), each value as its JSON text (a
  string as it is), cut to MLflow's limit (6000 characters, ending in `...`);
- metrics, at each logged step: `loss/<phase>/<term>`, `lr/<phase>`, `metric/<name>`,
  `time/seconds`, the names TensorBoard shows, made valid for MLflow: `@` (a term on an edge)
  becomes ` at ` (`loss/generator/adversarial.g at adv_x`), any other character MLflow refuses
  (it takes letters, digits, `_ - . /` and spaces) becomes `_`;
- artefacts: `spec.resolved.yaml` (from the start), each sample picture under `samples/`
  (`samples/step_00000010.png`, the PNG as written), and `summary.json` at the end;
- tags: `unigen.run_dir`, `unigen.spec`; the status FINISHED, or FAILED when the evaluation
  after training failed (summary.json's `errors`) or the process ended before training did.

A resumed run (`--resume`) goes on in the same MLflow run (its id is kept in
RUN/mlflow/run.json): no step of a metric is logged twice (a step replayed after the
checkpoint keeps its first value), and parameters keep the values first logged (MLflow's
cannot change); `spec.resolved.yaml` is replaced by the resuming process's.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import logging
import numbers
import os
import re
import time
from pathlib import Path
from typing import Any

from unigen.runs.rundir import dump_yaml
from unigen.runs.trackers import RunStart, Tracker

from .trackers import flat_spec, picture_png, scalar_tag

MAX_PARAM_TEXT = 6000  # MLflow's limit on a parameter's value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH)
MAX_KEY = 250  # ... and on a metric's or parameter's name
BATCH = 100  # parameters per log_batch call (MLflow's limit)
REFUSED = re.compile(r"[^\w./\- ]")  # MLflow's names: letters, digits, `_ - . /`, spaces (a colon too, except on Windows)
PIECES = ("sqlalchemy", "alembic")  # what an SQLite store needs beside mlflow-skinny


def mlflow_name(key: str) -> str:
    """A name MLflow takes for a metric or parameter: `@` as ` at `, other refused characters as
    `_`, no empty, `.` or `..` part between slashes (MLflow refuses names a path would change)."""
    text = REFUSED.sub("_", key.replace("@", " at "))
    parts = ["_" if p.strip() in (".", "..") else p for p in text.split("/") if p]
    return "/".join(parts)[:MAX_KEY] or "_"


def param_text(value: Any) -> str:
    """A parameter's value: a string as it is, anything else as its JSON text; cut to MLflow's limit."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_PARAM_TEXT else text[: MAX_PARAM_TEXT - 3] + "..."


def spec_params(resolved: dict[str, Any]) -> dict[str, str]:
    """The resolved spec as MLflow parameters: flattened keys (made valid names), text values."""
    return {mlflow_name(k): param_text(v) for k, v in flat_spec(resolved).items()}


def local_store(run: Path) -> str:
    """The default store: RUN/mlflow/mlflow.db."""
    return "sqlite:///" + (Path(run).resolve() / "mlflow" / "mlflow.db").as_posix()


class MlflowTracker(Tracker):
    doc = (
        "MLflow: a run in RUN/mlflow (an SQLite store, artefacts beside it) or at MLFLOW_TRACKING_URI, with the spec as parameters, "
        "losses, learning rates and metrics per step, sample pictures, spec.resolved.yaml and summary.json "
        "(needs `mlflow`, or `mlflow-skinny` with `sqlalchemy` and `alembic`)"
    )

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        self.uri_given = tracking_uri
        self.experiment_given = experiment
        self.client: Any = None
        self.run_id = ""
        self.phases: set[str] = set()
        self.names: dict[str, str] = {}  # row key -> metric name
        self.logged: dict[str, set[int]] = {}  # metric name -> steps already in the run (a resumed one)
        self.ended = False

    @classmethod
    def unavailable(cls) -> str:
        if importlib.util.find_spec("mlflow") is None:
            return "`--track mlflow` needs the `mlflow` package, which is not installed (`pip install mlflow`, or the lighter `pip install mlflow-skinny sqlalchemy alembic`)"
        if (os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:").startswith("sqlite:"):  # the default store, or another SQLite file
            missing = [p for p in PIECES if importlib.util.find_spec(p) is None]
            if missing:
                names = " and ".join(f"`{p}`" for p in missing)
                return f"`--track mlflow` keeps its runs in SQLite (RUN/mlflow/mlflow.db), which needs {names} beside mlflow-skinny (`pip install {' '.join(missing)}`, or the full `pip install mlflow`)"
        return ""

    # ------------------------------------------------------------------ start
    def on_start(self, start: RunStart) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # read when mlflow is first imported
        from mlflow.tracking import MlflowClient

        run = Path(start.run)
        uri = self.uri_given or os.environ.get("MLFLOW_TRACKING_URI", "") or local_store(run)
        store_log = logging.getLogger("mlflow.store.db.utils")  # "Creating initial MLflow database tables..."
        level = store_log.level
        store_log.setLevel(logging.WARNING)
        try:
            self.client = MlflowClient(tracking_uri=uri)
        finally:
            store_log.setLevel(level)
        self.phases = {str(p.get("name")) for p in start.resolved.get("phases") or [] if isinstance(p, dict)}
        record = run / "mlflow" / "run.json"
        previous = self.previous_run(record, uri) if start.resumed else None
        if previous is not None:
            self.run_id = previous.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged = {k: {m.step for m in self.client.get_metric_history(self.run_id, k)} for k in previous.data.metrics}
            kept = set(previous.data.params)
        else:
            experiment = self.experiment_id(uri, run, start.name)
            tags = {"unigen.run_dir": str(run.resolve()), "unigen.spec": start.name}
            self.run_id = self.client.create_run(experiment, tags=tags, run_name=run.name).info.run_id
            kept = set()
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps({"tracking_uri": uri, "run_id": self.run_id}, indent=2) + "\n", encoding="utf-8")
        atexit.register(self.abandon)
        self.log_params({k: v for k, v in spec_params(start.resolved).items() if k not in kept})
        self.client.log_text(self.run_id, dump_yaml(start.resolved), "spec.resolved.yaml")

    def previous_run(self, record: Path, uri: str) -> Any:
        """The MLflow run a resumed run directory logged to, when it is still in this store."""
        from mlflow.exceptions import MlflowException

        try:
            kept = json.loads(record.read_text(encoding="utf-8"))
            if kept.get("tracking_uri") != uri:
                return None
            return self.client.get_run(kept["run_id"])
        except (OSError, ValueError, KeyError, TypeError, MlflowException):
            return None

    def experiment_id(self, uri: str, run: Path, spec_name: str) -> str:
        """The experiment (MLFLOW_EXPERIMENT_NAME, else the spec's name), created when missing;
        in the default store its artefacts go to RUN/mlflow/artifacts."""
        from mlflow.exceptions import MlflowException

        name = self.experiment_given or os.environ.get("MLFLOW_EXPERIMENT_NAME", "") or spec_name
        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = (run.resolve() / "mlflow" / "artifacts").as_uri() if uri == local_store(run) else None  # else the store's own
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException:  # another process created it meanwhile
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise RuntimeError(f"MLflow experiment `{name}` in {uri} is deleted; restore it (`mlflow experiments restore --experiment-id {found.experiment_id}`) or name another with MLFLOW_EXPERIMENT_NAME")
        return found.experiment_id

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    # ---------------------------------------------------------------- steps
    def metric_name(self, key: str) -> str | None:
        """A row key's metric name, once chosen; a second key that would get the same name gets `_2`, ..."""
        if key not in self.names:
            tag = scalar_tag(key, self.phases)
            if tag is None:
                return None
            name, n, used = mlflow_name(tag), 1, set(self.names.values())
            while name in used:
                n += 1
                name = f"{mlflow_name(tag)[: MAX_KEY - 4]}_{n}"
            self.names[key] = name
        return self.names[key]

    def on_metrics(self, step: int, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for key, value in row.items():
            name = self.metric_name(key)
            if name is None or not isinstance(value, numbers.Real) or isinstance(value, bool):
                continue
            if step in self.logged.get(name, ()):  # replayed after a checkpoint: the run has it
                continue
            metrics.append(Metric(name, float(value), now, step))  # NaN and infinities as MLflow stores them
            self.logged.setdefault(name, set()).add(step)
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_image(self, tag: str, image: Any, step: int) -> None:
        folder = mlflow_name(tag)
        if isinstance(image, (str, Path)):
            self.client.log_artifact(self.run_id, str(image), folder)
        else:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"step_{step:08d}.png"
                path.write_bytes(picture_png(image))
                self.client.log_artifact(self.run_id, str(path), folder)

    # ------------------------------------------------------------------ end
    def on_end(self, summary: dict[str, Any]) -> None:
        self.client.log_text(self.run_id, json.dumps(summary, indent=2), "summary.json")
        self.finish("FAILED" if summary.get("errors") else "FINISHED")

    def finish(self, status: str) -> None:
        self.ended = True
        atexit.unregister(self.abandon)
        self.client.set_terminated(self.run_id, status)

    def abandon(self) -> None:
        """At the process's exit, a run that did not end (an error, a signal) is marked FAILED."""
        if self.ended or not self.run_id:
            return
        try:
            self.finish("FAILED")
        except Exception:  # the store may be gone by now; nothing more to do at exit
            pass
