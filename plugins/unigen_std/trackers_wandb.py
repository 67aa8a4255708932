"""The Weights & Biases tracker (`--track wandb`), offline.

A run is written to RUN/wandb/offline-run-<time>-<id>/ and nothing leaves the machine:
the mode is `offline` whatever WANDB_MODE says, and W&B's error reporting is off
(WANDB_ERROR_REPORTING=false) unless the environment sets that variable.
`wandb sync RUN/wandb/offline-run-*` uploads it later; `wandb leet RUN/wandb` shows it in the
terminal. The project is WANDB_PROJECT, else the spec's name; the run's name is the run
directory's. (`WandbTracker(mode="online")`, registered by a plugin of one's own, logs live.)

What a W&B run holds:

- config: the resolved spec, as spec.resolved.yaml has it;
- history, one row per logged step: `loss/<phase>/<term>`, `lr/<phase>`, `metric/<name>`,
  `time/seconds` (the names TensorBoard shows), and `samples`, each sample picture at its step;
- summary: each value's last one (the final metrics among them) and, under `summary`,
  summary.json's content; the files `spec.resolved.yaml` and `summary.json`;
- the exit code 0, or 1 when the evaluation after training failed (summary.json's `errors`)
  or the process ended before training did.

A resumed run (`--resume`) logs to the same W&B run id (kept in RUN/wandb/run.json), in an
offline directory of its own, from the step it resumed at; `wandb sync` uploads each into that run.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import json
import math
import numbers
import os
import re
import sys
from pathlib import Path
from typing import Any

from unigen.runs.rundir import dump_yaml
from unigen.runs.trackers import RunStart, Tracker

from .trackers import picture_pixels, scalar_tag

MIN_VERSION = (0, 19, 10)  # wandb.init(reinit="create_new"): a run of its own beside any other of the process
PROJECT_REFUSED = re.compile(r"[/\\#?%:]")  # characters W&B refuses in a project's name
QUIET = {"silent": True, "console": "off", "disable_git": True, "save_code": False, "x_disable_stats": True, "x_save_requirements": False}


def release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: "0.19.10rc1" -> (0, 19, 10)."""
    return tuple(int(m.group()) for m in (re.match(r"\d+", part) for part in version.split(".")[:3]) if m)


def json_safe(value: Any) -> Any:
    """Plain JSON data: non-finite numbers as their names ("NaN", "Infinity"), paths as text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class WandbTracker(Tracker):
    doc = (
        "Weights & Biases, offline: a run in RUN/wandb (`wandb sync` uploads it) with the spec as config, losses, learning rates "
        "and metrics per step, sample pictures and the summary (needs the `wandb` package)"
    )

    def __init__(self, mode: str = "offline", project: str | None = None) -> None:
        self.mode = mode
        self.project = project
        self.run: Any = None
        self.dir = Path()
        self.phases: set[str] = set()
        self.resolved: dict[str, Any] = {}
        self.hooks: tuple[Any, Any] = (None, None)  # sys.exit and sys.excepthook before W&B took them

    @classmethod
    def unavailable(cls) -> str:
        if importlib.util.find_spec("wandb") is None:
            return "`--track wandb` needs the `wandb` package, which is not installed (`pip install wandb`)"
        try:
            version = importlib.metadata.version("wandb")
        except importlib.metadata.PackageNotFoundError:
            return ""
        if release(version) < MIN_VERSION:
            return f"`--track wandb` needs wandb {'.'.join(map(str, MIN_VERSION))} or newer, and wandb {version} is installed (`pip install -U wandb`)"
        return ""

    def on_start(self, start: RunStart) -> None:
        if self.mode != "online":
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")  # read when W&B's service starts
        import wandb

        run = Path(start.run)
        self.dir = run / "wandb"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.phases = {str(p.get("name")) for p in start.resolved.get("phases") or [] if isinstance(p, dict)}
        self.resolved = json_safe(start.resolved)
        record = self.dir / "run.json"
        kept = self.kept_id(record) if start.resumed else None
        fields = getattr(wandb.Settings, "model_fields", {})
        settings = wandb.Settings(**{k: v for k, v in QUIET.items() if k in fields})
        project = self.project or os.environ.get("WANDB_PROJECT", "") or PROJECT_REFUSED.sub("-", start.name)
        self.hooks = (sys.exit, sys.excepthook)
        self.run = wandb.init(
            mode=self.mode,
            dir=str(run),
            project=project,
            name=run.name,
            id=kept,
            resume="allow" if kept else None,
            config=self.resolved,
            reinit="create_new",
            settings=settings,
        )
        atexit.register(self.abandon)
        if kept is None:
            record.write_text(json.dumps({"id": self.run.id, "project": project}, indent=2) + "\n", encoding="utf-8")
        self.save_file("spec.resolved.yaml", dump_yaml(start.resolved))

    @staticmethod
    def kept_id(record: Path) -> str | None:
        try:
            return str(json.loads(record.read_text(encoding="utf-8"))["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_file(self, name: str, text: str) -> None:
        """A file of the run (RUN/wandb/offline-run-*/files/NAME), uploaded with it."""
        path = Path(self.run.dir) / name
        path.write_text(text, encoding="utf-8")
        self.run.save(str(path), base_path=self.run.dir, policy="now")

    def on_metrics(self, step: int, row: dict[str, Any]) -> None:
        data = {}
        for key, value in row.items():
            tag = scalar_tag(key, self.phases)
            if tag is not None and isinstance(value, numbers.Real) and not isinstance(value, bool):
                data[tag] = float(value)
        self.run.log(data, step=step)

    def on_image(self, tag: str, image: Any, step: int) -> None:
        import wandb

        picture = wandb.Image(str(image)) if isinstance(image, (str, Path)) else wandb.Image(picture_pixels(image))
        self.run.log({tag: picture}, step=step)

    def on_end(self, summary: dict[str, Any]) -> None:
        plain = json_safe(summary)
        self.save_file("summary.json", json.dumps(summary, indent=2))
        self.run.summary["summary"] = plain
        self.finish(1 if summary.get("errors") else 0)

    def finish(self, exit_code: int) -> None:
        """The run's end. W&B's service replaces sys.exit and sys.excepthook for the process
        (to learn its exit code); with no other W&B run left, they are given back."""
        import wandb

        atexit.unregister(self.abandon)
        run, self.run = self.run, None
        run.finish(exit_code=exit_code)
        exit_hook, except_hook = self.hooks
        if wandb.run is None and exit_hook is not None:
            if getattr(sys.exit, "__module__", "").startswith("wandb"):
                sys.exit = exit_hook
            if getattr(sys.excepthook, "__module__", "").startswith("wandb"):
                sys.excepthook = except_hook

    def abandon(self) -> None:
        """At the process's exit, a run that did not end (an error, a signal) ends with exit code 1."""
        if self.run is not None:
            try:
                self.finish(1)
            except Exception:  # W&B's service may be gone by now; nothing more to do at exit
                pass
