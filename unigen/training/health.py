"""Training health: symptoms that terms judge, reported once they last.

A term's `Bound.health` judges its last value at a logged step; its `Bound.monitor` judges the
model (say, the spread of generated samples), in its own random stream and in evaluation mode.
A symptom is reported once it has been seen at `HEALTH_PATIENCE` logged steps in a row.
"""

from __future__ import annotations

from typing import Any

import torch

from unigen.errors import exception_text
from unigen.training.seeds import HEALTH_SEED_OFFSET, fork_rng

HEALTH_PATIENCE = 3


class Health:
    def __init__(self, runners: list[Any], model: Any, seed: int) -> None:
        self.runners, self.model, self.seed = runners, model, seed
        self.monitors = [t.bound.monitor for r in runners for t in r.plan.terms if getattr(t.bound, "monitor", None) is not None]
        self.streaks: dict[str, int] = {}  # symptom key -> logged steps in a row it was seen
        self.warnings: list[dict[str, Any]] = []  # those reported, in order

    def seen(self) -> dict[str, str]:
        """The symptoms at this logged step: key -> warning text."""
        out: dict[str, str] = {}
        for r in self.runners:
            for t in r.plan.terms:
                health = getattr(t.bound, "health", None)
                if health is None or t.label not in r.last:
                    continue
                try:
                    text = health(r.last[t.label])
                except Exception as exc:  # a broken health check must not stop training
                    text = f"its health check failed: {exception_text(exc)}"
                if text:
                    out[f"{r.plan.name}/{t.label}"] = f"phase `{r.plan.name}`, term `{t.label}`: {text}"
        for monitor in self.monitors:
            found = self.run_monitor(monitor)
            if found is not None:
                out[found[0]] = found[1]
        return out

    def run_monitor(self, monitor: Any) -> tuple[str, str] | None:
        self.model.eval()
        try:
            with torch.no_grad(), fork_rng(self.model.device, self.seed + HEALTH_SEED_OFFSET):
                return monitor(self.model)  # type: ignore[no-any-return]
        except Exception as exc:  # a broken monitor must not stop training
            return (f"monitor/{getattr(monitor, '__qualname__', 'monitor')}", f"a health monitor failed: {exception_text(exc)}")
        finally:
            self.model.train()

    def check(self, step: int) -> list[dict[str, Any]]:
        """The symptoms that have now lasted `HEALTH_PATIENCE` logged steps in a row, each
        reported once (returned and recorded in `warnings`)."""
        seen = self.seen()
        reported = {w["kind"] for w in self.warnings}
        new: list[dict[str, Any]] = []
        for key in list(self.streaks):
            if key not in seen:
                del self.streaks[key]
        for key, text in seen.items():
            self.streaks[key] = self.streaks.get(key, 0) + 1
            if self.streaks[key] >= HEALTH_PATIENCE and key not in reported:
                head, _, hint = text.partition(" Hint: ")
                message = head.rstrip().rstrip(".") + f" (at {HEALTH_PATIENCE} logged steps in a row, up to step {step})." + (f" Hint: {hint}" if hint else "")
                new.append({"kind": key, "step": step, "message": message})
        self.warnings.extend(new)
        return new

    def state_dict(self) -> dict[str, Any]:
        return {"streaks": dict(self.streaks), "warnings": [dict(w) for w in self.warnings]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streaks = {str(k): int(v) for k, v in (state.get("streaks") or {}).items()}
        self.warnings = [dict(w) for w in state.get("warnings") or []]
