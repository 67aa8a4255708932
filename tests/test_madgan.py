"""MAD-GAN (`options: {identify: c}` on an adversarial link, `multi_mlp` generators): the compiled D-loss
and G-loss, and their gradients, equal the (1 + k)-class cross-entropies written out by hand on
a fixed batch (float64); each generator computes only its own rows; the validator's messages;
and a short training in which the discriminator learns to tell the generators apart."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ROOT
from formula import TOL, float64, num, trained_summary, with_batch  # noqa: F401  (float64: autouse fixture)

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.driver import train_run
from unigen.runs.evaluate import open_run
from unigen.training.model import StepContext

MADGAN = ROOT / "specs" / "madgan-ring.yaml"
SMALL = ["networks.generator.hidden=[16, 16]", "networks.discriminator.hidden=[16, 16]"]
N = 32


def run_term(program, model, phase: int, batch):
    """The phase's term, evaluated as the trainer does, and the context (its traces keep the
    noise that was drawn)."""
    torch.manual_seed(11)
    ctx = StepContext(model, batch, N)
    return program.phases[phase].terms[0].bound.loss(ctx), ctx


def hand_generator(model, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Row i through generator number argmax(c_i), one row at a time."""
    gen = model.nets["generator"]
    rows = []
    for ci, zi in zip(c, z):
        h, i = zi.unsqueeze(0), int(ci.argmax())
        for j, (w, b) in enumerate(zip(gen.weights, gen.biases)):
            h = h @ w[i] + b[i]
            h = torch.relu(h) if j < len(gen.weights) - 1 else h
        rows.append(h[0])
    return torch.stack(rows)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert abs(num(a) - num(b)) < TOL, (num(a), num(b))


def close_grads(a: torch.Tensor, b: torch.Tensor, params) -> None:
    ga, gb = torch.autograd.grad(a, params), torch.autograd.grad(b, params)
    assert any(num(g.abs().max()) > 1e-8 for g in gb)
    for x, y in zip(ga, gb):
        assert num((x - y).abs().max()) < TOL


def test_d_loss_is_the_cross_entropy_over_real_and_the_k_generators(registry):
    program, model, batch = with_batch(registry, MADGAN, SMALL)
    disc = model.nets["discriminator"]
    loss, ctx = run_term(program, model, 0, batch)
    c, z = ctx.p["c"], ctx.p["z"]
    fake = hand_generator(model, c, z).detach()
    # class 0: real; class 1 + i: made by generator i
    hand = -torch.log_softmax(disc(batch["x"]), 1)[:, 0].mean() - torch.log_softmax(disc(fake), 1).gather(1, 1 + c.argmax(1, keepdim=True)).mean()
    close(loss, hand)
    assert disc(fake).shape == (N, 9)
    close_grads(run_term(program, model, 0, batch)[0], hand, list(disc.parameters()))


@pytest.mark.parametrize(("objective", "formula"), [
    ("nonsaturating", lambda p0: -torch.log(p0).mean()),
    ("minimax", lambda p0: torch.log(1 - p0).mean()),
])
def test_g_loss_is_the_objective_on_the_probability_of_real(registry, objective, formula):
    program, model, batch = with_batch(registry, MADGAN, [*SMALL, f"edges.1.objective={objective}"])
    gen = model.nets["generator"]
    loss, ctx = run_term(program, model, 1, None)
    p0 = torch.softmax(model.nets["discriminator"](hand_generator(model, ctx.p["c"], ctx.p["z"])), 1)[:, 0]
    hand = formula(p0)
    close(loss, hand)
    again, ctx2 = run_term(program, model, 1, None)
    assert torch.equal(ctx2.p["z"], ctx.p["z"])
    close_grads(again, hand, list(gen.parameters()))


def test_r1_penalises_the_gradient_of_the_log_odds_of_real(registry):
    gamma = 3.0
    program, model, batch = with_batch(registry, MADGAN, [*SMALL, f"edges.1.options.r1={gamma}"])
    disc = model.nets["discriminator"]
    loss, ctx = run_term(program, model, 0, batch)
    fake = hand_generator(model, ctx.p["c"], ctx.p["z"]).detach()
    x = batch["x"].clone().requires_grad_(True)
    logits = disc(x)
    log_odds = logits[:, 0] - torch.logsumexp(logits[:, 1:], 1)  # log p0 / (1 - p0)
    (g,) = torch.autograd.grad(log_odds.sum(), x, create_graph=True)
    penalty = gamma / 2 * g.pow(2).sum(1).mean()
    assert num(penalty) > 1e-4
    ce = -torch.log_softmax(logits, 1)[:, 0].mean() - torch.log_softmax(disc(fake), 1).gather(1, 1 + ctx.p["c"].argmax(1, keepdim=True)).mean()
    close(loss, ce + penalty)


def test_each_generator_computes_only_its_own_rows(registry):
    _, model, _ = with_batch(registry, MADGAN, SMALL)
    gen = model.nets["generator"]
    c = torch.eye(8)[torch.tensor([3, 3, 5, 0])]
    z = torch.randn(4, 16)
    out = gen(c, z)
    assert torch.allclose(out, hand_generator(model, c, z))
    for i, row in enumerate(out):
        assert torch.allclose(row, gen.single(int(c[i].argmax()), z[i : i + 1])[0])
    grads = torch.autograd.grad(out[2].sum(), list(gen.parameters()))
    for g in grads:  # row 2 was made by generator 5 alone: only its slice of each parameter moves
        touched = {i for i in range(8) if num(g[i].abs().max()) > 0}
        assert touched == {5}


