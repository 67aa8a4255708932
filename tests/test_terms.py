"""The compiled objectives equal their formulas written out by hand in plain PyTorch.

Each test evaluates a term's loss through unigen (compile the spec, build `Model`, make a
`StepContext` on a fixed batch) and the textbook formula on the same networks, the same
batch and the same noise: the global RNG is reseeded before each computation, and both
draw their standard normals in the same order and shape. Everything runs in float64 (the
default dtype is switched for each test) so that the comparisons can be tight.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.training.data import load_dataset
from unigen.training.model import Model, StepContext

VAE = ROOT / "specs" / "vae-digits.yaml"
GAN = ROOT / "specs" / "gan-ring.yaml"
SEED = 1234
TOL = 1e-5
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def float64():
    """Networks, priors and noise in float64, so the comparisons can be tight."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


_DATASETS: dict = {}  # loaded once per spec; the overrides used here leave the data alone


def build(registry, path, overrides=()):
    program = compile_file(path, ["train.device=cpu", *overrides], registry).program
    if path not in _DATASETS:
        _DATASETS[path] = load_dataset(program)
    model = Model(program, CPU, _DATASETS[path])
    x = model.dataset.train["x"][:32].double()
    return program, model, x


def num(t: torch.Tensor) -> float:
    return t.detach().item()


def term_loss(program, model, phase: int, batch, n: int, seed: int = SEED) -> torch.Tensor:
    """The first term of a phase, evaluated as the trainer does, after reseeding the noise."""
    torch.manual_seed(seed)
    ctx = StepContext(model, batch, n)
    return program.phases[phase].terms[0].bound.loss(ctx)


# ----------------------------------------------------------------------- VAE


def hand_elbo(model, x: torch.Tensor, beta: float = 1.0, seed: int = SEED) -> torch.Tensor:
    """mean over the batch of -sum_d log Bernoulli(x_d; sigmoid(logits_d)) + beta * KL(N(mu, sigma^2) || N(0, I))."""
    torch.manual_seed(seed)
    enc, dec = model.nets["encoder"], model.nets["decoder"]
    h = enc(x)
    mu, logvar = h[:, :8], h[:, 8:]
    sigma = torch.exp(0.5 * logvar)
    eps = torch.randn(x.shape[0], 8)
    z = mu + sigma * eps
    p = torch.sigmoid(dec(z))
    loglik = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)
    kl = 0.5 * (sigma**2 + mu**2 - 1 - torch.log(sigma**2)).sum(1)
    return (-loglik + beta * kl).mean()


def test_elbo_matches_hand_formula(registry):
    program, model, x = build(registry, VAE)
    ours = term_loss(program, model, 0, {"x": x}, len(x))
    hand = hand_elbo(model, x)
    assert ours.shape == ()
    assert 10 < num(hand) < 200  # a sane negative ELBO in nats for an untrained VAE on 64 pixels
    assert abs(num(ours) - num(hand)) < TOL


def test_elbo_beta_option_weights_kl(registry):
    program, model, x = build(registry, VAE, ["phases.0.terms=[{term: elbo, options: {beta: 4}}]"])
    assert "4 * KL" in program.phases[0].terms[0].bound.formula
    ours = term_loss(program, model, 0, {"x": x}, len(x))
    hand4, hand1 = hand_elbo(model, x, beta=4.0), hand_elbo(model, x, beta=1.0)
    assert abs(num(ours) - num(hand4)) < TOL
    assert num(hand4) - num(hand1) > 1e-3  # the KL is positive, so beta visibly matters


def test_elbo_noise_is_the_reparameterised_sample(registry):
    # A different seed gives a different loss: the comparison above really pins the noise.
    program, model, x = build(registry, VAE)
    a = term_loss(program, model, 0, {"x": x}, len(x), seed=SEED)
    b = term_loss(program, model, 0, {"x": x}, len(x), seed=SEED + 1)
    assert abs(num(a) - num(b)) > 1e-3
    assert abs(num(b) - num(hand_elbo(model, x, seed=SEED + 1))) < TOL


