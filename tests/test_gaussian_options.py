"""The options of the `normal` distribution: a fixed variance (the network outputs the mean only),
a smooth floor on a learned standard deviation, their validation and the network's width; and
the ELBO's monitor of a learned standard deviation that collapses on data in [0, 1]."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.driver import train_run
from unigen.training.model import Model
from unigen.training.trainer import Trainer

VAE = ROOT / "specs" / "vae-digits.yaml"
CONV_VAE = ROOT / "specs" / "conv-vae-digits.yaml"
BERNOULLI_EDGE = "- {generative: z -> x, net: decoder, dist: bernoulli}"
GREY = ["data.binarize=false", "edges.0.dist=normal"]  # grey digits in [0, 1] under a Gaussian decoder
FIXED = [*GREY, "edges.0.options={variance: fixed, scale: 0.1}"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


def normal(registry, **options):
    kind = registry.get("distributions", "normal")
    return kind, kind.Options(**options)


# ------------------------------------------------------------------ densities


def test_fixed_variance_log_density_is_the_gaussian_formula(registry):
    kind, options = normal(registry, variance="fixed", scale=0.3)
    torch.manual_seed(0)
    mu, x = torch.randn(5, 64, dtype=torch.float64), torch.rand(5, 64, dtype=torch.float64)
    dist = kind.make(mu, 1, options)
    s = 0.3
    by_hand = (-0.5 * ((x - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum(1)
    got = dist.log_prob(x)
    assert got.dtype == torch.float64 and got.shape == (5,)
    assert torch.allclose(got, by_hand, rtol=1e-13, atol=0)
    assert float(got[0]) == pytest.approx(float(by_hand[0]), rel=1e-13)
    assert torch.equal(dist.mean, mu)  # the whole output is the mean
    assert torch.all(dist.scale == s) and dist.scale.shape == mu.shape
    draws = dist.rsample((200,))
    assert draws.shape == (200, 5, 64)
    assert float((draws - mu).std()) == pytest.approx(s, rel=0.02)  # 64 000 draws of N(0, 0.3^2)


def test_fixed_variance_on_images_keeps_every_channel_a_mean(registry):
    kind, options = normal(registry, variance="fixed", scale=0.5)
    out = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    got = kind.make(out, 3, options).log_prob(x)
    want = torch.distributions.Normal(out, 0.5).log_prob(x).flatten(1).sum(1)
    assert got.shape == (2,) and torch.allclose(got, want, rtol=1e-13, atol=0)


def test_default_options_build_the_learned_gaussian_as_before(registry):
    kind, options = normal(registry)
    assert (options.variance, options.scale, options.min_scale) == ("learned", 1.0, 0.0)
    torch.manual_seed(1)
    out, x = torch.randn(4, 16, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    mean, logvar = out.chunk(2, dim=1)
    dist = kind.make(out, 1, options)
    assert torch.equal(dist.mean, mean) and torch.equal(dist.scale, torch.exp(0.5 * logvar))  # bit for bit, no floor
    want = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum(1)
    assert torch.allclose(dist.log_prob(x), want, rtol=1e-12, atol=0)


def test_min_scale_floors_the_learned_standard_deviation_smoothly(registry):
    kind, options = normal(registry, min_scale=0.05)
    mean = torch.zeros(3, 4, dtype=torch.float64)
    logvar = torch.tensor([[-80.0] * 4, [math.log(0.05**2)] * 4, [4.0] * 4], dtype=torch.float64, requires_grad=True)
    dist = kind.make(torch.cat([mean, logvar], 1), 1, options)
    # The variance is exp(logvar) + 0.05^2: a very negative log-variance gives the floor itself.
    assert torch.allclose(dist.scale[0], torch.full((4,), 0.05, dtype=torch.float64), rtol=1e-12, atol=0)
    assert torch.allclose(dist.scale[1], torch.full((4,), 0.05 * math.sqrt(2), dtype=torch.float64), rtol=1e-12, atol=0)
    assert torch.allclose(dist.scale[2], torch.full((4,), math.sqrt(math.exp(4.0) + 0.05**2), dtype=torch.float64), rtol=1e-12, atol=0)
    assert bool((dist.scale >= 0.05).all())
    assert torch.allclose(dist.log_scale, dist.scale.log(), rtol=1e-12, atol=0)
    x = torch.full((3, 4), 0.01, dtype=torch.float64)
    want = torch.distributions.Normal(mean, dist.scale.detach()).log_prob(x).sum(1)
    assert torch.allclose(dist.log_prob(x).detach(), want, rtol=1e-12, atol=0)
    # Smooth, not clamped: the log-variance still gets a gradient at the floor.
    (grad,) = torch.autograd.grad(dist.scale[1].sum(), logvar)
    assert float(grad[1].abs().min()) > 0


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("options", "key", "message"),
    [
        ("{variance: fixed, scale: 0}", "scale", "distribution `normal`: Input should be greater than 0 (got 0)."),
        ("{variance: other}", "variance", "distribution `normal`: Input should be 'learned' or 'fixed' (got 'other')."),
        ("{min_scale: -0.1}", "min_scale", "distribution `normal`: Input should be greater than or equal to 0 (got -0.1)."),
        ("{scale: 0.1}", "scale", "`scale` is the standard deviation of `variance: fixed`, and the variance here is learned; expected `variance: fixed` beside `scale`"),
        ("{variance: fixed, min_scale: 0.1}", "min_scale", "`min_scale` floors a learned standard deviation, and the variance here is fixed; expected `variance: learned` beside `min_scale`"),
        ("{sigma: 0.1}", "sigma", "distribution `normal` has no option `sigma`."),
    ],
    ids=["scale-0", "variance-other", "min-scale-negative", "scale-learned", "min-scale-fixed", "unknown"],
)
def test_options_are_validated_at_the_edge_options_path(registry, write_spec, options: str, key: str, message: str):
    text = VAE.read_text()
    assert BERNOULLI_EDGE in text
    path = write_spec(text.replace("binarize: true", "binarize: false").replace(BERNOULLI_EDGE, f"- {{generative: z -> x, net: decoder, dist: normal, options: {options}}}"))
    line = 1 + text.splitlines().index(f"  {BERNOULLI_EDGE}")
    with pytest.raises(UnigenError) as err:
        compile_file(path, registry=registry)
    (d,) = err.value.diagnostics
    assert d.code == "G016" and d.path == ("edges", 0, "options", key)
    assert message in d.message
    assert d.file == str(path) and d.line == line


def test_valid_options_pass_and_show_in_the_program(registry):
    program = compile_file(VAE, FIXED, registry=registry).program
    assert "x ~ normal(decoder(z); variance=fixed, scale=0.1)" in str(program)
    program = compile_file(VAE, [*GREY, "edges.0.options={min_scale: 0.05}"], registry=registry).program
    assert "x ~ normal(decoder(z); min_scale=0.05)" in str(program)
    program = compile_file(VAE, [*GREY, "edges.0.options={variance: learned}"], registry=registry).program  # the default: not shown
    assert "x ~ normal(decoder(z))\n" in str(program)
    assert "z ~ normal(encoder(x))\n" in str(program)


# ------------------------------------------------------------------ the network's width


def test_fixed_variance_halves_the_network_output(registry):
    learned = compile_file(VAE, GREY, registry=registry).program
    fixed = compile_file(VAE, FIXED, registry=registry).program
    assert learned.networks["decoder"].output == (128,) and fixed.networks["decoder"].output == (64,)
    assert fixed.networks["encoder"].output == (16,)  # the inference edge keeps mean and log-variance
    assert "decoder        mlp: [8] -> [64]" in str(fixed) and "decoder        mlp: [8] -> [128]" in str(learned)
    model = Model(fixed, torch.device("cpu"))
    z = torch.randn(3, 8)
    assert model.nets["decoder"](z).shape == (3, 64)
    # On images the channels halve: [2, 8, 8] (mean, log-variance) against [1, 8, 8] (mean).
    conv_learned = compile_file(CONV_VAE, GREY, registry=registry).program
    conv_fixed = compile_file(CONV_VAE, FIXED, registry=registry).program
    assert conv_learned.networks["decoder"].output == (2, 8, 8) and conv_fixed.networks["decoder"].output == (1, 8, 8)
    model = Model(conv_fixed, torch.device("cpu"))
    dist = model.trace("p", None, 3).cond(conv_fixed.graph.into("x", "generative"))
    assert dist.mean.shape == (3, 1, 8, 8) and torch.all(dist.scale == 0.1)


def test_a_short_training_run_with_a_fixed_variance_has_a_finite_loss(registry, tmp_path: Path):
    run = train_run(VAE, [*FIXED, "train.log_every=2", "train.eval_every=0"], out=str(tmp_path / "run"), steps=6, device="cpu", registry=registry, quiet=True)
    summary = json.loads((run / "summary.json").read_text())
    loss = summary["final_losses"]["elbo/elbo"]
    assert math.isfinite(loss) and summary["steps"] == 6
    # log N(x; mu, 0.1^2) <= -log 0.1 - log(2 pi)/2 at each of 64 pixels: the reconstruction part
    # of the held-out -ELBO is bounded below by 64 (log 0.1 + log(2 pi)/2), whatever the means.
    floor = 64 * (math.log(0.1) + 0.5 * math.log(2 * math.pi))
    assert math.isfinite(summary["metrics"]["test_nelbo"]) and summary["metrics"]["test_recon"] >= floor
    assert summary["warnings"] == []
    assert "x ~ normal(decoder(z); variance=fixed, scale=0.1)" in (run / "program.txt").read_text()


# ------------------------------------------------------------------ health


def collapsed(registry, overrides: list[str]) -> Trainer:
    """A linear decoder whose means are the training data's per-pixel means and whose learned
    variances are its per-pixel variances (at least 1e-6): the border pixels, always 0, get a
    standard deviation of 0.001, as a learned variance collapses there."""
    program = compile_file(VAE, [*overrides, "networks.decoder.hidden=[]", "train.device=cpu"], registry=registry).program
    trainer = Trainer(program)
    x = trainer.model.dataset.train["x"]
    linear = trainer.model.nets["decoder"].body[0]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias[:64] = x.mean(0)
        linear.bias[64:] = x.var(0).clamp_min(1e-6).log()
    return trainer


def test_health_a_collapsed_learned_scale_on_data_in_0_1_is_reported(registry):
    trainer = collapsed(registry, GREY)
    [monitor] = trainer.health.monitors  # the ELBO watches its learned Gaussian likelihood
    found = trainer.health.run_monitor(monitor)
    assert found is not None and found[0] == "scale/x"
    std = trainer.model.dataset.train["x"].var(0).clamp_min(1e-6).sqrt()
    low = int((std < 0.02).sum())
    assert low >= 4  # the digits' constant border pixels at least
    text = found[1]
    assert f"it is below 0.02 at {low} of 64 elements (smallest 0.001)" in text
    assert "the learned standard deviation of `x` (edge `p_x`, `normal`) has collapsed on data in [0, 1]" in text
    nelbo = float(text.split("the held-out -ELBO is ")[1].split(" ")[0])
    assert nelbo < 0
    assert "Hint: fix the variance with `options: {variance: fixed, scale: 0.1}` on edge `p_x`, or floor it with `options: {min_scale: 0.05}`" in text


def test_health_a_floored_fixed_or_binary_likelihood_is_not_judged(registry):
    floored = collapsed(registry, [*GREY, "edges.0.options={min_scale: 0.05}"])
    [monitor] = floored.health.monitors
    assert floored.health.run_monitor(monitor) is None  # every standard deviation is at least 0.05
    assert Trainer(compile_file(VAE, [*FIXED, "train.device=cpu"], registry=registry).program).health.monitors == []
    assert Trainer(compile_file(VAE, ["train.device=cpu"], registry=registry).program).health.monitors == []
    # Data outside [0, 1] is not judged: the same collapsed decoder on the data shifted by -0.5.
    trainer = collapsed(registry, GREY)
    for split in (trainer.model.dataset.train, trainer.model.dataset.test):
        split["x"] = split["x"] - 0.5
    assert trainer.health.run_monitor(trainer.health.monitors[0]) is None
