"""`ema:` on a network: an exponential moving average of its parameters, updated after each of
its optimizer steps, used for samples and metrics, stored in checkpoints, resumed bit for bit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from test_resume import assert_equal, final_state, loss_rows

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.checkpoints import export_weights
from unigen.runs.driver import train_run
from unigen.training.seeds import METRICS_SEED_OFFSET
from unigen.training.trainer import Trainer

GAN = ROOT / "specs" / "gan-ring.yaml"
SMALL = ["train.log_every=3", "train.eval_samples=300", "train.sample_every=4", "networks.generator.hidden=[32, 32]", "networks.discriminator.hidden=[32, 32]", "train.batch_size=64", "train.device=cpu"]
EMA = [*SMALL, "networks.generator.ema=0.9"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


def params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_average_follows_the_generator_updates(registry):
    program = compile_file(GAN, [*EMA, "phases.generator.repeats=2"], registry).program
    assert "(ema 0.9)" in str(program)
    trainer = Trainer(program)
    avg_net, live = trainer.model.averages.copies["generator"], trainer.model.nets["generator"]
    assert "discriminator" not in trainer.model.averages.copies  # only where asked
    assert all(not p.requires_grad for p in avg_net.parameters())
    expected = params(live)  # the average starts at the initial weights
    seen = []

    # Follow every update of the generator: avg <- 0.9 avg + 0.1 live, after each optimizer step.
    opt = next(r.optimizer for r in trainer.runners if r.plan.name == "generator")
    opt.register_step_post_hook(lambda *_: seen.append(params(live)))
    for _ in range(3):
        trainer.step()
    assert len(seen) == 6  # 3 steps x 2 repeats
    for w in seen:
        expected = [0.9 * e + 0.1 * x for e, x in zip(expected, w)]
    got = params(avg_net)
    assert max((a - b).abs().max().item() for a, b in zip(got, expected)) < 1e-6
    assert max((a - b).abs().max().item() for a, b in zip(got, params(live))) > 1e-5  # it lags the live weights


def test_metrics_use_the_average(registry):
    program = compile_file(GAN, EMA, registry).program
    trainer = Trainer(program)
    for _ in range(20):
        trainer.step()
    ours = trainer.evaluate()
    model, metric = trainer.model, registry.get("metrics", "modes")

    def direct() -> dict[str, float]:  # the metric on whatever `nets["generator"]` holds, same noise as `evaluate`
        model.eval()
        with torch.no_grad(), trainer.fork_rng(program.train.seed + METRICS_SEED_OFFSET):
            out = metric.compute(model)
        model.train()
        return out

    plain = direct()
    live = params(model.nets["generator"])
    with torch.no_grad():
        for p, a in zip(model.nets["generator"].parameters(), model.averages.copies["generator"].parameters()):
            p.copy_(a)
    hand = direct()
    with torch.no_grad():
        for p, w in zip(model.nets["generator"].parameters(), live):
            p.copy_(w)
    assert ours.keys() == hand.keys() and all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(ours.values(), [hand[k] for k in ours]))  # hq_spread: NaN without a high-quality sample
    assert ours["mode_kl"] != plain["mode_kl"]  # the live generator gives other samples
    assert model.nets["generator"] is not model.averages.copies["generator"]  # swapped back


def test_ema_resume_is_bit_exact_and_checkpointed(tmp_path: Path, registry):
    whole = train_run(GAN, EMA, out=str(tmp_path / "whole"), steps=10, registry=registry, quiet=True)
    part = train_run(GAN, EMA, out=str(tmp_path / "part"), steps=4, registry=registry, quiet=True)
    assert set(final_state(part)["ema"]) == {k for k in final_state(part)["nets"] if k.startswith("generator.")}
    train_run(GAN, EMA, out=str(part), steps=10, registry=registry, quiet=True, resume="auto")
    a, b = final_state(whole), final_state(part)
    for key in ("nets", "ema", "optimizers", "batches", "rng"):
        assert_equal(a[key], b[key], key)
    assert loss_rows(whole) == {k: v for k, v in loss_rows(part).items() if k != "4"}
    # `unigen export` writes the averaged weights beside the live ones.
    _, _, tensors = export_weights(whole)
    assert torch.equal(tensors["ema.generator.body.0.weight"], a["ema"]["generator.body.0.weight"])
    assert torch.equal(tensors["generator.body.0.weight"], a["nets"]["generator.body.0.weight"])
    ma = json.loads((whole / "summary.json").read_text())["metrics"]
    assert ma == json.loads((part / "summary.json").read_text())["metrics"]
    # A checkpoint without an average is refused for a spec that asks for one: the specs differ.
    plain = train_run(GAN, SMALL, out=str(tmp_path / "plain"), steps=2, registry=registry, quiet=True)
    with pytest.raises(UnigenError) as info:
        train_run(GAN, EMA, out=str(tmp_path / "other"), steps=4, registry=registry, quiet=True, resume=str(plain))
    assert info.value.diagnostics[0].code == "C001" and "networks.generator.ema" in str(info.value)


def test_ema_decay_out_of_range_is_an_error(registry):
    with pytest.raises(UnigenError) as info:
        compile_file(GAN, ["networks.generator.ema=1.5"], registry)
    d = info.value.diagnostics[0]
    assert d.code == "S002" and d.path == ("networks", "generator", "ema")
