"""Every adversarial objective's D-loss and G-loss, and their gradients, equal the formula
written out by hand in plain PyTorch on a fixed batch and fixed noise (float64); WGAN's
weight clipping and WGAN-GP's gradient penalty included, the penalty's gradient also against
finite differences; the Wasserstein families' defaults (critic steps, optimizers)."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT

from plugins.unigen_gan.objectives import gradient_penalty
from unigen.compiler.compiler import compile_file
from unigen.training.data import load_dataset
from unigen.training.model import Model, StepContext

GAN = ROOT / "specs" / "gan-ring.yaml"
SEED = 4321
TOL = 1e-5
CPU = torch.device("cpu")
N = 48


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def softplus(t):  # log(1 + e^t), written out
    return torch.log1p(torch.exp(t))


# objective -> (D-loss of real logits r and fake logits f, G-loss of fake logits f)
HAND = {
    "nonsaturating": (lambda r, f: -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean(), lambda f: -torch.log(torch.sigmoid(f)).mean()),
    "minimax": (lambda r, f: -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean(), lambda f: torch.log(1 - torch.sigmoid(f)).mean()),
    "hinge": (lambda r, f: torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(), lambda f: -f.mean()),
    "least_squares": (lambda r, f: ((r - 1) ** 2).mean() / 2 + (f**2).mean() / 2, lambda f: ((f - 1) ** 2).mean() / 2),
    "wasserstein": (lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()),
    "wgan_gp": (lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()),
}
# Options that leave only the plain objective (no R1, no clipping, no penalty).
PLAIN = {"wasserstein": ["edges.1.options.clip=null"], "wgan_gp": ["edges.1.options.gp=0"]}

_DATA: dict = {}


def build(registry, objective, extra=()):
    opts = ["train.device=cpu", f"edges.1.objective={objective}", "edges.1.options.r1=0", "networks.generator.hidden=[32, 32]", "networks.discriminator.hidden=[32, 32]", *extra]
    program = compile_file(GAN, opts, registry).program
    if "ring" not in _DATA:
        _DATA["ring"] = load_dataset(program)
    model = Model(program, CPU, _DATA["ring"])
    x = model.dataset.train["x"][:N].double()
    return program, model, x


def ours(program, model, phase, x):
    torch.manual_seed(SEED)
    batch = {"x": x} if phase == 0 else None
    return program.phases[phase].terms[0].bound.loss(StepContext(model, batch, N))


def hand_fake(model):
    torch.manual_seed(SEED)
    return model.nets["generator"](torch.randn(N, 16))


def hand_gp(model, x, fake, lam):
    """lam * mean (||d D / d x_hat||_2 - 1)^2, x_hat = e x + (1 - e) fake, e ~ U(0, 1) drawn after the noise z."""
    e = torch.rand(N, 1)
    xh = (e * x + (1 - e) * fake.detach()).requires_grad_(True)
    (g,) = torch.autograd.grad(model.nets["discriminator"](xh).sum(), xh, create_graph=True)
    return lam * ((g.pow(2).sum(1).sqrt() - 1) ** 2).mean()


def grads(loss, params):
    return torch.autograd.grad(loss, params)


def close(a, b):
    assert abs(a.item() - b.item()) < TOL, (a.item(), b.item())


def close_grads(ga, gb):
    assert any(g.abs().max() > 1e-8 for g in gb)
    for a, b in zip(ga, gb):
        assert (a - b).abs().max().item() < TOL


def test_every_registered_objective_has_a_hand_formula(registry):
    assert set(registry.names("objectives")) == set(HAND)


@pytest.mark.parametrize("objective", sorted(HAND))
def test_d_loss_and_gradient_match_hand_formula(registry, objective):
    program, model, x = build(registry, objective, PLAIN.get(objective, []))
    dparams = list(model.nets["discriminator"].parameters())
    loss = ours(program, model, 0, x)
    fake = hand_fake(model)
    hand = HAND[objective][0](model.nets["discriminator"](x), model.nets["discriminator"](fake))
    close(loss, hand)
    close_grads(grads(ours(program, model, 0, x), dparams), grads(hand, dparams))


@pytest.mark.parametrize("objective", sorted(HAND))
def test_g_loss_and_gradient_match_hand_formula(registry, objective):
    program, model, _ = build(registry, objective, PLAIN.get(objective, []))
    gparams = list(model.nets["generator"].parameters())
    loss = ours(program, model, 1, None)
    hand = HAND[objective][1](model.nets["discriminator"](hand_fake(model)))
    close(loss, hand)
    close_grads(grads(ours(program, model, 1, None), gparams), grads(hand, gparams))


def test_wasserstein_clips_the_critic_before_each_use(registry):
    clip = 0.05
    program, model, x = build(registry, "wasserstein", [f"edges.1.options.clip={clip}"])
    disc = model.nets["discriminator"]
    before = [p.detach().clone() for p in disc.parameters()]
    assert max(p.abs().max().item() for p in before) > clip  # the default init exceeds it: clipping shows
    loss = ours(program, model, 0, x)
    for b, p in zip(before, disc.parameters()):
        assert torch.equal(p.detach(), b.clamp(-clip, clip))
    close(loss, HAND["wasserstein"][0](disc(x), disc(hand_fake(model))))
    # The generator phase sees the clipped critic too: a critic moved outside is clipped again.
    with torch.no_grad():
        next(disc.parameters()).add_(1.0)
    ours(program, model, 1, None)
    assert max(p.abs().max().item() for p in disc.parameters()) <= clip


@pytest.mark.parametrize("lam", [10.0, 2.5])
def test_wgan_gp_d_loss_and_gradient_match_hand_formula(registry, lam):
    program, model, x = build(registry, "wgan_gp", [f"edges.1.options.gp={lam}"])
    disc = model.nets["discriminator"]
    dparams = list(disc.parameters())

    def hand():
        fake = hand_fake(model)  # reseeds, then draws z; the interpolation weights come next
        base = HAND["wgan_gp"][0](disc(x), disc(fake))
        return base, hand_gp(model, x, fake, lam)

    base, penalty = hand()
    assert penalty.item() > 1e-3
    close(ours(program, model, 0, x), base + penalty)
    close_grads(grads(ours(program, model, 0, x), dparams), grads(sum(hand()), dparams))


def test_gradient_penalty_gradient_matches_finite_differences():
    """The penalty is differentiated through a gradient (double backward): its gradient with
    respect to the critic's parameters agrees with central finite differences (float64)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    real, fake = torch.randn(6, 2), torch.randn(6, 2)

    def critic(flat):
        chunks, i = {}, 0
        for name, shape in zip(names, shapes):
            chunks[name] = flat[i : i + shape.numel()].view(shape)
            i += shape.numel()
        return lambda x: torch.func.functional_call(net, chunks, (x,))

    def penalty(flat):
        torch.manual_seed(7)  # the same interpolation weights at every evaluation
        return gradient_penalty(critic(flat), [real], [fake], 3.0)

    flat = torch.cat([p.detach().flatten() for p in net.parameters()]).requires_grad_(True)
    assert torch.autograd.gradcheck(penalty, (flat,), eps=1e-6, atol=1e-7, rtol=1e-5)
    # And its value is the formula: 3 * mean (||grad D(x_hat)|| - 1)^2.
    torch.manual_seed(7)
    e = torch.rand(6, 1)
    xh = (e * real + (1 - e) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(flat)(xh).sum(), xh)
    close(penalty(flat), 3.0 * ((g.norm(dim=1) - 1) ** 2).mean())


