"""Adversarial families of the unifying view built from plugins: the importance-weighted GAN
(an option of `adversarial.g`), VAE/GAN (feature-space reconstruction, reconstructions as
fakes), adversarial domain adaptation (DANN), CycleGAN, and hybrid specs.

Each compiled term is compared with its formula written out in plain PyTorch on a fixed batch
and fixed noise (the global RNG reseeded before each computation), in float64, to 1e-5; each
spec trains a few steps and reports its metrics.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from formula import CPU, SEED, TOL, float64, num, trained_summary, with_batch  # noqa: F401  (float64: autouse fixture)
from unigen_cycle.terms import matched as unigen_cycle_matched

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.training.model import Model, StepContext

SPECS = ROOT / "specs"
GAN, CGAN, ALI = SPECS / "gan-ring.yaml", SPECS / "cgan-digits.yaml", SPECS / "ali-ring.yaml"
VAEGAN, VAEGAN_IW = SPECS / "vaegan-digits.yaml", SPECS / "hybrid-vaegan-iw.yaml"
DANN, SOURCE_ONLY, CYCLE = SPECS / "dann-digits.yaml", SPECS / "source-only-digits.yaml", SPECS / "cyclegan-digits.yaml"
AAE_INFO = SPECS / "hybrid-aae-infogan.yaml"
IW = "phases.generator.terms=[{term: adversarial.g, options: {importance_weighted: true}}]"


build = with_batch


def phase_index(program, name: str) -> int:
    return next(i for i, p in enumerate(program.phases) if p.name == name)


def term_loss(program, model, phase: str, batch, n: int, index: int = 0, seed: int = SEED) -> torch.Tensor:
    torch.manual_seed(seed)
    return program.phases[phase_index(program, phase)].terms[index].bound.loss(StepContext(model, batch, n))


def grads(loss: torch.Tensor, net: torch.nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, allow_unused=True))


def same_grads(a: torch.Tensor, b: torch.Tensor, net: torch.nn.Module) -> None:
    for ga, gb in zip(grads(a, net), grads(b, net)):
        assert ga is not None and gb is not None
        assert num((ga - gb).abs().max()) < TOL


def compile_errors(registry, path: Path, overrides) -> str:
    with pytest.raises(UnigenError) as exc:
        compile_file(path, list(overrides), registry)
    return " ".join(f"{d.code} {d.message} {d.hint}" for d in exc.value.diagnostics)


# ------------------------------------------------------------ specs train

TRAINED = {
    "vaegan-digits": ["recon_error"],
    "hybrid-vaegan-iw": ["recon_error"],
    "hybrid-aae-infogan": ["recon_error"],
    "dann-digits": ["target_accuracy", "source_accuracy"],
    "source-only-digits": ["target_accuracy", "source_accuracy"],
    "cyclegan-digits": ["translation_mae", "translation_mae_a_to_b", "translation_mae_b_to_a", "translation_match", "translation_match_a_to_b", "translation_match_b_to_a"],
}


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_adversarial_spec_trains_a_few_steps(name, tmp_path, registry):
    summary = trained_summary(registry, SPECS / f"{name}.yaml", tmp_path / "run", TRAINED[name])
    metrics = summary["metrics"]
    if "target_accuracy" in metrics:
        assert 0 <= metrics["target_accuracy"] <= 1 and 0 <= metrics["source_accuracy"] <= 1
    if "translation_mae" in metrics:
        assert 0 < metrics["translation_mae"] < 1
    assert all(math.isfinite(v) for v in summary["final_losses"].values())
    assert summary["final_losses"], name


# ------------------------------------------------- importance-weighted GAN


@pytest.mark.parametrize("objective", ["nonsaturating", "minimax"])
def test_iw_generator_loss_matches_hand_formula(registry, objective):
    program, model, _ = build(registry, GAN, [IW, f"edges.1.objective={objective}", "~edges.1.options"])
    gen, disc = model.nets["generator"], model.nets["discriminator"]
    n = 64

    def hand(seed: int = SEED) -> torch.Tensor:
        torch.manual_seed(seed)
        logits = disc(gen(torch.randn(n, 16))).squeeze(1)
        w = torch.exp(logits) / torch.exp(logits).sum()  # D/(1-D) = exp(logit), normalised
        per = F.softplus(-logits) if objective == "nonsaturating" else -F.softplus(logits)  # -log D  or  log(1 - D)
        return (w.detach() * per).sum()

    ours = term_loss(program, model, "generator", None, n)
    assert abs(num(ours) - num(hand())) < TOL
    plain = term_loss(*compile_and_model(registry, GAN, [f"edges.1.objective={objective}", "~edges.1.options"], model), "generator", None, n)
    assert abs(num(ours) - num(plain)) > 1e-6  # the weights change the loss
    same_grads(term_loss(program, model, "generator", None, n), hand(), gen)
    assert "each sample weighted by w = D/(1-D) normalised over the batch (detached)" in program.phases[1].terms[0].bound.formula


def compile_and_model(registry, path, overrides, like: Model) -> tuple:
    """Another compilation of the spec and its model, with the networks of `like`."""
    program = compile_file(path, ["train.device=cpu", *overrides], registry).program
    model = Model(program, CPU, like.dataset)
    model.nets.load_state_dict(like.nets.state_dict())
    return program, model


def test_iw_weights_are_detached_and_normalised(registry):
    # The gradient is sum_i w~_i grad l_i: the weights themselves pass no gradient.
    program, model, _ = build(registry, GAN, [IW])
    gen, disc = model.nets["generator"], model.nets["discriminator"]
    torch.manual_seed(SEED)
    logits = disc(gen(torch.randn(64, 16))).squeeze(1)
    undetached = (torch.softmax(logits, 0) * F.softplus(-logits)).sum()
    ours = term_loss(program, model, "generator", None, 64)
    assert abs(num(ours) - num(undetached)) < TOL  # same value ...
    g_ours, g_un = grads(ours, gen), grads(undetached, gen)
    assert max(num((a - b).abs().max()) for a, b in zip(g_ours, g_un)) > 1e-6  # ... another gradient


def test_iw_on_a_conditional_link_matches_hand_formula(registry):
    program, model, batch = build(registry, CGAN, [IW, "~edges.1.options"])
    gen, disc = model.nets["generator"], model.nets["discriminator"]
    y = batch["y"]
    torch.manual_seed(SEED)
    logits = disc(gen(torch.randn(len(y), 16), y), y).squeeze(1)
    hand = (torch.softmax(logits, 0).detach() * F.softplus(-logits)).sum()
    ours = term_loss(program, model, "generator", batch, len(y))
    assert abs(num(ours) - num(hand)) < TOL
    same_grads(term_loss(program, model, "generator", batch, len(y)), hand, gen)


def test_iw_with_a_trainable_real_side_weights_it_by_the_inverse_ratio(registry):
    # ALI: the encoder's pairs play the fake role with labels swapped, weighted by (1-D)/D.
    program, model, batch = build(registry, ALI, [IW, "~edges.2.options"])
    gen, enc, disc = model.nets["generator"], model.nets["encoder"], model.nets["discriminator"]
    x = batch["x"]
    torch.manual_seed(SEED)
    z = torch.randn(len(x), 8)
    fake = disc(gen(z), z).squeeze(1)
    real = disc(x, enc(x)).squeeze(1)
    hand = (torch.softmax(fake, 0).detach() * F.softplus(-fake)).sum() + (torch.softmax(-real, 0).detach() * F.softplus(real)).sum()
    ours = term_loss(program, model, "generator", batch, len(x))
    assert abs(num(ours) - num(hand)) < TOL
    same_grads(term_loss(program, model, "generator", batch, len(x)), hand, enc)


def test_iw_refuses_an_objective_without_a_probability(registry):
    text = compile_errors(registry, GAN, [IW, "edges.1.objective=hinge", "~edges.1.options"])
    assert "G014" in text and "objective `hinge`" in text and "objective: nonsaturating" in text


# ------------------------------------------------------------------ VAE/GAN


def vaegan_noise(model, x: torch.Tensor, seed: int = SEED):
    """p.z ~ N(0, I) first (the fake side), then q.z = mu + sigma * eps (the reconstructions)."""
    torch.manual_seed(seed)
    zp = torch.randn(len(x), 16)
    h = model.nets["encoder"](x)
    zq = h[:, :16] + torch.exp(0.5 * h[:, 16:]) * torch.randn(len(x), 16)
    return zp, zq, h


def test_vaegan_discriminator_loss_judges_prior_draws_and_reconstructions(registry):
    program, model, batch = build(registry, VAEGAN, ["~edges.2.options"])
    dec, disc = model.nets["decoder"], model.nets["discriminator"]
    x = batch["x"]
    zp, zq, _ = vaegan_noise(model, x)
    real = disc(x)
    hand = 0.5 * (F.softplus(-real).mean() + F.softplus(disc(dec(zp))).mean()) + 0.5 * (F.softplus(-real).mean() + F.softplus(disc(dec(zq))).mean())
    ours = term_loss(program, model, "discriminator", batch, len(x))
    assert abs(num(ours) - num(hand)) < TOL
    assert "and reconstructions (x~ = decoder(q.z)), averaged" in program.phases[2].terms[0].bound.formula


@pytest.mark.parametrize("path", [VAEGAN, VAEGAN_IW])
def test_vaegan_generator_loss_matches_hand_formula(registry, path):
    program, model, batch = build(registry, path)
    dec, disc = model.nets["decoder"], model.nets["discriminator"]
    x = batch["x"]
    zp, zq, _ = vaegan_noise(model, x)
    iw = path == VAEGAN_IW

    def g(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.squeeze(1)
        return (torch.softmax(logits, 0).detach() * F.softplus(-logits)).sum() if iw else F.softplus(-logits).mean()

    hand = 0.5 * (g(disc(dec(zp))) + g(disc(dec(zq))))
    ours = term_loss(program, model, "decoder", batch, len(x), index=1)
    assert abs(num(ours) - num(hand)) < TOL
    same_grads(term_loss(program, model, "decoder", batch, len(x), index=1), hand, dec)


def mlp_features(net, x: torch.Tensor, layer: int) -> torch.Tensor:
    """The MLP's hidden activations written out: Linear then LeakyReLU(0.2), `layer` times."""
    linears = [m for m in net.body if isinstance(m, torch.nn.Linear)]
    h = x
    for lin in linears[:layer]:
        h = F.leaky_relu(lin(h), 0.2)
    return h


