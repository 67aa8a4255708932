"""`--resume auto|PATH`: which run directory a resumed run continues in, from which checkpoint,
and whether that checkpoint was written for this spec (C001 says what differs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unigen.errors import UnigenError
from unigen.runs.checkpoints import newest_checkpoint, resolve_checkpoint
from unigen.runs.rundir import check_run_files, spec_differences, spec_identity


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
        if (run / "checkpoints").is_dir() and not any((run / "checkpoints").glob("step_*.pt")):
            # A run stopped before its first checkpoint: the same command starts it afresh there.
            return Resume(run, True, warnings=[f"`{run}` holds no checkpoint yet (its run stopped before the first one): the run starts afresh there."])
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


def check_same_spec(run: Path, identity: dict[str, Any]) -> None:
    """R002 unless the run directory was started for this spec (its spec.resolved.yaml), so that
    starting afresh in it writes over nothing of another model's."""
    check_run_files(run)  # a fifo in place of spec.resolved.yaml would block the read
    try:
        stored = yaml.safe_load((run / "spec.resolved.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return  # stopped before even its spec files were written
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UnigenError.one("R002", f"`{run}` holds no checkpoint and its spec.resolved.yaml cannot be read ({type(exc).__name__}), so it is not known to be this spec's run.", (), "train into another `--out`, or delete the directory.") from None
    diffs = spec_differences(spec_identity(stored) if isinstance(stored, dict) else {}, identity, names=("run", "spec"))
    if diffs:
        raise UnigenError.one("R002", f"`{run}` holds no checkpoint, but it was started for a different spec: " + "; ".join(diffs[:6]) + ("; and more" if len(diffs) > 6 else "") + "; unigen never writes over another run.", (), "train into another `--out`, or resume with the spec the run was started with (its spec.yaml).")


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
