"""Families added as plugins: autoencoders (`unigen_ae`), wake-sleep (`unigen_wakesleep`),
conditional generation (`unigen_cond`), and the specs built from their terms and the
existing ones (AAE, InfoGAN, cGAN, ALI).

Each term's compiled loss is compared with its formula written out in plain PyTorch on a
fixed batch and fixed noise (the global RNG is reseeded before each computation, as in
tests/test_terms.py), in float64, to 1e-5. Each spec trains a few steps and reports its
metrics.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from formula import CPU, SEED, TOL, float64, num, trained_summary, with_batch  # noqa: F401  (float64: autouse fixture)

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.training.model import StepContext

SPECS = ROOT / "specs"
AE, SPARSE, DAE = SPECS / "ae-digits.yaml", SPECS / "sparse-ae-digits.yaml", SPECS / "denoising-ae-digits.yaml"
WS, AAE, INFOGAN, CGAN, ALI = (SPECS / f"{n}.yaml" for n in ("wake-sleep-digits", "aae-digits", "infogan-ring", "cgan-digits", "ali-ring"))


build = with_batch


def term(program, phase: int, index: int):
    return program.phases[phase].terms[index]


def term_loss(program, model, phase: int, batch, n: int, index: int = 0, seed: int = SEED) -> torch.Tensor:
    """One term of a phase, evaluated as the trainer does, after reseeding the noise."""
    torch.manual_seed(seed)
    return term(program, phase, index).bound.loss(StepContext(model, batch, n))


def bernoulli_nll(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """-sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)] per example."""
    return -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)


def compile_errors(registry, path: Path, overrides) -> list:
    with pytest.raises(UnigenError) as exc:
        compile_file(path, list(overrides), registry)
    return exc.value.diagnostics


def grads(loss: torch.Tensor, net: torch.nn.Module) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, allow_unused=True))


def reached(gs: list[torch.Tensor | None]) -> bool:
    return any(g is not None and num(g.abs().max()) > 0 for g in gs)


# ------------------------------------------------------------ (a) spec training

TRAINED = {
    "ae-digits": ["recon_error"],
    "sparse-ae-digits": ["recon_error"],
    "denoising-ae-digits": ["recon_error"],
    "wake-sleep-digits": ["test_nelbo", "test_recon", "test_kl", "recon_error"],
    "aae-digits": ["recon_error"],
    "infogan-ring": ["modes_captured", "hq_fraction", "mode_kl"],
    "cgan-digits": ["cond_accuracy", "cond_accuracy_real"],
    "ali-ring": ["modes_captured", "recon_error"],
}


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_family_spec_trains_a_few_steps(name, tmp_path, registry):
    summary = trained_summary(registry, SPECS / f"{name}.yaml", tmp_path / "run", TRAINED[name])
    metrics = summary["metrics"]
    if "recon_error" in metrics:
        assert 0 <= metrics["recon_error"] < 2
    if "test_nelbo" in metrics:  # 64 binary pixels: an untrained model is near 64 log 2 nats
        assert 10 < metrics["test_nelbo"] < 200
        assert metrics["test_kl"] >= -1  # a one-sample Monte Carlo KL: near zero, at most a little below
    if "cond_accuracy" in metrics:
        assert metrics["cond_accuracy_real"] > 0.9  # the 1-NN classifier itself reads real digits
    assert all(math.isfinite(v) for v in summary["final_losses"].values())


# ----------------------------------------------------------- (b) recon, by hand


def test_recon_mse_matches_hand_formula(registry):
    program, model, batch = build(registry, AE)
    x = batch["x"]
    ours = term_loss(program, model, 0, batch, len(x))
    hand = (model.nets["decoder"](model.nets["encoder"](x)) - x).pow(2).sum(1).mean()
    assert num(hand) > 1e-2
    assert abs(num(ours) - num(hand)) < TOL
    assert term(program, 0, 0).bound.formula == "E_q||x - decoder(z)||^2"


def test_recon_bce_matches_hand_formula(registry):
    program, model, batch = build(registry, AE, ["phases.0.terms=[{term: recon, options: {loss: bce}}]"])
    x = batch["x"]
    ours = term_loss(program, model, 0, batch, len(x))
    m = model.nets["decoder"](model.nets["encoder"](x))  # the decoder ends in a sigmoid
    hand = bernoulli_nll(x, m).mean()
    assert abs(num(ours) - num(hand)) < TOL


def test_recon_nll_bernoulli_matches_hand_formula_and_trains_both_networks(registry):
    program, model, batch = build(registry, SPARSE)
    x = batch["x"]
    ours = term_loss(program, model, 0, batch, len(x))
    hand = bernoulli_nll(x, torch.sigmoid(model.nets["decoder"](model.nets["encoder"](x)))).mean()
    assert 10 < num(hand) < 200
    assert abs(num(ours) - num(hand)) < TOL
    for name in ("encoder", "decoder"):
        g_ours = grads(term_loss(program, model, 0, batch, len(x)), model.nets[name])
        g_hand = grads(bernoulli_nll(x, torch.sigmoid(model.nets["decoder"](model.nets["encoder"](x)))).mean(), model.nets[name])
        for a, b in zip(g_ours, g_hand):
            assert a is not None and b is not None
            assert num((a - b).abs().max()) < TOL, name
    assert term(program, 0, 0).bound.reaches == {"encoder", "decoder"}


def hand_corrupt(x: torch.Tensor, kind: str, level: float) -> torch.Tensor:
    if kind == "masking":
        return x * (torch.rand(x.shape) >= level).double()
    if kind == "gaussian":
        return x + level * torch.randn(x.shape)
    hit = torch.rand(x.shape) < level
    salt = (torch.rand(x.shape) < 0.5).double()
    return torch.where(hit, salt, x)


@pytest.mark.parametrize("kind,level", [("masking", 0.3), ("gaussian", 0.2), ("salt_pepper", 0.25)])
def test_recon_denoising_matches_hand_formula(registry, kind, level):
    program, model, batch = build(registry, DAE, [f"phases.0.terms=[{{term: recon, options: {{corrupt: {{kind: {kind}, level: {level}}}}}}}]"])
    x = batch["x"]
    enc, dec = model.nets["encoder"], model.nets["decoder"]

    def hand(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        x_tilde = hand_corrupt(x, kind, level)
        return bernoulli_nll(x, torch.sigmoid(dec(enc(x_tilde)))).mean()  # the target is the clean x

    ours = term_loss(program, model, 0, batch, len(x))
    assert abs(num(ours) - num(hand(SEED))) < TOL
    clean = bernoulli_nll(x, torch.sigmoid(dec(enc(x)))).mean()
    assert abs(num(ours) - num(clean)) > 1e-4  # the corruption is really there
    other = term_loss(program, model, 0, batch, len(x), seed=SEED + 1)
    assert abs(num(other) - num(ours)) > 1e-6 and abs(num(other) - num(hand(SEED + 1))) < TOL
    assert f"z ~ q(z|x~), x~ = {kind}(x, {level:g})" in term(program, 0, 0).bound.formula


def test_recon_error_metric_matches_hand_formula(registry):
    program, model, _ = build(registry, AE)
    x = model.dataset.test["x"]
    ours = registry.get("metrics", "recon_error").compute(model)
    hand = (model.nets["decoder"](model.nets["encoder"](x)) - x).pow(2).mean()
    assert set(ours) == {"recon_error"}
    assert abs(ours["recon_error"] - num(hand)) < TOL


# -------------------------------------------------------- (b) sparsity, by hand


def test_sparsity_matches_hand_formula(registry):
    program, model, batch = build(registry, SPARSE)
    x = batch["x"]
    t = term(program, 0, 1)
    assert (t.term, t.weight) == ("sparsity", 3.0)
    ours = term_loss(program, model, 0, batch, len(x), index=1)
    rho = 0.05
    rho_hat = torch.sigmoid(model.nets["encoder"](x)).mean(0)
    hand = (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
    assert num(hand) > 1.0  # an untrained code is about half on: far from rho
    assert abs(num(ours) - num(hand)) < TOL
    assert t.bound.reaches == {"encoder"}


def test_sparsity_rho_option_and_identity_activation(registry):
    program, model, batch = build(registry, SPARSE, ["phases.0.terms=[recon, {term: sparsity, options: {rho: 0.2, activation: identity}}]"])
    x = batch["x"]
    ours = term_loss(program, model, 0, batch, len(x), index=1)
    rho_hat = model.nets["encoder"](x).mean(0).clamp(1e-6, 1 - 1e-6)
    hand = (0.2 * torch.log(0.2 / rho_hat) + 0.8 * torch.log(0.8 / (1 - rho_hat))).sum()
    assert abs(num(ours) - num(hand)) < TOL


# ------------------------------------------------------ (b) wake-sleep, by hand


def test_wake_matches_hand_formula(registry):
    program, model, batch = build(registry, WS)
    x = batch["x"]
    enc, dec = model.nets["encoder"], model.nets["decoder"]

    def hand(seed: int = SEED) -> torch.Tensor:
        torch.manual_seed(seed)
        z = torch.bernoulli(torch.sigmoid(enc(x)))  # z ~ q(z|x), sampled
        return bernoulli_nll(x, torch.sigmoid(dec(z))).mean()

    ours = term_loss(program, model, 0, batch, len(x))
    assert 10 < num(hand()) < 200
    assert abs(num(ours) - num(hand())) < TOL
    assert abs(num(term_loss(program, model, 0, batch, len(x), seed=SEED + 1)) - num(hand(SEED + 1))) < TOL
    assert term(program, 0, 0).bound.reaches == {"decoder"}


def test_wake_detaches_a_reparameterised_q_sample(registry):
    # With a Gaussian q(z|x) the q-trace's z carries a gradient to the encoder; wake cuts it.
    program, model, batch = build(registry, WS, ["edges.1.dist=normal"])
    x = batch["x"]
    enc, dec = model.nets["encoder"], model.nets["decoder"]
    torch.manual_seed(SEED)
    h = enc(x)
    mu, logvar = h[:, :32], h[:, 32:]
    z = mu + torch.exp(0.5 * logvar) * torch.randn(len(x), 32)
    hand = bernoulli_nll(x, torch.sigmoid(dec(z.detach()))).mean()
    ours = term_loss(program, model, 0, batch, len(x))
    assert abs(num(ours) - num(hand)) < TOL
    assert not reached(grads(ours, enc))
    g_ours, g_hand = grads(ours, dec), grads(hand, dec)
    for a, b in zip(g_ours, g_hand):
        assert a is not None and b is not None and num((a - b).abs().max()) < TOL


def test_sleep_matches_hand_formula(registry):
    program, model, _ = build(registry, WS)
    assert not program.phases[1].needs_data  # sleep dreams: no data batch
    n = 64
    enc, dec = model.nets["encoder"], model.nets["decoder"]

    def hand(seed: int = SEED) -> torch.Tensor:
        torch.manual_seed(seed)
        z = torch.bernoulli(torch.full((n, 32), 0.5))  # z ~ p(z)
        x = torch.bernoulli(torch.sigmoid(dec(z)))  # x ~ p(x|z)
        return bernoulli_nll(z, torch.sigmoid(enc(x))).mean()  # -log q(z|x)

    ours = term_loss(program, model, 1, None, n)
    assert abs(num(ours) - num(hand())) < TOL
    assert abs(num(term_loss(program, model, 1, None, n, seed=SEED + 1)) - num(hand(SEED + 1))) < TOL
    assert reached(grads(ours, enc)) and not reached(grads(ours, dec))
    assert term(program, 1, 0).bound.reaches == {"encoder"}


def hand_infogan_sleep(model, n: int, seed: int = SEED) -> torch.Tensor:
    """-E_p[log q(c|x)]: z ~ N(0, I), c ~ uniform one-hot over 8, x = generator(z, c)."""
    torch.manual_seed(seed)
    z = torch.randn(n, 16)
    c = torch.distributions.OneHotCategorical(logits=torch.zeros(n, 8)).sample()
    x = model.nets["generator"](z, c)
    return -(c * torch.log_softmax(model.nets["qnet"](x), 1)).sum(1).mean()


def test_sleep_categorical_through_the_generator_matches_hand_formula(registry):
    # InfoGAN's mutual-information term: sleep on a categorical code with `detach: false`.
    program, model, _ = build(registry, INFOGAN)
    t = term(program, 1, 1)
    assert t.term == "sleep" and t.bound.reaches == {"qnet", "generator"}
    ours = term_loss(program, model, 1, None, 64, index=1)
    hand = hand_infogan_sleep(model, 64)
    assert 1.5 < num(hand) < 3.0  # about log 8 for an untrained q
    assert abs(num(ours) - num(hand)) < TOL
    for name in ("generator", "qnet"):
        g_ours = grads(term_loss(program, model, 1, None, 64, index=1), model.nets[name])
        g_hand = grads(hand_infogan_sleep(model, 64), model.nets[name])
        for a, b in zip(g_ours, g_hand):
            assert a is not None and b is not None and num((a - b).abs().max()) < TOL, name


def test_sleep_detached_leaves_the_generator_alone(registry):
    program, model, _ = build(registry, INFOGAN, ["phases.1.terms=[adversarial.g, sleep]", "phases.1.update=[generator, qnet]"])
    assert term(program, 1, 1).bound.reaches == {"qnet"}
    ours = term_loss(program, model, 1, None, 64, index=1)
    assert abs(num(ours) - num(hand_infogan_sleep(model, 64))) < TOL
    assert not reached(grads(ours, model.nets["generator"])) and reached(grads(ours, model.nets["qnet"]))


def test_elbo_metric_applies_to_the_helmholtz_machine(registry):
    # Bernoulli q(z|x) against a Bernoulli prior has no closed-form KL here: a one-sample estimate.
    program, model, _ = build(registry, WS)
    metric = registry.get("metrics", "elbo")
    assert metric.applies(model)
    torch.manual_seed(0)
    out = metric.compute(model)
    x = model.dataset.test["x"]
    torch.manual_seed(0)
    logits = model.nets["encoder"](x)
    z = torch.bernoulli(torch.sigmoid(logits))
    rec = bernoulli_nll(x, torch.sigmoid(model.nets["decoder"](z)))
    kl = -bernoulli_nll(z, torch.sigmoid(logits)) + bernoulli_nll(z, torch.full_like(z, 0.5))
    assert abs(out["test_recon"] - num(rec.mean())) < TOL
    assert abs(out["test_kl"] - num(kl.mean())) < TOL
    assert abs(out["test_nelbo"] - num((rec + kl).mean())) < TOL


# ------------------------------------------------------- conditional accuracy


def test_cond_accuracy_real_is_one_nearest_neighbour(registry):
    program, model, _ = build(registry, CGAN)
    out = registry.get("metrics", "cond_accuracy").compute(model)
    tx, ty = model.dataset.train["x"], model.dataset.train["y"].argmax(1)
    x, y = model.dataset.test["x"], model.dataset.test["y"].argmax(1)
    nearest = torch.cdist(x, tx).argmin(1)
    assert abs(out["cond_accuracy_real"] - num((ty[nearest] == y).double().mean())) < TOL
    assert 0 <= out["cond_accuracy"] <= 1


def test_cond_accuracy_can_read_labels_with_the_trained_classifier(registry):
    program, model, _ = build(registry, CGAN)
    metric = copy.copy(registry.get("metrics", "cond_accuracy"))
    metric.options = metric.Options(reader="classifier")
    out = metric.compute(model)
    # the real test images read by the classifier: its own test accuracy, which it reports beside
    assert out["cond_accuracy_real"] == pytest.approx(out["cond_reader_accuracy"], abs=1e-6)
    assert out["cond_reader_accuracy"] > 0.9
    assert 0 <= out["cond_accuracy"] <= 1
    with pytest.raises(ValueError):
        metric.Options(reader="knn")


def test_cond_accuracy_applies_only_to_conditional_generators(registry):
    metric = registry.get("metrics", "cond_accuracy")
    assert metric.applies(build(registry, CGAN)[1])
    assert not metric.applies(build(registry, INFOGAN)[1])  # c is a latent code, not a data label
    assert not metric.applies(build(registry, AE)[1])


# ------------------------------------------------------------------ programs


def test_family_programs_read_like_the_formalism(registry):
    aae = str(compile_file(AAE, registry=registry).program)
    assert "adversarial.d@adv_z    nonsaturating D-loss of discriminator: real (p.z) vs fake (q.z)" in aae
    assert "phase encoder" in aae and "G-loss through discriminator: fake (q.z)\n" in aae
    ali = compile_file(ALI, registry=registry).program
    assert ali.phases[1].terms[0].bound.reaches == {"generator", "encoder", "discriminator"}
    cgan = str(compile_file(CGAN, registry=registry).program)
    assert "p-trace   y ~ data; z ~ normal; x ~ deterministic(generator(z, y))" in cgan
    ws = compile_file(WS, registry=registry).program
    assert [(p.name, p.update, p.frozen) for p in ws.phases] == [("wake", ("decoder",), ("encoder",)), ("sleep", ("encoder",), ("decoder",))]


def test_family_defaults_fill_short_specs(write_spec, registry):
    for family, phases in (("ae", ["recon"]), ("helmholtz", ["wake", "sleep"])):
        path = write_spec(f"unigen: 1\nname: short-{family}\nfamily: {family}\n", name=f"{family}.yaml")
        program = compile_file(path, registry=registry).program
        assert [p.name for p in program.phases] == phases


# ------------------------------------------------------------------ bind errors


def g014(diags) -> str:
    found = [d for d in diags if d.code in ("G014", "G010", "G016")]
    assert found, diags
    return " ".join(f"{d.code} {d.message} {d.hint}" for d in found)


def test_recon_without_density_asks_for_a_loss(registry):
    text = g014(compile_errors(registry, AE, ["phases.0.terms=[recon]"]))
    assert "G014" in text and "`deterministic` and has no density" in text and "loss: mse" in text


def test_recon_needs_the_parents_in_the_q_trace(registry):
    text = g014(compile_errors(registry, SPECS / "gan-ring.yaml", ["phases.1.terms=[{term: recon, options: {loss: mse}}]"]))
    assert "`z` is latent and no inference edge infers it" in text


def test_recon_corrupt_level_is_checked(registry):
    text = g014(compile_errors(registry, DAE, ["phases.0.terms=[{term: recon, options: {corrupt: {kind: masking, level: 1.5}}}]"]))
    assert "must be below 1" in text


def test_sparsity_refuses_a_code_without_gradient(registry):
    text = g014(compile_errors(registry, WS, ["phases.1.terms=[sparsity]"]))
    assert "`bernoulli`: its samples carry no gradient" in text


def test_wake_refuses_an_edge_without_density(registry):
    text = g014(compile_errors(registry, AE, ["phases.0.terms=[wake]", "phases.0.update=[decoder]", "networks.encoder.trainable=false"]))
    assert "`deterministic` and has no density" in text


def test_reaches_stop_at_sampled_discrete_latents(registry):
    # recon through a Bernoulli code cannot train the encoder: G010, not a silent no-op.
    text = g014(compile_errors(registry, WS, ["phases.0.terms=[recon]", "phases.0.update=[decoder, encoder]"]))
    assert "G010" in text and "updates `encoder`" in text
