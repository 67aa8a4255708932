"""`--resume auto|PATH`: which run directory a resumed run continues in, from which checkpoint,
and whether that checkpoint was written for this spec (C001 says what differs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unigen.errors import UnigenError
from unigen.runs.checkpoints import newest_checkpoint, resolve_checkpoint
from unigen.runs.rundir import spec_differences


@dataclass
class Resume:
    """Where a resumed run continues and from which checkpoint."""

    run: Path
    reuse: bool  # continue in `run`, keeping its files and appending to its metrics
    path: Path | None = None  # None: nothing to resume, a new run starts in `run`
    state: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


def find_resume(resume: str, out: str | None) -> Resume:
    """`--resume auto|PATH` with `--out`: the run directory and the checkpoint to continue from."""
    if resume == "auto":
        if not out:
            raise UnigenError.one("R002", "`--resume auto` continues the run in `--out DIR`, but no `--out` was given.", (), "add `--out DIR` naming the run directory to continue.")
        run = Path(out)
        if not run.exists() or (run.is_dir() and not any(run.iterdir())):
            return Resume(run, reuse=False)  # nothing there yet: a new run starts
        if not run.is_dir():
            raise UnigenError.one("R002", f"`{run}` is not a directory.", (), "point `--out` at a run directory.")
        path, state, warnings = newest_checkpoint(run)
        return Resume(run, True, path, state, warnings)
    given = Path(resume)
    found = resolve_checkpoint(given)
    if found is None:
        raise UnigenError.one("C001", f"`--resume {resume}`: there is no such checkpoint file or run directory.", (), "pass a checkpoint (`RUN/checkpoints/step_*.pt`), a run directory, or `auto` with `--out RUN`.", exit_code=1)
    path, state, warnings, home = found
    run = Path(out) if out else home
    if run is None:
        raise UnigenError.one("R002", f"checkpoint `{given}` lies outside a run directory, so there is no run to continue.", (), "add `--out DIR` for the resumed run.")
    if home is not None and run.resolve() == home.resolve():
        return Resume(run, True, path, state, warnings)
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise UnigenError.one("R002", f"`{run}` exists and is not empty, and the checkpoint `{path}` is not from it; unigen never writes over a run.", (), "choose a new `--out`" + (f", or leave `--out` out to continue in `{home}`." if home else "."))
    return Resume(run, False, path, state, warnings)


def check_fits(state: dict[str, Any], path: Path, identity: dict[str, Any], digest: str, steps: int) -> None:
    """A checkpoint is refused (C001) unless it was written for this spec; the message says what differs."""
    stored = state.get("spec_identity")
    hint = "resume with the spec and overrides the run was started with (its copy is the run's spec.yaml), or start a new run with another `--out`."
    if isinstance(stored, dict):
        diffs = spec_differences(stored, identity)
        if diffs:
            more = f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""
            raise UnigenError.one("C001", f"checkpoint `{path}` was written for a different spec: " + "; ".join(diffs[:6]) + more + ".", (), hint, exit_code=1)
    elif state.get("spec_digest") != digest:
        raise UnigenError.one("C001", f"checkpoint `{path}` was written for a different spec (digest {state.get('spec_digest')}, this spec {digest}); it does not record what differs.", (), hint, exit_code=1)
    if int(state["step"]) > steps:
        raise UnigenError.one("C001", f"checkpoint `{path}` is at step {state['step']}, past `train.steps` = {steps}.", ("train", "steps"), f"resume with `--steps` of at least {state['step']}.", exit_code=1)