def test_mlp_features_are_its_hidden_activations(registry):
    _, model, batch = build(registry, VAEGAN)
    disc = model.nets["discriminator"]
    for layer in (1, 2):
        assert num((disc.features(batch["x"], layer=layer) - mlp_features(disc, batch["x"], layer)).abs().max()) < 1e-12
    with pytest.raises(ValueError):
        disc.features(batch["x"], layer=3)


@pytest.mark.parametrize("layer", [1, 2])
def test_feature_recon_and_kl_match_hand_formulas(registry, layer):
    overrides = [] if layer == 1 else [f"phases.encoder.terms=[kl, {{term: feature_recon, weight: 30, options: {{net: discriminator, layer: {layer}}}}}]"]
    program, model, batch = build(registry, VAEGAN, overrides)
    dec, disc, enc = model.nets["decoder"], model.nets["discriminator"], model.nets["encoder"]
    x = batch["x"]
    torch.manual_seed(SEED)
    h = enc(x)
    mu, logvar = h[:, :16], h[:, 16:]
    zq = mu + torch.exp(0.5 * logvar) * torch.randn(len(x), 16)
    hand_rec = 0.5 * (mlp_features(disc, x, layer) - mlp_features(disc, dec(zq), layer)).pow(2).sum(1).mean()
    hand_kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
    assert abs(num(term_loss(program, model, "encoder", batch, len(x), index=0)) - num(hand_kl)) < TOL
    ours = term_loss(program, model, "encoder", batch, len(x), index=1)
    assert num(hand_rec) > 1e-4 and abs(num(ours) - num(hand_rec)) < TOL
    same_grads(term_loss(program, model, "encoder", batch, len(x), index=1), hand_rec, enc)
    enc_phase = program.phases[phase_index(program, "encoder")]
    assert enc_phase.terms[1].bound.reaches == {"encoder", "decoder", "discriminator"}
    assert enc_phase.terms[1].weight == 30 and f"discriminator_{layer}(x)" in enc_phase.terms[1].bound.formula