def test_elbo_gradient_matches_hand_formula(registry):
    program, model, x = build(registry, VAE)
    for name in ("decoder", "encoder"):
        params = list(model.nets[name].parameters())
        ours = torch.autograd.grad(term_loss(program, model, 0, {"x": x}, len(x)), params)
        hand = torch.autograd.grad(hand_elbo(model, x), params)
        assert len(ours) == len(hand) == 6
        for g, h in zip(ours, hand):
            assert num(h.abs().max()) > 0
            assert num((g - h).abs().max()) < TOL, name


def hand_iwae(model, x: torch.Tensor, k: int, seed: int = SEED) -> torch.Tensor:
    """mean over the batch of -log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x), with z_i = mu +
    sigma * eps_i drawn for the batch repeated k times (rows ordered sample-major)."""
    torch.manual_seed(seed)
    enc, dec = model.nets["encoder"], model.nets["decoder"]
    n = len(x)
    xr = x.repeat(k, 1)
    h = enc(xr)
    mu, logvar = h[:, :8], h[:, 8:]
    sigma = torch.exp(0.5 * logvar)
    eps = torch.randn(n * k, 8)
    z = mu + sigma * eps
    p = torch.sigmoid(dec(z))
    loglik = (xr * torch.log(p) + (1 - xr) * torch.log(1 - p)).sum(1)
    log_prior = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(1)
    log_q = (-0.5 * eps**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(1)
    logw = (loglik + log_prior - log_q).view(k, n)
    return -(torch.logsumexp(logw, 0) - math.log(k)).mean()


def test_iwae_term_matches_hand_formula_value_and_gradient(registry):
    program, model, x = build(registry, VAE, ["phases.0.terms=[{term: iwae, options: {k: 7}}]"])
    assert "(k = 7)" in program.phases[0].terms[0].bound.formula
    ours = term_loss(program, model, 0, {"x": x}, len(x))
    hand = hand_iwae(model, x, 7)
    assert 10 < num(hand) < 200
    assert abs(num(ours) - num(hand)) < TOL
    # tighter than the one-sample ELBO on average over draws (Burda et al.: the bound grows with k)
    elbos = [num(hand_elbo(model, x, seed=s)) for s in range(20)]
    bounds = [num(hand_iwae(model, x, 7, seed=s)) for s in range(20)]
    assert sum(bounds) / 20 < sum(elbos) / 20 - 0.05
    for name in ("decoder", "encoder"):
        params = list(model.nets[name].parameters())
        g_ours = torch.autograd.grad(term_loss(program, model, 0, {"x": x}, len(x)), params)
        g_hand = torch.autograd.grad(hand_iwae(model, x, 7), params)
        for g, h in zip(g_ours, g_hand):
            assert num(h.abs().max()) > 0
            assert num((g - h).abs().max()) < TOL, name


def test_iwae_term_with_one_sample_is_the_monte_carlo_elbo(registry):
    program, model, x = build(registry, VAE, ["phases.0.terms=[{term: iwae, options: {k: 1}}]"])
    ours = term_loss(program, model, 0, {"x": x}, len(x))
    assert abs(num(ours) - num(hand_iwae(model, x, 1))) < TOL


def test_iwae_term_refuses_a_semi_supervised_model(registry):
    from unigen.errors import UnigenError

    with pytest.raises(UnigenError) as err:
        compile_file(ROOT / "specs" / "m2-digits.yaml", ["train.device=cpu", "phases.0.terms=[iwae]"], registry)
    assert "partially observed" in str(err.value) and "`elbo` term" in str(err.value)


# ----------------------------------------------------------------------- GAN


def nlog_sigmoid(t: torch.Tensor) -> torch.Tensor:
    return -torch.log(torch.sigmoid(t))


def nlog_one_minus_sigmoid(t: torch.Tensor) -> torch.Tensor:
    return -torch.log(1 - torch.sigmoid(t))


# objective -> (D-loss on real logits r and fake logits f, G-loss on fake logits f)
HAND_OBJECTIVES = {
    "nonsaturating": (
        lambda r, f: nlog_sigmoid(r).mean() + nlog_one_minus_sigmoid(f).mean(),
        lambda f: nlog_sigmoid(f).mean(),
    ),
    "minimax": (
        lambda r, f: nlog_sigmoid(r).mean() + nlog_one_minus_sigmoid(f).mean(),
        lambda f: -nlog_one_minus_sigmoid(f).mean(),  # minimises log(1 - D(G(z)))
    ),
    "hinge": (
        lambda r, f: torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(),
        lambda f: -f.mean(),
    ),
    "least_squares": (
        lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean(),
        lambda f: 0.5 * ((f - 1) ** 2).mean(),
    ),
}


def hand_logits(model, x: torch.Tensor | None, n: int, seed: int = SEED) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Discriminator logits on the real batch and on generator(z), z ~ N(0, I) drawn after reseeding."""
    torch.manual_seed(seed)
    z = torch.randn(n, 16)
    disc = model.nets["discriminator"]
    fake = model.nets["generator"](z)
    return (disc(x) if x is not None else None), disc(fake)


def test_objectives_all_have_hand_formulas(registry):
    # The Wasserstein objectives (and again all of these) are checked in test_objectives.py.
    assert set(registry.names("objectives")) == set(HAND_OBJECTIVES) | {"wasserstein", "wgan_gp"}


@pytest.mark.parametrize("objective", sorted(HAND_OBJECTIVES))
def test_adversarial_d_matches_hand_formula(registry, objective):
    program, model, x = build(registry, GAN, [f"edges.1.objective={objective}", "edges.1.options.r1=0"])
    ours = term_loss(program, model, 0, {"x": x}, len(x))
    r, f = hand_logits(model, x, len(x))
    hand = HAND_OBJECTIVES[objective][0](r, f)
    assert abs(num(ours) - num(hand)) < TOL


@pytest.mark.parametrize("objective", sorted(HAND_OBJECTIVES))
def test_adversarial_g_matches_hand_formula(registry, objective):
    program, model, _ = build(registry, GAN, [f"edges.1.objective={objective}"])
    assert not program.phases[1].needs_data
    ours = term_loss(program, model, 1, None, 64)
    _, f = hand_logits(model, None, 64)
    hand = HAND_OBJECTIVES[objective][1](f)
    assert abs(num(ours) - num(hand)) < TOL


def hand_r1(model, x: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma/2 * mean over the batch of ||d D(x) / dx||^2 at the real points."""
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.nets["discriminator"](xr).sum(), xr, create_graph=True)
    return 0.5 * gamma * (grad**2).sum(1).mean()


