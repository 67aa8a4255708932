"""VAE variants: beta-VAE, conditional VAE, semi-supervised M2 and the adversary-activated term.

Each compiled objective is compared with its formula written out in plain PyTorch on a fixed
batch and fixed noise (the global RNG is reseeded before each computation, and both sides draw
their noise in the same order and shape), in float64, to 1e-5. Each spec trains a few steps.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from formula import CPU, SEED, TOL, float64, model64, num, trained_summary  # noqa: F401  (float64: autouse fixture)

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.training.data import load_dataset, mask_key
from unigen.training.model import StepContext

SPECS = ROOT / "specs"
BETA, CVAE, M2, AA = (SPECS / f"{n}.yaml" for n in ("beta-vae-digits", "cvae-digits", "m2-digits", "aa-vae-digits"))
AA_CVAE, AA_M2 = SPECS / "aa-cvae-digits.yaml", SPECS / "aa-m2-digits.yaml"
K = 10  # digit classes
D_Z = 8  # latent size of every spec here


build = model64


def phase_loss(program, model, batch, n: int, phase: int = 0, seed: int = SEED) -> torch.Tensor:
    """A phase's weighted sum of terms, evaluated as the trainer does, after reseeding the noise."""
    torch.manual_seed(seed)
    ctx = StepContext(model, batch, n)
    return sum(t.weight * t.bound.loss(ctx) for t in program.phases[phase].terms)


def term_loss(program, model, batch, n: int, label: str, phase: int = 0, seed: int = SEED) -> torch.Tensor:
    torch.manual_seed(seed)
    (t,) = [t for t in program.phases[phase].terms if t.label == label]
    return t.bound.loss(StepContext(model, batch, n))


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """-sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)], p = sigmoid(logits), per example."""
    p = torch.sigmoid(logits)
    return -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)