def test_feature_recon_checks_the_network_and_layer(registry):
    text = compile_errors(registry, VAEGAN, ["phases.encoder.terms=[kl, {term: feature_recon, options: {net: discriminator, layer: 3}}]"])
    assert "G014" in text and "`layer: 3`, but network `discriminator` has 2 hidden layers" in text
    text = compile_errors(registry, VAEGAN, ["phases.encoder.terms=[kl, {term: feature_recon, options: {net: decoder}}]"])
    assert "G014" in text and "network `decoder` reads [16], but its features are compared on `x` alone ([64])" in text
    text = compile_errors(registry, CGAN, ["phases.generator.terms=[{term: adversarial.g, options: {reconstructions: true}}]"])
    assert "G014" in text and "nothing to reconstruct" in text


# -------------------------------------------------------------------- DANN


def test_dann_terms_match_hand_formulas(registry):
    program, model, batch = build(registry, DANN)
    feat, cls, dom = model.nets["features"], model.nets["classifier"], model.nets["domain"]
    x, y, xt = batch["x"], batch["y"], batch["xt"]
    sup = term_loss(program, model, "features", batch, len(x), index=0)
    hand_sup = -(y * torch.log_softmax(cls(feat(x)), 1)).sum(1).mean()
    assert abs(num(sup) - num(hand_sup)) < TOL
    same_grads(term_loss(program, model, "features", batch, len(x), index=0), hand_sup, feat)
    # Domain adversary: source features real, target features fake; the feature network is
    # trained with the labels swapped on both sides.
    d_loss = term_loss(program, model, "domain", batch, len(x))
    hand_d = F.softplus(-dom(feat(x))).mean() + F.softplus(dom(feat(xt))).mean()
    assert abs(num(d_loss) - num(hand_d)) < TOL
    g_loss = term_loss(program, model, "features", batch, len(x), index=1)
    hand_g = F.softplus(-dom(feat(xt))).mean() + F.softplus(dom(feat(x))).mean()
    assert abs(num(g_loss) - num(hand_g)) < TOL
    same_grads(term_loss(program, model, "features", batch, len(x), index=1), hand_g, feat)
    assert program.phases[1].terms[1].weight == 0.3


