"""Improved-GAN techniques (Salimans et al. 2016) against their formulas written by hand:
feature matching, one-sided label smoothing, historical averaging (float64, fixed noise)."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from test_objectives import SEED, N, build, close, close_grads, hand_fake, ours

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.training.model import StepContext

GAN = ROOT / "specs" / "gan-ring.yaml"


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_feature_matching_matches_hand_formula(registry):
    program, model, x = build(registry, "nonsaturating", ["phases.generator.terms=[feature_matching]"])
    assert "||E f(real) - E f(fake)||^2" in str(program) and program.phases[1].needs_data
    disc = model.nets["discriminator"]

    def hand():
        # the last hidden layer of the MLP discriminator: Linear, ReLU, Linear, ReLU
        def f(t):
            return disc.body[:4](t)

        return (f(x).mean(0) - f(hand_fake(model)).mean(0)).pow(2).sum()

    def term():
        torch.manual_seed(SEED)
        return program.phases[1].terms[0].bound.loss(StepContext(model, {"x": x}, N))

    gparams = list(model.nets["generator"].parameters())
    close(term(), hand())
    assert hand().item() > 1e-6
    close_grads(torch.autograd.grad(term(), gparams), torch.autograd.grad(hand(), gparams))


def test_one_sided_label_smoothing(registry):
    a = 0.9
    program, model, x = build(registry, "nonsaturating", [f"edges.1.options.real_label={a}"])
    disc = model.nets["discriminator"]
    loss = ours(program, model, 0, x)
    r, f = disc(x), disc(hand_fake(model))
    s = torch.sigmoid
    hand = -(a * torch.log(s(r)) + (1 - a) * torch.log(1 - s(r))).mean() - torch.log(1 - s(f)).mean()
    close(loss, hand)
    # The generator's loss is untouched by it.
    program0, model0, _ = build(registry, "nonsaturating")
    model0.load_state_dict(model.state_dict())
    close(ours(program, model, 1, None), ours(program0, model0, 1, None))


def test_historical_average_matches_hand_formula(registry):
    program, model, x = build(registry, "nonsaturating", ["networks.discriminator.ema=0.9", "phases.discriminator.terms=[adversarial.d, {term: historical_average, options: {net: discriminator}}]"])
    live = model.nets["discriminator"]
    with torch.no_grad():
        for p in live.parameters():
            p.add_(0.01 * torch.randn_like(p))  # the live weights move away from the average
    torch.manual_seed(SEED)
    term = program.phases[0].terms[1].bound.loss(StepContext(model, {"x": x}, N))
    avg = model.averages.copies["discriminator"]
    hand = sum(((p - a) ** 2).sum() for p, a in zip(live.parameters(), avg.parameters()))
    close(term, hand)
    assert hand.item() > 1e-4
    (g,) = torch.autograd.grad(term, [next(live.parameters())])
    assert torch.allclose(g, 2 * (next(live.parameters()) - next(avg.parameters())).detach())


def test_historical_average_needs_an_average(registry):
    with pytest.raises(UnigenError) as info:
        compile_file(GAN, ["phases.discriminator.terms=[adversarial.d, {term: historical_average, options: {net: discriminator}}]"], registry)
    d = info.value.diagnostics[0]
    assert d.code == "G014" and "has no `ema:`" in d.message and "ema: 0.99" in d.hint
