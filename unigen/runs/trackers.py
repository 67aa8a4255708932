"""Experiment trackers: where a run's metric rows go besides metrics.csv (TensorBoard, any other).

metrics.csv is the run's own file, written by the training loop (`unigen.runs.loop`); trackers
receive the same rows.

A tracker kind is registered by a plugin through `unigen_register_trackers`, as a class (or
any factory) called with no arguments once per run. The run calls, in order::

    on_start(start: RunStart)       after the run directory exists, before the first step
    on_metrics(step, row)           each logged row: {"step", "time_s", "phase/term" losses,
                                    "lr/phase" learning rates, metrics}; one row per logged step
    on_image(tag, image, step)      each sample picture the run writes (tag "samples"; image:
                                    the path of its PNG, or an array)
    on_end(summary)                 once, with summary.json's content, when training finished

Every hook is optional: a tracker without `on_image` (or any other) is simply not called for
it. Kinds with `always = True` serve every run; others serve the runs that name
them (`compile-and-train --track NAME`, `--tensorboard`). A kind may define a classmethod
`unavailable() -> str` naming what is missing (e.g. a package); a run that asks for it then
stops before it starts (U004). A tracker that raises is switched off with a warning: a
logging backend never ends a run. summary.json's `trackers` names each tracker of the run
with "ok" or what switched it off.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unigen.api.registry import Registry
from unigen.errors import UnigenError


@dataclass(frozen=True)
class RunStart:
    run: Path  # the run directory
    name: str  # the spec's name
    resolved: dict[str, Any]  # the resolved spec, as in spec.resolved.yaml
    first_step: int = 0  # > 0 when a run resumes from a checkpoint
    resumed: bool = False  # continues an existing run directory (append, do not start over)


class Tracker:
    """Base of tracker kinds; every hook is optional."""

    doc = ""
    always = False  # serve every run, whether named or not

    @classmethod
    def unavailable(cls) -> str:
        """Empty when the tracker can run here; else what is missing and how to get it."""
        return ""

    def on_start(self, start: RunStart) -> None:
        pass

    def on_metrics(self, step: int, row: dict[str, Any]) -> None:
        pass

    def on_image(self, tag: str, image: Any, step: int) -> None:
        """A picture of the run: the path of a PNG it wrote, or an array (HW; HWC when its last axis has 1, 3 or 4 entries, else CHW)."""

    def on_end(self, summary: dict[str, Any]) -> None:
        pass


@dataclass
class Trackers:
    """The trackers of one run, called together."""

    items: list[tuple[str, Any]] = field(default_factory=list)
    warn: Callable[[str], None] = lambda text: print(f"warning: {text}", file=sys.stderr)
    failed: dict[str, str] = field(default_factory=dict)  # name -> what switched it off

    def get(self, name: str) -> Any:
        return next((t for n, t in self.items if n == name), None)

    def _call(self, method: str, *args: Any) -> None:
        for name, tracker in list(self.items):
            fn = getattr(tracker, method, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception as exc:
                self.items = [(n, t) for n, t in self.items if t is not tracker]
                self.failed[name] = f"failed in {method} ({type(exc).__name__}: {exc}); switched off for the rest of the run"
                self.warn(f"tracker `{name}` failed in {method} ({type(exc).__name__}: {exc}) and is switched off for the rest of the run.")

    def report(self) -> dict[str, str]:
        """summary.json's `trackers`: each tracker of the run, "ok" or what switched it off."""
        return {**{n: "ok" for n, _ in self.items}, **self.failed}

    def on_start(self, start: RunStart) -> None:
        self._call("on_start", start)

    def on_metrics(self, row: dict[str, Any]) -> None:
        self._call("on_metrics", int(row["step"]), row)

    def on_image(self, tag: str, image: Any, step: int) -> None:
        self._call("on_image", tag, image, step)

    def on_end(self, summary: dict[str, Any]) -> None:
        self._call("on_end", summary)


def select_trackers(registry: Registry, names: list[str] | None) -> Trackers:
    """The trackers a run uses: every `always` kind plus the named ones, checked before any
    file is written (unknown name: G001; missing package: U004)."""
    wanted = list(dict.fromkeys(names or []))
    problems = [registry.unknown("trackers", n, ("--track",)) for n in wanted if not registry.has("trackers", n)]
    if problems:
        raise UnigenError(problems)
    chosen = [e.name for e in registry.all("trackers") if getattr(e.obj, "always", False)]
    chosen += [n for n in wanted if n not in chosen]
    missing = []
    for n in chosen:
        kind = registry.get("trackers", n)
        why = kind.unavailable() if hasattr(kind, "unavailable") else ""
        if why:
            missing.append(why)
    if missing:
        raise UnigenError.one("U004", "; ".join(missing) + ".", ("--track",), "install what is named, or leave the tracker out.")
    return Trackers([(n, registry.get("trackers", n)()) for n in chosen])