def test_target_accuracy_scores_the_hidden_target_labels(registry):
    for path in (DANN, SOURCE_ONLY):
        _, model, _ = build(registry, path)
        out = registry.get("metrics", "target_accuracy").compute(model)
        test = model.dataset.test
        nets = model.nets
        for key, (xf, yf) in {"target_accuracy": ("xt", "yt"), "source_accuracy": ("x", "y")}.items():
            predicted = nets["classifier"](nets["features"](test[xf])).argmax(1)
            assert abs(out[key] - num((predicted == test[yf].argmax(1)).double().mean())) < TOL


def test_digits_shift_keeps_target_labels_out_of_training(registry):
    program, model, _ = build(registry, DANN)
    assert set(model.fields.values()) == {"x", "y", "xt"}  # yt is scored, never trained on
    train, test = model.dataset.train, model.dataset.test
    assert not torch.equal(train["y"], train["yt"])  # two different halves of the digits
    # The test split pairs each digit with its shifted copy; the noise shift is |x - 0.5 t|.
    assert torch.equal(test["y"], test["yt"])
    assert num((test["xt"] - test["x"]).abs().max()) <= 0.5 + 1e-6 and num((test["xt"] - test["x"]).abs().mean()) > 0.05


def test_supervised_chain_needs_no_prior_but_a_stray_inference_edge_is_still_g006(registry):
    assert compile_file(DANN, registry=registry).program.graph.variables["h"].prior is None
    text = compile_errors(registry, DANN, ["edges.2.inference=x -> h2", "variables.h2={shape: [64], prior: normal}", "phases.features.terms=[supervised@q_h2]"])
    assert "G006" in text or "G012" in text


# ----------------------------------------------------------------- CycleGAN


