"""Non-finite losses: every step is checked, and `train.on_nonfinite` says what happens.

A test-only term, registered through a plugin object passed to `load_registry(extra=...)`,
adds 0 to its phase's loss, or NaN (or inf) on the calls it is told to: the step at which a
phase loss goes bad is chosen exactly.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from pydantic import Field

from unigen import hookimpl
from unigen.api.kinds import Bound, Options, Term
from unigen.api.registry import load_registry
from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.checkpoints import load_checkpoint
from unigen.runs.driver import train_run
from unigen.training.nonfinite import describe_nonfinite
from unigen.training.trainer import NonFiniteLoss, Trainer


class PoisonOptions(Options):
    at: list[int] = Field(default_factory=list, description="1-based calls that return `value`")
    after: int = Field(0, description="every call after this one returns `value` too (0: none)")
    value: str = "nan"  # a spec holds finite numbers only: the poison is named, e.g. "inf"


class Poison(Term):
    """0, or `value` on chosen calls: a NaN injected at a chosen step."""

    Options = PoisonOptions

    def bind(self, site):
        opts, calls = site.options, [0]

        def loss(ctx):
            calls[0] += 1
            bad = calls[0] in opts.at or (opts.after and calls[0] > opts.after)
            return torch.tensor(float(opts.value) if bad else 0.0)

        return Bound(loss, "0, or a chosen non-finite value", traces=frozenset(), reaches=frozenset())


class PoisonPlugin:
    __name__ = "poison_test"

    @hookimpl
    def unigen_register_terms(self, register):
        register("poison", Poison())


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


@pytest.fixture(scope="module")
def reg():
    return load_registry(extra=[PoisonPlugin()])


SPEC = (ROOT / "specs" / "vae-digits.yaml").read_text()
SMALL = ["train.device=cpu", "train.eval_samples=100", "networks.encoder.hidden=[32]", "networks.decoder.hidden=[32]", "train.batch_size=32"]


@pytest.fixture
def poisoned(tmp_path: Path):
    """The VAE spec with `poison` added to its one phase (one call per training step)."""

    def make(policy: str, **opts) -> Path:
        text = SPEC.replace("terms: [elbo]}", f"terms: [elbo, {{term: poison, options: {json.dumps(opts)}}}]}}")
        assert text != SPEC
        path = tmp_path / f"poisoned-{policy}.yaml"
        path.write_text(text + f"  on_nonfinite: {policy}\n")
        return path

    return make


def run(path: Path, reg, out: Path, steps: int = 8, extra: tuple[str, ...] = ()) -> Path:
    return train_run(path, [*SMALL, "train.log_every=2", *extra], out=str(out), steps=steps, registry=reg, quiet=True)


def params(trainer_or_state) -> dict[str, torch.Tensor]:
    if isinstance(trainer_or_state, Trainer):
        return {k: v.detach().clone() for k, v in trainer_or_state.model.nets.state_dict().items()}
    return trainer_or_state["nets"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nonfinite_raise_names_phase_term_and_step_and_keeps_last_good_state(poisoned, reg, tmp_path: Path, capsys):
    with pytest.raises(UnigenError) as info:
        run(poisoned("raise", at=[5]), reg, tmp_path / "bad")
    err = info.value
    assert err.exit_code == 1 and err.diagnostics[0].code == "R001"
    text = str(err)
    assert "phase `elbo`" in text and "term `poison` is nan" in text and "at step 5" in text
    assert "--resume auto" in text and "on_nonfinite" in text
    # The last good state is the one logged at step 4, saved and pointed at by `last`.
    ckpt = tmp_path / "bad" / "checkpoints"
    assert (ckpt / "last").read_text().strip() == "step_00000004.pt"
    state = load_checkpoint(ckpt / "step_00000004.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["nets"].values())
    # ... and it is exactly the state after 4 clean steps.
    clean = run(poisoned("raise", at=[999]), reg, tmp_path / "clean", steps=4)
    assert same(state["nets"], load_checkpoint(clean / "checkpoints" / "step_00000004.pt")["nets"])
    assert "non-finite loss" in (tmp_path / "bad" / "train.log").read_text() or "stopped" in (tmp_path / "bad" / "train.log").read_text()
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_nonfinite_raise_exits_1_through_the_cli(poisoned, reg, tmp_path: Path, monkeypatch, cli):
    import unigen.cli.common

    monkeypatch.setattr(unigen.cli.common, "registry", lambda: reg)
    code, _, err = cli("compile-and-train", poisoned("raise", at=[3], value="inf"), *SMALL, "--out", tmp_path / "r", "--steps", "6", "--quiet")
    assert code == 1
    assert err.startswith("R001 ") and "term `poison` is inf at step 3" in err and "Traceback" not in err


@pytest.mark.parametrize("each_phase", [True, False], ids=["checked-at-once", "flag-per-step"])
def test_nonfinite_every_step_is_checked(poisoned, reg, each_phase: bool):
    """On the CPU each phase loss is read at once; on a GPU the finiteness flags of a step are
    read once at its end. Both catch a NaN at the step it happens, whatever `log_every` is."""
    program = compile_file(poisoned("raise", at=[3]), [*SMALL, "train.log_every=1000"], reg).program
    trainer = Trainer(program)
    trainer.checks.each_phase = each_phase
    trainer.step()
    trainer.step()
    with pytest.raises(NonFiniteLoss) as info:
        trainer.step()
    assert info.value.event["step"] == 3 and info.value.event["phase"] == "elbo"
    assert [label for label, _ in info.value.event["terms"]] == ["poison"]
    assert trainer.step_count == 2


def test_nonfinite_flags_kept_on_the_device_are_read_where_a_good_state_is_taken(poisoned, reg):
    """One process on a GPU reads the flags at logged steps (here every 4th), not every step:
    the NaN of step 3 surfaces at step 4, still naming step 3, its phase and its term."""
    program = compile_file(poisoned("raise", at=[3]), [*SMALL, "train.log_every=4"], reg).program
    trainer = Trainer(program)
    trainer.checks.each_phase, trainer.checks.deferred = False, True
    for _ in range(3):
        trainer.step()
    assert trainer.step_count == 3 and len(trainer.checks.pending) == 3
    with pytest.raises(NonFiniteLoss) as info:
        trainer.step()
    assert info.value.event["step"] == 3 and info.value.event["phase"] == "elbo"
    assert [label for label, _ in info.value.event["terms"]] == ["poison"]
    assert trainer.checks.pending == []
    trainer.check_pending()  # nothing left to read: no error


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("policy", ["raise", "rollback"])
def test_cuda_nonfinite_policies_with_flags_on_the_device(poisoned, reg, tmp_path: Path, policy: str):
    path = poisoned(policy, at=[5])
    if policy == "raise":
        with pytest.raises(UnigenError) as info:
            run(path, reg, tmp_path / policy, extra=("train.device=cuda",))
        assert info.value.diagnostics[0].code == "R001" and "at step 5" in str(info.value)
        assert (tmp_path / policy / "checkpoints" / "last").read_text().strip() == "step_00000004.pt"
    else:
        out = run(path, reg, tmp_path / policy, extra=("train.device=cuda",))
        assert json.loads((out / "summary.json").read_text())["steps"] == 8


def test_nonfinite_skip_leaves_that_update_out(poisoned, reg):
    program = compile_file(poisoned("skip", at=[3]), SMALL, reg).program
    trainer = Trainer(program)
    seen = []
    trainer.on_skip = seen.append
    trainer.step()
    trainer.step()
    before_params = params(trainer)
    before_optim = {k: v.clone() for k, v in trainer.runners[0].optimizer.state_dict()["state"][0].items()}
    trainer.step()  # poisoned: no backward, no optimizer step
    assert trainer.step_count == 3 and trainer.nonfinite["skipped"] == 1
    assert same(before_params, params(trainer))
    after_optim = trainer.runners[0].optimizer.state_dict()["state"][0]
    assert all(torch.equal(before_optim[k], after_optim[k]) for k in before_optim)  # Adam's step count too
    assert seen and seen[0]["step"] == 3 and seen[0]["terms"][0][0] == "poison"
    trainer.step()
    assert not same(before_params, params(trainer))


def test_nonfinite_skip_run_goes_on_and_counts(poisoned, reg, tmp_path: Path, capsys):
    out = run(poisoned("skip", at=[3, 5]), reg, tmp_path / "r")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8
    assert summary["nonfinite"] == {"policy": "skip", "skipped": 2, "rolled_back": 0}
    log = (out / "train.log").read_text()
    assert log.count("update is skipped") == 2 and "term `poison` is nan at step 3" in log
    assert "update is skipped" in capsys.readouterr().err
    state = load_checkpoint(out / "checkpoints" / "step_00000008.pt")
    assert all(torch.isfinite(v).all() for v in state["nets"].values())


def test_nonfinite_rollback_restores_last_good_state_and_goes_on(poisoned, reg, tmp_path: Path, capsys):
    out = run(poisoned("rollback", at=[5]), reg, tmp_path / "r")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8
    assert summary["nonfinite"] == {"policy": "rollback", "skipped": 0, "rolled_back": 1}
    assert "rolled back to step 4" in (out / "train.log").read_text()
    assert "rolled back to step 4" in capsys.readouterr().err
    steps = [int(r["step"]) for r in csv.DictReader((out / "metrics.csv").open())]
    assert steps == [2, 4, 6, 8]  # the replayed steps leave no second row
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert all(math.isfinite(float(v)) for r in rows for k, v in r.items() if k.startswith("elbo/"))
    state = load_checkpoint(out / "checkpoints" / "step_00000008.pt")
    assert state["nonfinite"]["rolled_back"] == 1
    assert all(torch.isfinite(v).all() for v in state["nets"].values())


def test_nonfinite_rollback_returns_exactly_to_the_snapshot(poisoned, reg):
    program = compile_file(poisoned("rollback", at=[3]), SMALL, reg).program
    trainer = Trainer(program)
    trainer.step()
    good = trainer.snapshot()
    saved = params(trainer)
    trainer.step()
    with pytest.raises(NonFiniteLoss):
        trainer.step()
    trainer.rollback(good)
    assert trainer.step_count == 1 and same(saved, params(trainer))
    trainer.step()
    trainer.rollback(good)  # the snapshot was not changed by the steps after the first rollback
    assert same(saved, params(trainer)) and trainer.nonfinite["rolled_back"] == 2


def test_nonfinite_rollback_gives_up_when_it_cannot_get_past(poisoned, reg, tmp_path: Path, capsys):
    with pytest.raises(UnigenError) as info:
        run(poisoned("rollback", after=4), reg, tmp_path / "r")
    assert info.value.diagnostics[0].code == "R001" and info.value.exit_code == 1
    assert "3 rollbacks to step 4" in str(info.value)
    assert (tmp_path / "r" / "checkpoints" / "last").read_text().strip() == "step_00000004.pt"


# A finite loss whose first update overflows the weights: gradients of about 1e10 times a step of 1e30.
HUGE_LR = ["train.optim={kind: sgd, lr: 1e30}", "phases.0.terms.0={term: elbo, weight: 1e10}"]


def test_nonfinite_parameters_after_a_finite_loss_are_caught_by_raise(poisoned, reg, tmp_path: Path):
    with pytest.raises(UnigenError) as err:
        run(poisoned("raise"), reg, tmp_path / "r", extra=tuple(HUGE_LR))
    (d,) = err.value.diagnostics
    assert d.code == "R001" and "its update made the parameters of" in d.message and "non-finite at step 1 (the loss was finite)" in d.message
    saved = sorted((tmp_path / "r" / "checkpoints").glob("step_*.pt"))
    assert saved and all(torch.isfinite(v).all() for v in load_checkpoint(saved[-1])["nets"].values())  # the good state, not the broken one


def test_nonfinite_parameters_after_an_update_are_undone_by_skip(poisoned, reg):
    program = compile_file(poisoned("skip"), [*SMALL, *HUGE_LR], reg).program
    trainer = Trainer(program)
    seen = []
    trainer.on_skip = seen.append
    before = params(trainer)
    trainer.step()
    assert trainer.nonfinite["skipped"] == 1 and same(before, params(trainer))
    assert seen[0]["networks"] and set(seen[0]["networks"]) <= {"encoder", "decoder"} and "made the parameters of" in describe_nonfinite(seen[0])