def gauss(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation from a network's [mean, log-variance] output."""
    return h[:, :D_Z], torch.exp(0.5 * h[:, D_Z:])


def kl_normal(mu_q, s_q, mu_p, s_p) -> torch.Tensor:
    """KL(N(mu_q, s_q^2) || N(mu_p, s_p^2)), summed over dimensions."""
    return (torch.log(s_p / s_q) + (s_q**2 + (mu_q - mu_p) ** 2) / (2 * s_p**2) - 0.5).sum(1)


# ------------------------------------------------------------------ beta-VAE


def test_beta_vae_objective_matches_hand_formula(registry):
    program, model = build(registry, BETA)
    x = model.dataset.train["x"][:32]
    (t,) = program.phases[0].terms
    assert t.bound.formula == "-E_q[log p(x|z)] + 4 * KL(q(z|x) || p(z))"
    ours = phase_loss(program, model, {"x": x}, 32)

    def hand(beta: float) -> torch.Tensor:
        torch.manual_seed(SEED)
        mu, s = gauss(model.nets["encoder"](x))
        z = mu + s * torch.randn(32, D_Z)
        kl = kl_normal(mu, s, torch.zeros_like(mu), torch.ones_like(s))
        return (bernoulli_nll(x, model.nets["decoder"](z)) + beta * kl).mean()

    assert abs(num(ours) - num(hand(4.0))) < TOL
    assert num(hand(4.0)) - num(hand(1.0)) > 1e-2  # beta = 4 is not beta = 1


# ----------------------------------------------------------- conditional VAE


def test_cvae_kl_is_against_the_learned_prior_p_z_given_y(registry):
    program, model = build(registry, CVAE)
    x, y = model.dataset.train["x"][:32], model.dataset.train["y"][:32]
    (t,) = program.phases[0].terms
    assert t.bound.formula == "-E_q[log p(x|z,y)] + KL(q(z|x,y) || p(z|y))"
    assert t.bound.reaches == {"encoder", "decoder", "prior_net"}
    ours = phase_loss(program, model, {"x": x, "y": y}, 32)
    torch.manual_seed(SEED)
    mu_q, s_q = gauss(model.nets["encoder"](x, y))
    mu_p, s_p = gauss(model.nets["prior_net"](y))
    z = mu_q + s_q * torch.randn(32, D_Z)
    hand = (bernoulli_nll(x, model.nets["decoder"](z, y)) + kl_normal(mu_q, s_q, mu_p, s_p)).mean()
    assert abs(num(ours) - num(hand)) < TOL
    # The prior network matters: against N(0, I) the KL would differ.
    standard = kl_normal(mu_q, s_q, torch.zeros_like(mu_q), torch.ones_like(s_q)).mean()
    assert abs(num(standard) - num(kl_normal(mu_q, s_q, mu_p, s_p).mean())) > 1e-3
    # The gradient reaches the prior network.
    g = torch.autograd.grad(ours, list(model.nets["prior_net"].parameters()), allow_unused=True)
    assert any(gi is not None and num(gi.abs().max()) > 0 for gi in g)


def test_cvae_samples_follow_the_prior_network_given_the_label(registry):
    program, model = build(registry, CVAE)
    assert "p-trace   y ~ data; z ~ normal(prior_net(y)); x ~ bernoulli(decoder(z, y))" in str(program)
    y = torch.eye(K)[torch.arange(20) % K]
    torch.manual_seed(SEED)
    ctx = StepContext(model, {"y": y}, 20)
    z = ctx.p["z"]
    torch.manual_seed(SEED)
    mu, s = gauss(model.nets["prior_net"](y))
    assert torch.allclose(z, mu + s * torch.randn(20, D_Z), atol=TOL)


# ------------------------------------------------------------------------ M2


def m2_batch(model, n_on: int = 5, n_off: int = 11):
    """Training rows mixing labelled and unlabelled ones, interleaved: (batch, labelled rows,
    unlabelled rows, true labels of the unlabelled rows are hidden, so only the mask says)."""
    train = model.dataset.train
    on = train["labelled"].nonzero().flatten()[:n_on]
    off = (train["labelled"] == 0).nonzero().flatten()[:n_off]
    idx = torch.cat([off[:4], on[:2], off[4:], on[2:]])  # labelled rows are not all first
    batch = {"x": train["x"][idx], "y": train["y"][idx], mask_key("y"): train["labelled"][idx]}
    return batch, len(idx)


def hand_m2(model, batch, n: int, alpha: float, seed: int = SEED) -> torch.Tensor:
    """J^alpha / N of Kingma et al. (2014), per example on one batch:

    L(x, y) = -log p(x | y, z) + KL(q(z | x, y) || p(z)) - log p(y)    (z ~ q(z | x, y), one sample)
    U(x)    = sum_y q(y | x) L(x, y) - H(q(y | x))
    J^alpha / N = mean over rows of [L(x, y) if labelled else U(x)] + (alpha / N) E_labelled[-log q(y | x)]

    Noise: one standard normal per row and latent dimension, drawn for the labelled rows first
    (in batch order), then for each unlabelled row and each class k = 0..K-1.
    """
    x, y, seen = batch["x"], batch["y"], batch[mask_key("y")] > 0.5
    on, off = seen.nonzero().flatten(), (~seen).nonzero().flatten()
    torch.manual_seed(seed)
    eps = torch.randn(len(on) + len(off) * K, D_Z)
    enc, dec = model.nets["encoder"], model.nets["decoder"]
    log_p_y = math.log(1 / K)

    def bound(xs, ys, noise):
        mu, s = gauss(enc(xs, ys))
        z = mu + s * noise
        kl = kl_normal(mu, s, torch.zeros_like(mu), torch.ones_like(s))
        return bernoulli_nll(xs, dec(z, ys)) + kl - log_p_y

    log_q = F.log_softmax(model.nets["classifier"](x), dim=1)
    total = torch.zeros(())
    total = total + bound(x[on], y[on], eps[: len(on)]).sum()
    for i, row in enumerate(off.tolist()):
        xs = x[row].expand(K, -1)
        L = bound(xs, torch.eye(K), eps[len(on) + i * K : len(on) + (i + 1) * K])
        q = log_q[row].exp()
        entropy = -(q * log_q[row]).sum()
        total = total + (q * L).sum() - entropy
    classify = -(log_q[on] * y[on]).sum(1).mean()
    return total / n + alpha * classify


def test_m2_objective_matches_hand_formula_on_mixed_batch(registry):
    program, model = build(registry, M2)
    batch, n = m2_batch(model)
    labels = [t.label for t in program.phases[0].terms]
    assert labels == ["elbo", "label_nll@q_y"] and program.phases[0].terms[1].weight == 0.1
    ours = phase_loss(program, model, batch, n)
    hand = hand_m2(model, batch, n, alpha=0.1)
    assert 10 < num(hand) < 200
    assert abs(num(ours) - num(hand)) < TOL
    # Another seed: another value, and the hand formula follows it (the noise is pinned).
    other = phase_loss(program, model, batch, n, seed=SEED + 1)
    assert abs(num(other) - num(ours)) > 1e-4
    assert abs(num(other) - num(hand_m2(model, batch, n, 0.1, seed=SEED + 1))) < TOL


def test_m2_gradients_match_hand_formula(registry):
    program, model = build(registry, M2)
    batch, n = m2_batch(model, 3, 4)
    for name in ("classifier", "encoder", "decoder"):
        params = list(model.nets[name].parameters())
        ours = torch.autograd.grad(phase_loss(program, model, batch, n), params)
        hand = torch.autograd.grad(hand_m2(model, batch, n, 0.1), params)
        assert max(num((a - b).abs().max()) for a, b in zip(ours, hand)) < TOL, name


def test_m2_alpha_is_the_label_nll_weight(registry):
    program, model = build(registry, M2, ["phases.0.terms=[elbo, {term: label_nll, on: q_y, weight: 2.5}]"])
    batch, n = m2_batch(model)
    assert abs(num(phase_loss(program, model, batch, n)) - num(hand_m2(model, batch, n, alpha=2.5))) < TOL


def test_m2_fully_labelled_batch_is_the_labelled_bound(registry):
    # Without hidden rows nothing is enumerated: L(x, y) on every row.
    program, model = build(registry, M2)
    batch, n = m2_batch(model, 6, 0)
    assert abs(num(phase_loss(program, model, batch, n)) - num(hand_m2(model, batch, n, 0.1))) < TOL
    no_mask = {k: v for k, v in batch.items() if k != mask_key("y")}
    assert abs(num(phase_loss(program, model, no_mask, n)) - num(hand_m2(model, batch, n, 0.1))) < TOL


def test_m2_hidden_labels_do_not_reach_the_loss(registry):
    # Whatever an unlabelled row's `y` holds, its bound sums y out.
    program, model = build(registry, M2)
    batch, n = m2_batch(model)
    seen = batch[mask_key("y")] > 0.5
    noisy = dict(batch, y=torch.where(seen[:, None], batch["y"], torch.eye(K)[torch.arange(n) % K]))
    assert abs(num(phase_loss(program, model, batch, n)) - num(phase_loss(program, model, noisy, n))) < TOL


def test_digits_labelled_fraction_hides_labels_by_class(registry):
    program, model = build(registry, M2)
    train, test = model.dataset.train, model.dataset.test
    keep = train["labelled"] > 0.5
    assert 0.09 < float(keep.float().mean()) < 0.11
    counts = torch.bincount(train["label"][keep], minlength=K)
    assert int(counts.min()) >= 13 and int(counts.max()) <= 20  # about 10% of each class's ~144 rows
    assert float(train["y"][~keep].abs().sum()) == 0  # hidden labels are gone
    assert bool((train["label"][~keep] == -1).all())
    assert bool((test["labelled"] == 1).all()) and float(test["y"].sum()) == len(test["y"])
    # Fixed by the label seed, not by the training seed.
    again = load_dataset(compile_file(M2, ["train.seed=7"], registry).program)
    assert torch.equal(again.train["labelled"] > 0.5, keep)
    other = load_dataset(compile_file(M2, ["data.label_seed=1"], registry).program)
    assert not torch.equal(other.train["labelled"] > 0.5, keep)


def test_label_accuracy_scores_the_classifier(registry):
    _, model = build(registry, M2)
    metric = registry.get("metrics", "label_accuracy")
    assert metric.applies(model)
    test = model.dataset.test
    predicted = model.nets["classifier"](test["x"]).argmax(1)
    expected = float((predicted == test["y"].argmax(1)).double().mean())
    assert abs(metric.compute(model)["test_accuracy"] - expected) < 1e-12


# --------------------------------------------------------------------- AA-VAE


def test_aa_elbo_matches_hand_formula(registry):
    program, model = build(registry, AA)
    x = model.dataset.train["x"][:32]
    assert [t.label for t in program.phases[1].terms] == ["elbo", "aa_elbo@adv_x"]
    assert program.phases[1].frozen == ("discriminator",)
    ours = term_loss(program, model, {"x": x}, 32, "aa_elbo@adv_x", phase=1)
    torch.manual_seed(SEED)
    # Generated samples: z ~ N(0, I), x ~ Bernoulli(decoder(z)), then their ELBO with q(z|x).
    z = torch.randn(32, D_Z)
    x_gen = torch.bernoulli(torch.sigmoid(model.nets["decoder"](z)))
    weight = torch.sigmoid(model.nets["discriminator"](x_gen)).flatten()
    mu, s = gauss(model.nets["encoder"](x_gen))
    z_q = mu + s * torch.randn(32, D_Z)
    nelbo = bernoulli_nll(x_gen, model.nets["decoder"](z_q)) + kl_normal(mu, s, torch.zeros_like(mu), torch.ones_like(s))
    hand = (weight * nelbo).mean()
    assert 0.05 < float(weight.min()) and float(weight.max()) < 0.95  # an untrained D: weights near 1/2
    assert abs(num(ours) - num(hand)) < TOL
    # The weights are held fixed: no gradient reaches the discriminator.
    model.nets["discriminator"].requires_grad_(True)
    torch.manual_seed(SEED)
    loss = term_loss(program, model, {"x": x}, 32, "aa_elbo@adv_x", phase=1)
    assert loss.grad_fn is not None
    g = torch.autograd.grad(loss, list(model.nets["discriminator"].parameters()), allow_unused=True)
    assert all(gi is None for gi in g)


def test_aa_elbo_normalized_weights(registry):
    program, model = build(registry, AA, ["phases.elbo.terms=[elbo, {term: aa_elbo, options: {normalize: true}}]"])
    x = model.dataset.train["x"][:16]
    ours = term_loss(program, model, {"x": x}, 16, "aa_elbo@adv_x", phase=1)
    torch.manual_seed(SEED)
    z = torch.randn(16, D_Z)
    x_gen = torch.bernoulli(torch.sigmoid(model.nets["decoder"](z)))
    weight = torch.sigmoid(model.nets["discriminator"](x_gen)).flatten()
    mu, s = gauss(model.nets["encoder"](x_gen))
    z_q = mu + s * torch.randn(16, D_Z)
    nelbo = bernoulli_nll(x_gen, model.nets["decoder"](z_q)) + kl_normal(mu, s, torch.zeros_like(mu), torch.ones_like(s))
    assert abs(num(ours) - num((weight / weight.mean() * nelbo).mean())) < TOL


def hand_aa_cvae(model, x, y, n: int) -> torch.Tensor:
    """AA-CVAE's ELBO phase on a batch of data pairs (x, y), noise drawn in the trainer's order:

    elbo    = mean over data rows of -log p(x | z, y) + KL(q(z | x, y) || p(z | y)), z ~ q(z | x, y)
    aa_elbo = mean over generated pairs of D(x', y) * [-log p(x' | z', y) + KL(q(z' | x', y) || p(z' | y))]
              where z ~ p(z | y), x' ~ Bernoulli(decoder(z, y)), z' ~ q(z | x', y); D = sigmoid(disc(x', y))
    """
    enc, dec, prior, disc = (model.nets[k] for k in ("encoder", "decoder", "prior_net", "discriminator"))

    def nelbo(xs, noise):
        mu_q, s_q = gauss(enc(xs, y))
        mu_p, s_p = gauss(prior(y))
        return bernoulli_nll(xs, dec(mu_q + s_q * noise, y)) + kl_normal(mu_q, s_q, mu_p, s_p)

    torch.manual_seed(SEED)
    elbo = nelbo(x, torch.randn(n, D_Z)).mean()
    mu_p, s_p = gauss(prior(y))
    z = mu_p + s_p * torch.randn(n, D_Z)
    x_gen = torch.bernoulli(torch.sigmoid(dec(z, y)))
    weight = torch.sigmoid(disc(x_gen, y)).flatten().detach()
    return elbo + (weight * nelbo(x_gen, torch.randn(n, D_Z))).mean()


def test_aa_cvae_phase_matches_hand_formula(registry):
    program, model = build(registry, AA_CVAE)
    x, y = model.dataset.train["x"][:24], model.dataset.train["y"][:24]
    phase = program.phases[1]
    assert [t.label for t in phase.terms] == ["elbo", "aa_elbo@adv_x_y"] and phase.frozen == ("discriminator",)
    assert phase.terms[1].bound.formula == "E_p[D(x,y) * -ELBO(x,y)], D = sigmoid(discriminator(p.x, p.y)) held fixed"
    assert phase.terms[1].bound.reaches == {"encoder", "decoder", "prior_net"}
    ours = phase_loss(program, model, {"x": x, "y": y}, 24, phase=1)
    hand = hand_aa_cvae(model, x, y, 24)
    assert 10 < num(hand) < 200
    assert abs(num(ours) - num(hand)) < TOL
    # The term is not idle: without it the phase is the CVAE's ELBO alone, a different value.
    alone = phase_loss(program, model, {"x": x, "y": y}, 24, phase=1) - term_loss(program, model, {"x": x, "y": y}, 24, "aa_elbo@adv_x_y", phase=1)
    assert abs(num(alone) - num(ours)) > 1e-2
    # Gradients of every updated network match; none reaches the discriminator.
    for name in ("encoder", "decoder", "prior_net"):
        params = list(model.nets[name].parameters())
        g_ours = torch.autograd.grad(phase_loss(program, model, {"x": x, "y": y}, 24, phase=1), params)
        g_hand = torch.autograd.grad(hand_aa_cvae(model, x, y, 24), params)
        assert max(num((a - b).abs().max()) for a, b in zip(g_ours, g_hand)) < TOL, name
    d_params = list(model.nets["discriminator"].parameters())
    g = torch.autograd.grad(phase_loss(program, model, {"x": x, "y": y}, 24, phase=1), d_params, allow_unused=True)
    assert all(gi is None for gi in g)


def test_aa_cvae_weights_judge_the_label_too(registry):
    # The conditional discriminator sees (x', y): the same samples under other labels weigh otherwise.
    program, model = build(registry, AA_CVAE)
    y = model.dataset.train["y"][:16]
    torch.manual_seed(SEED)
    x_gen = torch.bernoulli(torch.full((16, 64), 0.5))
    disc = model.nets["discriminator"]
    assert num((disc(x_gen, y) - disc(x_gen, y.roll(1, 1))).abs().max()) > 1e-4


def hand_aa_m2(model, batch, n: int, alpha: float, label_weight: float, m: int) -> torch.Tensor:
    """AA-M2's ELBO phase: M2's objective on the data batch (hand_m2, whose noise comes first),
    plus, on m generated pairs y ~ Cat(1/K), z ~ N(0, I), x' ~ Bernoulli(decoder(z, y)):

    aa_elbo = mean over pairs of D(x') * [L(x', y) - label_weight * log q(y | x')],  D = sigmoid(disc(x'))

    with L(x', y) the labelled bound (y observed, -log p(y) included) and z' ~ q(z | x', y).
    """
    m2 = hand_m2(model, batch, n, alpha)  # reseeds and draws the data batch's noise
    enc, dec, disc = (model.nets[k] for k in ("encoder", "decoder", "discriminator"))
    z = torch.randn(m, D_Z)  # the p-trace draws x's parents in the edge's order: z, then y
    y = torch.distributions.OneHotCategorical(logits=torch.zeros(m, K)).sample()
    x_gen = torch.bernoulli(torch.sigmoid(dec(z, y)))
    weight = torch.sigmoid(disc(x_gen)).flatten().detach()
    mu, s = gauss(enc(x_gen, y))
    z_q = mu + s * torch.randn(m, D_Z)
    bound = bernoulli_nll(x_gen, dec(z_q, y)) + kl_normal(mu, s, torch.zeros_like(mu), torch.ones_like(s)) - math.log(1 / K)
    log_q = (F.log_softmax(model.nets["classifier"](x_gen), dim=1) * y).sum(1)
    return m2 + (weight * (bound - label_weight * log_q)).mean()


def test_aa_m2_phase_matches_hand_formula(registry):
    program, model = build(registry, AA_M2)
    phase = program.phases[1]
    assert [t.label for t in phase.terms] == ["elbo", "label_nll@q_y", "aa_elbo@adv_x"]
    assert [t.weight for t in phase.terms] == [1, 0.1, 1] and phase.frozen == ("discriminator",)
    assert phase.terms[2].bound.formula == "E_p[D(x) * (-ELBO(x,y) - 0.1 * log q(y|x))], D = sigmoid(discriminator(p.x)) held fixed"
    batch, n = m2_batch(model)
    ours = phase_loss(program, model, batch, n, phase=1)
    hand = hand_aa_m2(model, batch, n, alpha=0.1, label_weight=0.1, m=n)
    assert 10 < num(hand) < 400
    assert abs(num(ours) - num(hand)) < TOL
    # label_weight is the weight of the classifier's fit on generated pairs: 0 drops it.
    program0, model0 = build(registry, AA_M2, ["phases.elbo.terms.2.options.label_weight=0"])
    assert "D(x) * -ELBO(x,y)]" in program0.phases[1].terms[2].bound.formula
    for name, net in model.nets.items():
        model0.nets[name].load_state_dict(net.state_dict())
    zero = phase_loss(program0, model0, batch, n, phase=1)
    assert abs(num(zero) - num(hand_aa_m2(model0, batch, n, 0.1, 0.0, n))) < TOL
    assert abs(num(zero) - num(ours)) > 1e-3


def test_aa_m2_classifier_learns_from_generated_pairs(registry):
    program, model = build(registry, AA_M2)
    batch, n = m2_batch(model, 3, 4)
    for name in ("classifier", "encoder", "decoder"):
        params = list(model.nets[name].parameters())
        g_ours = torch.autograd.grad(phase_loss(program, model, batch, n, phase=1), params)
        g_hand = torch.autograd.grad(hand_aa_m2(model, batch, n, 0.1, 0.1, n), params)
        assert max(num((a - b).abs().max()) for a, b in zip(g_ours, g_hand)) < TOL, name
    # The aa term alone moves the classifier (through -log q(y|x') on generated pairs) but not D.
    aa = term_loss(program, model, batch, n, "aa_elbo@adv_x", phase=1)
    g = torch.autograd.grad(aa, list(model.nets["classifier"].parameters()), retain_graph=True)
    assert max(num(gi.abs().max()) for gi in g) > 1e-6
    g = torch.autograd.grad(aa, list(model.nets["discriminator"].parameters()), allow_unused=True)
    assert all(gi is None for gi in g)


def test_aa_m2_generated_labels_are_observed_without_label_weight(registry):
    # Generated (x, y) pairs carry the label M2's prior drew: the bound is L(x, y), nothing enumerated.
    program, model = build(registry, AA_M2, ["phases.elbo.terms.2.options.label_weight=0"])
    aa = [t for t in program.phases[1].terms if t.label == "aa_elbo@adv_x"][0]
    torch.manual_seed(SEED)
    ours = aa.bound.loss(StepContext(model, None, 12))
    torch.manual_seed(SEED)
    z = torch.randn(12, D_Z)
    y = torch.distributions.OneHotCategorical(logits=torch.zeros(12, K)).sample()
    x_gen = torch.bernoulli(torch.sigmoid(model.nets["decoder"](z, y)))
    weight = torch.sigmoid(model.nets["discriminator"](x_gen)).flatten()
    mu, s = gauss(model.nets["encoder"](x_gen, y))
    z_q = mu + s * torch.randn(12, D_Z)
    nelbo = bernoulli_nll(x_gen, model.nets["decoder"](z_q, y)) + kl_normal(mu, s, torch.zeros_like(mu), torch.ones_like(s)) - math.log(1 / K)
    assert abs(num(ours) - num((weight * nelbo).mean())) < TOL


# ------------------------------------------------------------- diagnostics


def errors(registry, path, overrides):
    with pytest.raises(UnigenError) as exc:
        compile_file(path, list(overrides), registry)
    return exc.value.diagnostics


def test_mask_on_a_latent_variable_is_refused(registry):
    (d,) = errors(registry, M2, ["variables.z.mask=labelled"])
    assert d.code == "G020" and d.path == ("variables", "z", "mask") and "latent" in d.message


def test_mask_field_the_dataset_lacks_is_refused(registry):
    (d,) = errors(registry, M2, ["data.labelled_fraction=1.0"])
    assert d.code == "G020" and "`labelled`" in d.message and "labelled_fraction" in d.hint


def test_partial_label_without_an_enumerable_inference_edge_is_refused(registry):
    diags = errors(registry, M2, ["edges.2.dist=normal"])
    assert any(d.code == "G014" and "cannot be listed" in d.message for d in diags)


def test_label_nll_on_the_latent_edge_is_refused(registry):
    diags = errors(registry, M2, ["phases.0.terms=[elbo, label_nll@q_z]"])
    assert any(d.code == "G014" and "latent `z`" in d.message for d in diags)


def test_aa_label_weight_without_a_partial_label_is_refused(registry):
    diags = errors(registry, AA, ["phases.elbo.terms=[elbo, {term: aa_elbo, options: {label_weight: 0.1}}]"])
    assert any(d.code == "G014" and "label_weight" in d.message and "mask" in d.hint for d in diags)


def test_aa_elbo_needs_a_generated_fake_side(registry):
    diags = errors(registry, AA, ["edges.2.real=[p.x]", "edges.2.fake=[q.x]"])
    assert any(d.code == "G014" and "p-trace" in d.message for d in diags)


# ------------------------------------------------------------------ training

TRAINED = {
    "beta-vae-digits": ["test_nelbo"],
    "cvae-digits": ["test_nelbo", "cond_accuracy"],
    "m2-digits": ["test_nelbo", "test_accuracy"],
    "aa-vae-digits": ["test_nelbo"],
    "aa-cvae-digits": ["test_nelbo", "cond_accuracy"],
    "aa-m2-digits": ["test_nelbo", "test_accuracy"],
}


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_vae_variant_spec_trains_a_few_steps(name, tmp_path, registry):
    summary = trained_summary(registry, SPECS / f"{name}.yaml", tmp_path / "run", TRAINED[name])
    assert 10 < summary["metrics"]["test_nelbo"] < 200
    if "test_accuracy" in summary["metrics"]:
        assert 0 <= summary["metrics"]["test_accuracy"] <= 1