def test_cycle_consistency_and_adversarial_terms_match_hand_formulas(registry):
    program, model, batch = build(registry, CYCLE)
    g_ab, g_ba, d_a, d_b = (model.nets[n] for n in ("g_ab", "g_ba", "d_a", "d_b"))
    a, b = batch["a"], batch["b"]
    cyc = term_loss(program, model, "generators", batch, len(a), index=2)
    hand = (g_ba(g_ab(a)) - a).abs().mean() + (g_ab(g_ba(b)) - b).abs().mean()
    assert abs(num(cyc) - num(hand)) < TOL
    for net in (g_ab, g_ba):
        same_grads(term_loss(program, model, "generators", batch, len(a), index=2), hand, net)
    adv_b = term_loss(program, model, "generators", batch, len(a), index=1)
    assert abs(num(adv_b) - num(0.5 * (d_b(g_ab(a)) - 1).pow(2).mean())) < TOL
    d = term_loss(program, model, "discriminators", batch, len(a), index=0)
    assert abs(num(d) - num(0.5 * (d_a(a) - 1).pow(2).mean() + 0.5 * d_a(g_ba(b)).pow(2).mean())) < TOL


def test_translation_error_is_against_the_true_inversion(registry):
    _, model, _ = build(registry, CYCLE)
    out = registry.get("metrics", "translation_error").compute(model)
    x = model.dataset.test["x"]
    assert num((model.dataset.test["xt"] - (1 - x)).abs().max()) < 1e-12
    ab = num((model.nets["g_ab"](x) - (1 - x)).abs().mean())
    ba = num((model.nets["g_ba"](1 - x) - x).abs().mean())
    assert abs(out["translation_mae_a_to_b"] - ab) < TOL and abs(out["translation_mae_b_to_a"] - ba) < TOL
    assert abs(out["translation_mae"] - (ab + ba) / 2) < TOL
    # match: row i's translation is nearest (L1) to the true translation of row i itself
    truth = 1 - x
    pred = model.nets["g_ab"](x)
    hand = sum(int(min(range(len(x)), key=lambda j: num((pred[i] - truth[j]).abs().sum())) == i) for i in range(len(x))) / len(x)
    assert abs(out["translation_match_a_to_b"] - hand) < TOL
    metric = registry.get("metrics", "translation_error")
    assert unigen_cycle_matched(truth + 0.01, truth) == 1.0 and unigen_cycle_matched(truth.flip(0), truth) < 0.01
    assert 0 <= out["translation_match"] <= 1 and metric.higher_is_better is False
    mean_b = model.dataset.train["xt"].mean(0)
    assert abs(out["translation_mae_mean_image_a_to_b"] - num((mean_b - (1 - x)).abs().mean())) < TOL
    assert set(out) == {f"translation_{k}{d}" for k in ("mae", "match", "mae_mean_image") for d in ("", "_a_to_b", "_b_to_a")}


def test_consistency_checks_its_references(registry):
    text = compile_errors(registry, CYCLE, ["phases.generators.terms=[{term: consistency, options: {pairs: [[p.aba, p.nope]]}}]"])
    assert "G014" in text and "`p.nope` names no variable" in text
    text = compile_errors(registry, CYCLE, ["phases.generators.terms=[{term: consistency, options: {pairs: [[aba, p.a]]}}]"])
    assert "G016" in text and "`aba` is not `p.<variable>`" in text


# ------------------------------------------------------------------ hybrids


def test_hybrid_aae_infogan_reaches_the_decoder_through_the_code(registry):
    program, model, _ = build(registry, AAE_INFO)
    info = program.phases[phase_index(program, "info")].terms[0]
    assert info.bound.reaches == {"qnet", "decoder"}
    n = 32
    torch.manual_seed(SEED)
    z = torch.randn(n, 8)
    c = torch.distributions.OneHotCategorical(logits=torch.zeros(n, 10)).sample()
    x = model.nets["decoder"](z, c)
    hand = -(c * torch.log_softmax(model.nets["qnet"](x), 1)).sum(1).mean()
    ours = term_loss(program, model, "info", None, n)
    assert abs(num(ours) - num(hand)) < TOL
    same_grads(term_loss(program, model, "info", None, n), hand, model.nets["decoder"])
