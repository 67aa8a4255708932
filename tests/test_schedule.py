"""`lr_end`/`lr_steps` on a phase's optimizer: a half-cosine decay of the learning rate, by
optimizer update, kept in the optimizer's state so a resumed run continues it."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.training.trainer import Trainer

GAN = ROOT / "specs" / "gan-ring.yaml"


def cosine(t: int, start: float, end: float, steps: int) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * min(t, steps) / steps)) / 2


@pytest.mark.parametrize("kind", ["adam", "sgd", "rmsprop"])
def test_learning_rate_follows_the_half_cosine(registry, kind):
    make = registry.get("optimizers", kind)
    p = torch.nn.Parameter(torch.ones(3))
    opt = make([p], lr=0.1, lr_end=0.001, lr_steps=4)
    used = []
    for _ in range(6):
        p.grad = torch.ones(3)
        opt.step()
        used.append(opt.param_groups[0]["lr"])
    assert used == pytest.approx([cosine(t, 0.1, 0.001, 4) for t in range(6)], abs=1e-12)
    assert used[0] == pytest.approx(0.1) and used[-1] == pytest.approx(0.001)
    # The count travels with the optimizer's state: a fresh optimizer loading it goes on.
    fresh = make([torch.nn.Parameter(torch.ones(3))], lr=0.1, lr_end=0.001, lr_steps=4)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[0]["schedule_t"] == 6


def test_phase_schedule_counts_repeats(registry):
    program = compile_file(GAN, ["train.device=cpu", "train.batch_size=32", "phases.discriminator.repeats=2", "phases.discriminator.optim.lr_end=1e-5", "phases.discriminator.optim.lr_steps=10"], registry).program
    assert "lr_end=1e-05, lr_steps=10" in str(program)
    trainer = Trainer(program)
    for _ in range(3):
        trainer.step()
    disc, gen = trainer.runners
    assert disc.optimizer.param_groups[0]["lr"] == pytest.approx(cosine(5, 2e-4, 1e-5, 10))
    assert gen.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)


def test_bad_schedule_option_is_reported(registry):
    with pytest.raises(UnigenError) as info:
        compile_file(GAN, ["phases.discriminator.optim.lr_end=-1"], registry)
    assert info.value.diagnostics[0].code == "G016" and "lr_end" in str(info.value)
