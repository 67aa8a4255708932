"""Training health warnings: a discriminator that wins outright and generated samples without
diversity are reported once each, on stderr, in train.log and in summary.json, judged by what
terms expose (`Bound.health`) and by `Model.generate`, never by family names."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from torch import nn

from unigen import hookimpl
from unigen.api.kinds import Arch, Bound, Options, Term
from unigen.api.registry import load_registry
from unigen.compiler.compiler import compile_file
from unigen.runs.driver import train_run
from unigen.training.trainer import HEALTH_PATIENCE, Trainer

GAN = ROOT / "specs" / "gan-ring.yaml"
VAE = ROOT / "specs" / "vae-digits.yaml"
MLP_GENERATOR = "generator: {arch: mlp, hidden: [128, 128], activation: relu}"


def constant_gan(tmp_path: Path, value: float = 0.0) -> Path:
    """gan-ring with a generator that maps all noise to one point."""
    path = tmp_path / "constant-gan.yaml"
    text = GAN.read_text()
    assert MLP_GENERATOR in text
    path.write_text(text.replace(MLP_GENERATOR, f"generator: {{arch: constant, value: {value}}}"))
    return path


class ConstantOptions(Options):
    value: float = 0.0


class Constant(nn.Module):
    """Ignores its input: every sample is the same point (a generator collapsed to one mode)."""

    def __init__(self, output: tuple[int, ...], value: float) -> None:
        super().__init__()
        self.point = nn.Parameter(torch.full(output, value))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.point.expand(len(inputs[0]), *self.point.shape)


class ConstantArch(Arch):
    Options = ConstantOptions

    def build(self, inputs, output, options):
        return Constant(tuple(output), options.value)


class Sick(Term):
    """A term whose health check finds the value 1 sick (the loss is the step's count mod 2)."""

    def bind(self, site):
        calls = [0]

        def loss(ctx):
            calls[0] += 1
            return torch.tensor(float(calls[0] % 2))

        return Bound(loss, "1 on odd calls, 0 on even", health=lambda v: "it is odd; expected even." if float(v) == 1 else None)


class HealthPlugin:
    __name__ = "health_test"

    @hookimpl
    def unigen_register_networks(self, register):
        register("constant", ConstantArch())

    @hookimpl
    def unigen_register_terms(self, register):
        register("sick", Sick())


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


@pytest.fixture(scope="module")
def reg():
    return load_registry(extra=[HealthPlugin()])


def d_term(program, objective: str):
    (ref,) = program.phases[0].terms
    assert ref.term == "adversarial.d" and ref.bound.health is not None
    return ref.bound.health


@pytest.mark.parametrize(("objective", "chance"), [("nonsaturating", 2 * math.log(2)), ("hinge", 2.0), ("least_squares", 0.5), ("minimax", 2 * math.log(2))])
def test_health_d_loss_near_its_floor_is_a_collapse(registry, objective: str, chance: float):
    program = compile_file(GAN, [f"edges.1.objective={objective}"], registry=registry).program
    health = d_term(program, objective)
    assert health(torch.tensor(chance)) is None
    assert health(torch.tensor(0.5 * chance)) is None
    assert health(torch.tensor(math.nan)) is None  # non-finite losses have their own policy
    text = health(torch.tensor(0.001 * chance))
    assert text is not None and "discriminator `discriminator`" in text and "collapse" in text and "Hint:" in text
    assert f"{chance:.3g} at chance" in text


def test_health_streak_is_needed_and_each_kind_is_reported_once(tmp_path: Path, reg):
    """A symptom must last HEALTH_PATIENCE logged steps in a row; it is reported once."""
    path = tmp_path / "sick.yaml"
    path.write_text(GAN.read_text().replace("terms: [adversarial.g]", "terms: [adversarial.g, sick]"))
    program = compile_file(path, ["train.device=cpu", "train.batch_size=16", "networks.generator.hidden=[8]", "networks.discriminator.hidden=[8]"], registry=reg).program
    trainer = Trainer(program)
    trainer.health.monitors = []  # this test is about the streak of a term's warning
    found = []
    for _ in range(2 * HEALTH_PATIENCE):  # sick every other call: never HEALTH_PATIENCE in a row
        trainer.step()
        found += trainer.check_health()
    assert found == []
    trainer.step()  # an odd call; two calls between checks from now on: the checks see odd calls only
    found += trainer.check_health()
    for _ in range(3 * HEALTH_PATIENCE):
        trainer.step()
        trainer.step()
        found += trainer.check_health()
    assert [w["kind"] for w in found] == ["generator/sick"]
    step = found[0]["step"]
    assert found[0]["message"] == f"phase `generator`, term `sick`: it is odd; expected even (at {HEALTH_PATIENCE} logged steps in a row, up to step {step})."
    assert trainer.health_warnings == found
    # The streaks and the warnings given travel with checkpoints.
    again = Trainer(program)
    again.load_state_dict(trainer.state_dict())
    assert again.health_warnings == found


def test_health_diversity_of_a_collapsed_generator(tmp_path: Path, reg):
    program = compile_file(constant_gan(tmp_path), ["train.device=cpu", "train.batch_size=16", "networks.discriminator.hidden=[8]"], registry=reg).program
    trainer = Trainer(program)
    [monitor] = trainer.health.monitors  # the generator side's term watches the samples' spread
    found = trainer.health.run_monitor(monitor)
    assert found is not None and found[0] == "diversity/x"
    assert "generated samples of `x` have lost their diversity" in found[1] and "std across a batch of 256 is 0" in found[1]
    healthy = Trainer(compile_file(GAN, ["train.device=cpu", "networks.generator.hidden=[8]"], registry=reg).program)
    assert healthy.health.run_monitor(healthy.health.monitors[0]) is None
    before = torch.random.get_rng_state()
    healthy.health.run_monitor(healthy.health.monitors[0])
    assert torch.equal(before, torch.random.get_rng_state())  # the check draws its own noise


def test_health_run_reports_collapse_and_diversity_once_each(tmp_path: Path, reg, capsys):
    """A generator stuck at one point far from the ring (a constant, learning at lr 1e-9) and a
    discriminator free to win: both warnings, once each, on stderr, in train.log and summary.json."""
    opts = [
        "networks.discriminator.hidden=[16]", "edges.1.options.r1=0", "phases.generator.optim.lr=1e-9",
        "phases.discriminator.optim.lr=0.05", "train.batch_size=64", "train.log_every=5", "train.eval_samples=100",
    ]
    run = train_run(constant_gan(tmp_path, 5.0), opts, out=str(tmp_path / "run"), steps=120, device="cpu", registry=reg, quiet=True)
    err = capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    kinds = [w["kind"] for w in summary["warnings"]]
    assert sorted(kinds) == ["discriminator/adversarial.d@adv_x", "diversity/x"], summary["warnings"]
    log = (run / "train.log").read_text()
    for w in summary["warnings"]:
        assert err.count(w["message"]) == 1 and log.count(w["message"]) == 1
        assert w["step"] % 5 == 0
    assert err.count("warning: phase `discriminator`, term `adversarial.d@adv_x`: the discriminator `discriminator` tells real (q.x) from fake (p.x) almost perfectly") == 1
    assert err.count("warning: generated samples of `x` have lost their diversity") == 1


def test_health_healthy_runs_warn_of_nothing(tmp_path: Path, registry, capsys):
    gan = train_run(GAN, ["networks.generator.hidden=[32]", "networks.discriminator.hidden=[32]", "train.batch_size=64", "train.log_every=2", "train.eval_samples=100"], out=str(tmp_path / "gan"), steps=12, device="cpu", registry=registry, quiet=True)
    vae = train_run(VAE, ["networks.encoder.hidden=[64]", "networks.decoder.hidden=[64]", "train.batch_size=64", "train.log_every=2"], out=str(tmp_path / "vae"), steps=12, device="cpu", registry=registry, quiet=True)
    for run in (gan, vae):
        assert json.loads((run / "summary.json").read_text())["warnings"] == []
    assert "warning" not in capsys.readouterr().err
