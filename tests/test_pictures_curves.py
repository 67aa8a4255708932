"""`unigen plot`: loss panels with units and a discriminator's chance level, no panel for a
series that never changes (a note instead), several runs overlaid."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT

from unigen.runs.driver import train_run
from unigen.tools import plots
from unigen.tools.plots import chance_level, load_curves, panels, plot_runs, unit_of

RING = ["data.n_train=2000", "data.n_test=500", "train.eval_samples=300", "train.log_every=2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gans(tmp_path_factory, registry) -> list[Path]:
    root = tmp_path_factory.mktemp("curves")
    spec = ROOT / "specs" / "gan-ring.yaml"
    return [train_run(spec, [*RING, f"train.seed={seed}"], out=str(root / f"gan{seed}"), steps=6, device="cpu", registry=registry, quiet=True) for seed in (0, 1)]


def link(registry, objective: str, note: str = "") -> SimpleNamespace:
    kind = registry.get("objectives", objective)
    return SimpleNamespace(kind=kind, options=kind.Options() if kind.Options else None, note=note)


def test_chance_level_is_the_best_loss_of_a_discriminator_that_cannot_tell_the_sides_apart(registry):
    assert chance_level(link(registry, "nonsaturating")) == pytest.approx(math.log(4), abs=1e-5)  # two BCE terms, ln 2 each
    assert chance_level(link(registry, "minimax")) == pytest.approx(math.log(4), abs=1e-5)
    assert chance_level(link(registry, "least_squares")) == pytest.approx(0.25, abs=1e-5)  # D = 1/2 on both sides
    assert chance_level(link(registry, "hinge")) == pytest.approx(2.0, abs=1e-5)
    assert chance_level(link(registry, "wasserstein")) is None  # a critic: unbounded below, no chance level
    assert chance_level(link(registry, "nonsaturating", note="also tells which `c` made each fake")) is None


def test_units_come_from_what_a_loss_says_of_itself():
    assert unit_of("-E_q[log p(x|z)] + KL(q(z|x) || p(z))") == "nats"
    assert unit_of("nonsaturating D-loss of discriminator", "D: -log D(r) - log(1 - D(f))") == "nats"
    assert unit_of("E_q||x - decoder(z)||^2") is None
    assert unit_of("mean |p.aba - p.a| (means over elements)") is None


def figures_of(monkeypatch) -> dict[str, object]:
    figures: dict[str, object] = {}

    def keep(fig, out):
        figures[Path(out).name] = fig
        return Path(out)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_a_gan_s_losses_have_units_a_chance_line_and_no_panel_for_a_constant_rate(gans, registry, monkeypatch, tmp_path):
    figures = figures_of(monkeypatch)
    plotted = plot_runs([gans[0]], tmp_path, registry)
    assert plotted.panels["losses"] == ["phase discriminator", "phase generator"]  # no panel for the learning rates
    assert {"lr/discriminator", "lr/generator"} <= set(plotted.constants)
    assert "lr/discriminator = 0.0002" in plotted.note
    d, g = figures["losses.png"].axes[:2]
    assert (d.get_xlabel(), d.get_ylabel()) == ("step", "loss (nats)") and g.get_ylabel() == "loss (nats)"
    dashed = [line for line in d.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == pytest.approx([math.log(4)] * 2, abs=1e-5)
    assert not [line for line in g.get_lines() if line.get_linestyle() == "--"]  # the generator's loss has none
    note = [t.get_text() for t in figures["losses.png"].texts]
    assert any("constant, so no panel" in t for t in note)


def test_several_runs_are_overlaid_with_a_legend(gans, registry, monkeypatch, tmp_path, cli):
    figures = figures_of(monkeypatch)
    plotted = plot_runs(gans, tmp_path / "both", registry)
    assert plotted.panels["losses"] == ["phase discriminator", "phase generator"]
    for ax in figures["losses.png"].axes[:2]:
        assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"gan0", "gan1"}
        colours = {line.get_color() for line in ax.get_lines() if line.get_label() in ("gan0", "gan1")}
        assert len(colours) == 2
    monkeypatch.undo()
    code, out, err = cli("plot", *gans, "-o", tmp_path / "cli")
    assert code == 0, err
    assert (tmp_path / "cli" / "losses.png").read_bytes()[:4] == b"\x89PNG" and "constant, so no panel" in out
    code, _, err = cli("plot", *gans)
    assert code == 2 and "S005" in err and "-o DIR" in err


def test_constant_series_get_a_note_not_a_panel(tmp_path, registry):
    run = tmp_path / "run"
    run.mkdir()
    rows = ["step,time_s,train/loss,lr/train,total,score", "10,1,3.0,0.1,8,0.5", "20,2,2.5,0.1,8,0.7", "30,3,2.0,0.1,8,0.9"]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    curves = load_curves(run, registry=registry)  # no spec here: curves without units
    losses, metrics = panels([curves])
    assert losses.groups == {"phase train": ["train/loss"]} and losses.constants == ["lr/train"]
    assert metrics.groups == {"score": ["score"]} and metrics.constants == ["total"]
    plotted = plot_runs([run], None, registry)
    assert [p.name for p in plotted.paths] == ["losses.png", "metrics.png"]
    assert plotted.note == "constant, so no panel: lr/train = 0.1; total = 8"