def errors(registry, overrides) -> list:
    with pytest.raises(UnigenError) as exc:
        compile_file(MADGAN, overrides, registry)
    return exc.value.diagnostics


def one(diags, code):
    found = [d for d in diags if d.code == code]
    assert found, [f"{d.code} {d.message}" for d in diags]
    return found[0]


IDENTIFY = ("edges", 1, "options", "identify")


def test_identify_needs_a_categorical_root_behind_the_fake_side(registry):
    d = one(errors(registry, ["edges.1.options.identify=z"]), "G017")
    assert d.path == IDENTIFY and "`z`" in d.message and "prior: categorical" in d.hint
    d = one(errors(registry, ["edges.1.options.identify=cc"]), "G001")
    assert d.path == IDENTIFY and "unknown variable `cc`" in d.message and "`c`" in d.hint
    # c drawn but not a parent of the generator: no fake sample has a value of c to tell
    d = one(errors(registry, ["variables.k={prior: categorical, shape: [8]}", "edges.1.options.identify=k", "networks.generator.arch=mlp"]), "G017")
    assert d.path == IDENTIFY and "p.x is not generated from `k`" in d.message and "k, z -> x" in d.hint


def test_identify_refuses_what_cannot_tell_generators(registry):
    d = one(errors(registry, ["edges.1.options.pack=2"]), "G014")
    assert "packs samples" in d.message and "remove" in d.hint


@pytest.mark.parametrize("objective", ["hinge", "least_squares", "wasserstein"])
def test_identify_is_an_option_of_the_probability_objectives_only(registry, objective):
    d = one(errors(registry, [f"edges.1.objective={objective}"]), "G016")
    assert d.path == IDENTIFY and f"objective `{objective}` has no option `identify`" in d.message


def test_identify_belongs_to_adversarial_edges(registry):
    d = one(errors(registry, ["edges.0.options={identify: c}"]), "G016")
    assert d.path == ("edges", 0, "options", "identify") and "identify" in d.message


def test_multi_mlp_needs_a_one_hot_first_parent(registry):
    d = one(errors(registry, ["edges.0.generative=z -> x", "edges.1.options={}"]), "G012")
    assert "one-hot first parent" in d.message
    d = one(errors(registry, ["networks.generator.batchnorm=true"]), "G016")  # each network sees only its rows: no batch norm
    assert d.path[:2] == ("networks", "generator") and "batchnorm" in d.message


def test_program_says_what_the_discriminator_tells(registry):
    text = str(compile_file(MADGAN, [], registry).program)
    assert "also tells which `c` made each fake" in text and "[8], [16] -> [2]" in text and "[2] -> [9]" in text


def test_discriminator_learns_to_tell_the_generators_apart(registry, tmp_path):
    """A few hundred steps: the generators move apart and the discriminator names the maker of
    a fresh fake sample far above chance (1/8)."""
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    run = train_run(MADGAN, ["networks.generator.hidden=[32, 32]", "networks.discriminator.hidden=[64, 64]", "train.eval_every=0", "train.eval_samples=200"], out=str(tmp_path / "run"), steps=300, device="cpu", registry=registry, quiet=True)
    model = open_run(run, registry=registry).model
    with torch.no_grad():
        c = torch.eye(8)[torch.arange(800) % 8]
        x = model.nets["generator"](c, torch.randn(800, 16))
        said = model.nets["discriminator"](x)[:, 1:].argmax(1)
    accuracy = float((said == c.argmax(1)).float().mean())
    assert accuracy > 0.5, accuracy


def test_madgan_ring_trains_and_reports_modes(registry, tmp_path):
    summary = trained_summary(registry, MADGAN, tmp_path / "run", ["modes_captured", "hq_fraction"])
    assert summary["metrics"]["modes_total"] == 8 and math.isfinite(summary["metrics"]["mode_kl"])


def test_madgan_family_fills_in_generators_and_identification(registry, write_spec):
    spec = write_spec("""
        unigen: 1
        name: m
        family: madgan
    """)
    program = compile_file(spec, [], registry).program
    (link,) = program.graph.of_kind("adversarial")
    assert link.options == {"identify": "c"} and link.objective == "nonsaturating"
    assert program.networks["generator"].arch == "multi_mlp"
    assert program.graph.shape("c") == (8,) and program.graph.into("x", "generative").parents == ("c", "z")


def test_importance_weights_read_the_log_odds_of_real(registry):
    """IWGAN on a MAD-GAN link: weights softmax(s) over the batch (detached), s the log-odds of real."""
    program, model, _ = with_batch(registry, MADGAN, [*SMALL, "phases.generator.terms=[{term: adversarial.g, options: {importance_weighted: true}}]"])
    loss, ctx = run_term(program, model, 1, None)
    logits = model.nets["discriminator"](hand_generator(model, ctx.p["c"], ctx.p["z"]))
    s = logits[:, 0] - torch.logsumexp(logits[:, 1:], 1)
    w = torch.softmax(s.detach(), 0)
    hand = (w * -torch.log(torch.sigmoid(s))).sum()
    close(loss, hand)
    assert num((w - 1 / N).abs().max()) > 1e-4  # the weights are not uniform
    close_grads(run_term(program, model, 1, None)[0], hand, list(model.nets["generator"].parameters()))