def test_adversarial_d_r1_option_adds_gradient_penalty(registry):
    gamma = 10.0
    program, model, x = build(registry, GAN, [f"edges.1.options.r1={gamma}"])
    ours = term_loss(program, model, 0, {"x": x}, len(x))
    r, f = hand_logits(model, x, len(x))
    base = HAND_OBJECTIVES["nonsaturating"][0](r, f)
    penalty = hand_r1(model, x, gamma)
    assert num(penalty) > 1e-6  # the penalty is there to see
    assert abs(num(ours) - num(base + penalty)) < TOL
    # The penalty trains the discriminator: its gradient matches the hand-written one.
    params = list(model.nets["discriminator"].parameters())
    g_ours = torch.autograd.grad(term_loss(program, model, 0, {"x": x}, len(x)), params)
    r, f = hand_logits(model, x, len(x))
    g_hand = torch.autograd.grad(HAND_OBJECTIVES["nonsaturating"][0](r, f) + hand_r1(model, x, gamma), params)
    for a, b in zip(g_ours, g_hand):
        assert num((a - b).abs().max()) < TOL


def test_adversarial_d_r1_zero_is_plain_objective(registry):
    program, model, x = build(registry, GAN, ["edges.1.options.r1=0"])
    ours = term_loss(program, model, 0, {"x": x}, len(x))
    r, f = hand_logits(model, x, len(x))
    assert abs(num(ours) - num(HAND_OBJECTIVES["nonsaturating"][0](r, f))) < TOL
    assert math.isfinite(num(ours))