@pytest.mark.parametrize(("family", "objective", "optim"), [("wgan", "wasserstein", "rmsprop"), ("wgan_gp", "wgan_gp", "adam")])
def test_wasserstein_families_default_to_five_critic_steps(registry, write_spec, family, objective, optim):
    spec = write_spec(f"""
        unigen: 1
        name: w
        family: {family}
    """)
    program = compile_file(spec, [], registry).program
    critic, gen = program.phases
    assert (critic.repeats, gen.repeats) == (5, 1)
    assert critic.optim == gen.optim == optim
    assert program.graph.of_kind("adversarial")[0].objective == objective
    # Critic steps per generator step are a phase option, as on any phase.
    program = compile_file(GAN, ["phases.discriminator.repeats=3"], registry).program
    assert [p.repeats for p in program.phases] == [3, 1]


@pytest.mark.parametrize("objective", ["nonsaturating", "wgan_gp"])
def test_pacgan_packing_judges_m_samples_jointly(registry, objective):
    m = 4
    program, model, x = build(registry, objective, [f"edges.1.options.pack={m}"])
    assert "discriminator  mlp(hidden=[32, 32]): [8] -> [1]" in str(program)  # 4 samples of [2]
    disc = model.nets["discriminator"]
    dparams = list(disc.parameters())

    def hand():
        fake = hand_fake(model)
        base = HAND[objective][0](disc(x.reshape(N // m, 2 * m)), disc(fake.reshape(N // m, 2 * m)))
        if objective == "wgan_gp":  # interpolate sample by sample, judge the packs of interpolates
            e = torch.rand(N, 1)
            xh = (e * x + (1 - e) * fake.detach()).requires_grad_(True)
            (g,) = torch.autograd.grad(disc(xh.reshape(N // m, 2 * m)).sum(), xh, create_graph=True)
            base = base + 10.0 * ((g.pow(2).sum(1).sqrt() - 1) ** 2).mean()
        return base

    close(ours(program, model, 0, x), hand())
    close_grads(grads(ours(program, model, 0, x), dparams), grads(hand(), dparams))
    g_hand = HAND[objective][1](disc(hand_fake(model).reshape(N // m, 2 * m)))
    close(ours(program, model, 1, None), g_hand)
