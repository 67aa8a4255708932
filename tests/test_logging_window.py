"""Logged losses are each term's mean over the logging window (not the last batch); the
learning rate of each phase is logged beside them; the last step has one row."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.runs.driver import train_run
from unigen.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
GAN = ROOT / "specs" / "gan-ring.yaml"
VAE = ROOT / "specs" / "vae-digits.yaml"
SMALL = ["data.n_train=512", "data.n_test=256", "train.batch_size=32", "train.eval_samples=200"]


def test_losses_are_window_means_of_finite_values_and_reset(registry):
    trainer = Trainer(compile_file(GAN, ["train.device=cpu", *SMALL], registry).program)
    seen: dict[str, list[float]] = {}
    for _ in range(5):
        trainer.step()
        for r in trainer.runners:
            for label, value in r.last.items():
                seen.setdefault(f"{r.plan.name}/{label}", []).append(float(value))
    means = trainer.losses()
    assert set(means) == set(seen) and len(means) == 2
    for key, values in seen.items():
        assert len(set(values)) == 5  # the batches differ, so the mean is not any one of them
        assert means[key] == pytest.approx(sum(values) / 5, rel=1e-6)
    # a non-finite value (a skipped step) does not count
    runner = trainer.runners[0]
    label = next(iter(runner.last))
    runner.window.setdefault(label, []).append(torch.tensor(math.nan))
    assert trainer.losses()[f"{runner.plan.name}/{label}"] == pytest.approx(means[f"{runner.plan.name}/{label}"], rel=1e-6)
    trainer.reset_window()
    trainer.step()
    after = trainer.losses()
    for r in trainer.runners:
        for label, value in r.last.items():
            assert after[f"{r.plan.name}/{label}"] == float(value)  # a window of one step


def test_a_long_window_folds_into_a_sum_with_the_same_mean(registry, monkeypatch):
    from unigen.training import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "WINDOW_FOLD", 3)
    trainer = Trainer(compile_file(GAN, ["train.device=cpu", *SMALL], registry).program)
    values = []
    for _ in range(7):
        trainer.step()
        values.append(float(trainer.runners[0].last[next(iter(trainer.runners[0].last))]))
    runner = trainer.runners[0]
    label = next(iter(runner.last))
    assert len(runner.window[label]) == 1 and int(runner.folded[label][1]) == 6  # two folds of 3, one value since
    assert trainer.losses()[f"{runner.plan.name}/{label}"] == pytest.approx(sum(values) / 7, rel=1e-6)


def test_metrics_csv_logs_window_means_and_learning_rates_and_the_last_step_once(registry, tmp_path):
    overrides = ["train.log_every=4", "+train.optim.lr_end=1e-4", "+train.optim.lr_steps=8", "train.eval_every=0"]
    run = train_run(VAE, overrides, out=str(tmp_path / "run"), steps=8, device="cpu", registry=registry, quiet=True)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["4", "8"]
    # lr after 4 of 8 updates of the half-cosine from 1e-3 to 1e-4, and after all 8
    lr4 = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * 3 / 8))  # the 4th update used t = 3
    assert float(rows[0]["lr/elbo"]) == pytest.approx(lr4, rel=1e-6)
    assert float(rows[1]["lr/elbo"]) < float(rows[0]["lr/elbo"])
    assert "test_nelbo" in rows[1] and rows[1]["test_nelbo"] and not rows[0].get("test_nelbo")
