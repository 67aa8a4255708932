"""The spec language's second set of kinds, through the core alone: a learned prior its network
evaluates, networks with several ports, and undirected factors filled by samplers. Toy kinds of a
test plugin stand in for the shipped ones, so that each core path is checked on its own."""

from __future__ import annotations

import textwrap
import types

import pytest
import torch
from torch import nn

from unigen import hookimpl
from unigen.api import registry as registry_mod
from unigen.api.kinds import Arch, Bound, Dist, Sampler, Term
from unigen.api.registry import load_registry
from unigen.compiler.compiler import compile_spec
from unigen.errors import UnigenError
from unigen.spec.load import parse_spec
from unigen.training.state import load_trainer_state, trainer_state
from unigen.training.trainer import Trainer


class Bilinear(Arch):
    doc = "toy energy -a^T W b"

    def build(self, inputs, output, options):
        return _Bilinear(inputs[0][0], inputs[1][0])


class _Bilinear(nn.Module):
    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(a, b) * 0.1)

    def forward(self, x, y):
        return -((x @ self.W) * y).sum(1, keepdim=True)


class Causal(Arch):
    doc = "toy causal linear map: logit i from x_<i"
    causal = True

    def build(self, inputs, output, options):
        return _Causal(inputs[0][0])


class _Causal(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.zeros(d, d))
        self.b = nn.Parameter(torch.zeros(d))
        self.register_buffer("mask", torch.tril(torch.ones(d, d), -1))

    def forward(self, x, *parents):
        return x @ (self.W * self.mask).T + self.b


class _AR(torch.distributions.Distribution):
    arg_constraints: dict = {}

    def __init__(self, net, module, n, shape):
        self.net, self.module = net, module
        super().__init__(torch.Size([n]), torch.Size(shape), validate_args=False)

    def log_prob(self, x):
        return -nn.functional.binary_cross_entropy_with_logits(self.net(x), x, reduction="none").sum(1)

    def sample(self, sample_shape=torch.Size()):
        x = torch.zeros(self.batch_shape + self.event_shape)
        with torch.no_grad():
            for i in range(x.shape[1]):
                x[:, i] = torch.bernoulli(torch.sigmoid(self.module(x)[:, i]))
        return x


class ToyAR(Dist):
    doc = "toy autoregressive Bernoulli"
    evaluates, needs, reparam = True, "causal", False

    def make(self, out, event_dims, options):
        raise TypeError("evaluated on its value")

    def density(self, net, module, parents, shape, n, options):
        return _AR(net, module, n, shape)


class Shared(Arch):
    doc = "toy network with ports a and b: one trunk, a head per port"

    def ports(self, options):
        return ("a", "b")

    def build(self, inputs, output, options):
        raise TypeError("built through its ports")

    def build_ports(self, signatures, options):
        return _Shared(signatures)


class _Shared(nn.Module):
    def __init__(self, signatures) -> None:
        super().__init__()
        width = next(iter(signatures.values()))[0][0][0]
        self.trunk = nn.Linear(width, 8)
        self.heads = nn.ModuleDict({p: nn.Linear(8, out[0]) for p, (_, out) in signatures.items()})

    def forward(self, z, port):
        return self.heads[port](torch.relu(self.trunk(z)))


class Gibbs(Sampler):
    doc = "toy block Gibbs sampler for binary units; counts its calls in its state"
    traces = frozenset({"m", "q"})

    def fill(self, energy, given, data, n, options, state, mode):
        values = dict(given)
        for v, shape in energy.variables.items():
            if v not in values:
                values[v] = data[v] if v in data and mode == "train" else torch.bernoulli(torch.full((n, *shape), 0.5))
        for v in energy.variables:
            if v not in given:
                values[v] = torch.bernoulli(torch.sigmoid(energy.field(v, values)))
        state["calls"] = state.get("calls", torch.zeros(())) + 1
        return {v: x for v, x in values.items() if v not in given}


class OnlyQ(Gibbs):
    doc = "a sampler that fills the q-trace only"
    traces = frozenset({"q"})


class CD(Term):
    target = None  # the energy of every factor: a DBM's terms bind to no single one
    doc = "toy contrastive divergence"

    def bind(self, site):
        nets = frozenset(e.net for e in site.graph.of_kind("undirected"))

        def loss(ctx):
            energy = ctx.model.energy
            return energy.energy({v: ctx.q[v] for v in energy.variables}).mean() - energy.energy({v: ctx.m[v] for v in energy.variables}).mean()

        return Bound(loss, "E_q[E] - E_m[E]", frozenset({"q", "m"}), nets)


@hookimpl
def _networks(register):
    register("toy_bilinear", Bilinear())
    register("toy_causal", Causal())
    register("toy_shared", Shared())


@hookimpl
def _distributions(register):
    register("toy_ar", ToyAR())


@hookimpl
def _samplers(register):
    register("toy_gibbs", Gibbs())
    register("toy_only_q", OnlyQ())


@hookimpl
def _terms(register):
    register("toy_cd", CD())


class _EntryPoint:
    name = "toy"

    class dist:
        name, version = "unigen-toy", "1.0"

    def load(self):
        module = types.ModuleType("unigen_toy")
        module.unigen_register_networks, module.unigen_register_distributions = _networks, _distributions
        module.unigen_register_samplers, module.unigen_register_terms = _samplers, _terms
        return module


@pytest.fixture(scope="module")
def toy_registry():
    real = registry_mod._entry_points
    registry_mod._entry_points = lambda: list(real()) + [_EntryPoint()]
    try:
        reg = load_registry()
    finally:
        registry_mod._entry_points = real
    assert not reg.problems, reg.problems
    return reg


AR = """
unigen: 1
name: toy-ar
data: {source: digits, binarize: true}
variables:
  x: {observed: true, shape: [64], prior: {dist: toy_ar, net: made}}
networks:
  made: {arch: toy_causal}
phases:
  - {name: nll, update: [made], terms: [elbo]}
train: {steps: 20, batch_size: 64, optim: {lr: 0.05}}
"""

PORTS = """
unigen: 1
name: toy-ports
data: {source: digits_shift, shift: invert}
variables:
  a: {observed: true, shape: [64], data: x}
  b: {observed: true, shape: [64], data: xt}
  z: {prior: normal, shape: [4]}
networks:
  g: {arch: toy_shared}
  d: {arch: mlp, hidden: [16]}
edges:
  - {generative: z -> a, net: g.a, dist: deterministic}
  - {generative: z -> b, net: g.b, dist: deterministic}
  - {adversarial: [a, b], net: d, objective: nonsaturating}
phases:
  - {name: disc, update: [d], terms: [adversarial.d]}
  - {name: gen, update: [g], terms: [adversarial.g]}
train: {steps: 2, batch_size: 16}
"""

RBM = """
unigen: 1
name: toy-rbm
data: {source: digits, binarize: true}
variables:
  v: {observed: true, shape: [64], data: x}
  h: {shape: [6]}
networks:
  rbm: {arch: toy_bilinear}
edges:
  - {undirected: [v, h], net: rbm}
samplers:
  m: {kind: toy_gibbs}
  q: {kind: toy_gibbs}
phases:
  - {name: cd, update: [rbm], terms: [toy_cd]}
train: {steps: 2, batch_size: 16}
"""


def _compile(text, registry, *overrides):
    spec, smap, _ = parse_spec(textwrap.dedent(text), "spec.yaml", list(overrides), registry)
    return compile_spec(spec, registry, smap)


def _problems(text, registry, *overrides):
    with pytest.raises(UnigenError) as err:
        _compile(text, registry, *overrides)
    return err.value.diagnostics


def test_learned_prior_is_a_parentless_edge_whose_network_sees_the_value(toy_registry):
    program = _compile(AR, toy_registry)
    text = str(program)
    assert "p-trace   x ~ toy_ar(made(x))" in text
    assert "made           toy_causal: [64] -> [64]" in text  # the value is the network's input
    assert "-E_q[log p(x)]" in text  # the ELBO without a latent: the exact negative log-likelihood
    assert program.variables["x"].p_source == "edge" and program.edges["p_x"].info.path == ("variables", "x", "prior")


def test_learned_prior_trains_and_scores_the_exact_nll(toy_registry):
    program = _compile(AR, toy_registry)
    trainer = Trainer(program)
    model = trainer.model
    x = model.dataset.test["x"]
    module = model.nets["made"]

    def nll() -> float:
        with torch.no_grad():
            logits = module(x)
        return float(nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean())

    before = nll()
    assert before == pytest.approx(64 * torch.log(torch.tensor(2.0)).item(), rel=1e-6)  # zero weights: p = 1/2 per pixel
    for _ in range(20):
        trainer.step()
    after = nll()
    assert after < before - 5
    with torch.no_grad():
        metrics = toy_registry.get("metrics", "elbo").compute(model)
    assert metrics["test_nelbo"] == pytest.approx(after, rel=1e-5)
    assert metrics["test_kl"] == 0.0
    samples = model.generate(5, "x")  # sequential passes: binary values
    assert samples.shape == (5, 64) and set(samples.unique().tolist()) <= {0.0, 1.0}


def test_learned_prior_misuse_is_g021_or_g001(toy_registry):
    (d,) = _problems(AR, toy_registry, "variables.x.prior={dist: bernoulli, net: made}")
    assert d.code == "G021" and "no density of `x` alone" in d.message and "`toy_ar`" in d.hint
    problems = _problems(AR, toy_registry, "networks.made={arch: mlp, hidden: [8]}")
    (d,) = [p for p in problems if p.path == ("networks", "made", "arch")]  # the core's; a plugin's rule may add the built network's order
    assert d.code == "G021" and "needs a causal network" in d.message and "`toy_causal`" in d.hint and d.path == ("networks", "made", "arch")
    problems = _problems(AR, toy_registry, "variables.x.prior=toy_ar")
    assert [p.code for p in problems][:1] == ["G001"] and "prior: {dist: toy_ar, net: <network>}" in problems[0].hint


def test_ports_share_one_module_and_each_parameter_is_optimised_once(toy_registry):
    program = _compile(PORTS, toy_registry)
    text = str(program)
    assert "a ~ deterministic(g.a(z)); b ~ deterministic(g.b(z))" in text
    assert "g              toy_shared: a: [4] -> [64]; b: [4] -> [64]" in text
    trainer = Trainer(program)
    g = trainer.model.nets["g"]
    gen = next(r for r in trainer.runners if r.plan.name == "gen")
    optimised = [p for group in gen.optimizer.param_groups for p in group["params"]]
    assert len(optimised) == len(list(g.parameters())) == len({id(p) for p in optimised})
    trunk = g.trunk.weight.detach().clone()
    trainer.step()
    assert not torch.equal(trunk, g.trunk.weight)  # both ports' losses reach the shared trunk


@pytest.mark.parametrize(
    ("override", "message", "hint"),
    [
        ("edges.0.net=g.c", "network `g` (toy_shared) has no port `c`; its ports are `a`, `b`.", "choose one of: `a`, `b`."),
        ("edges.0.net=g", "network `g` (toy_shared) has several ports (`a`, `b`), and edge `p_a` names none.", "write e.g. `net: g.a`."),
        ("edges.2.net=d.a", "edge `adv_a_b` calls port `a` of network `d`, but its architecture `mlp` has no ports.", "write `net: d`."),
    ],
)
def test_port_misuse_is_g023(toy_registry, override, message, hint):
    (d,) = _problems(PORTS, toy_registry, override)
    assert (d.code, d.message, d.hint) == ("G023", message, hint)


def test_undirected_factor_prints_its_three_traces_and_trains(toy_registry):
    program = _compile(RBM, toy_registry)
    text = str(program)
    assert "q-trace   v ~ data; h ~ toy_gibbs[energy rbm(v, h)]" in text
    assert "m-trace   v, h ~ toy_gibbs[energy rbm(v, h)] (the chain)" in text
    assert "p-trace   v, h ~ toy_gibbs[energy rbm(v, h)] (a long run of the chain)" in text
    assert "traces   m, q" in text
    assert program.sampled_variable() == "v"
    trainer = Trainer(program)
    W = trainer.model.nets["rbm"].W.detach().clone()
    trainer.step()
    assert not torch.equal(W, trainer.model.nets["rbm"].W)
    assert trainer.model.generate(3, "v").shape == (3, 64)


def test_energy_field_is_the_negative_gradient(toy_registry):
    trainer = Trainer(_compile(RBM, toy_registry))
    energy = trainer.model.energy
    v, h = torch.bernoulli(torch.full((5, 64), 0.5)), torch.bernoulli(torch.full((5, 6), 0.5))
    W = trainer.model.nets["rbm"].W.detach()
    assert torch.allclose(energy.field("h", {"v": v, "h": h}), v @ W, atol=1e-6)  # -dE/dh = W^T v
    assert torch.allclose(energy.field("v", {"v": v, "h": h}), h @ W.T, atol=1e-6)
    assert torch.allclose(energy.energy({"v": v, "h": h}), -((v @ W) * h).sum(1), atol=1e-6)


def test_sampler_state_is_checkpointed(toy_registry):
    trainer = Trainer(_compile(RBM, toy_registry))
    trainer.step()
    trainer.step()
    state = trainer_state(trainer)
    assert float(state["samplers"]["m"]["calls"]) == 2 and float(state["samplers"]["q"]["calls"]) == 2
    fresh = Trainer(_compile(RBM, toy_registry))
    load_trainer_state(fresh, state)
    assert float(fresh.model.sampler_state["m"]["calls"]) == 2


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (["~samplers", "+samplers={q: {kind: toy_gibbs}}"], "G022", "undirected factor `f_v_h` (v, h) has no sampler: nothing draws the model's own values, which training compares the data with."),
        (["~samplers", "+samplers={m: {kind: toy_gibbs}}"], "G022", "the hidden unit `h` of undirected factors has no inference: the q-trace cannot fill it given the data."),
        (["samplers.m.kind=toy_only_q"], "G022", "sampler `toy_only_q` cannot fill the sampler trace `m`; it fills q-trace `q`."),
        (["samplers.m.kind=gibs"], "G001", "unknown sampler `gibs`."),
        (["edges.0.undirected=[v, v]"], "S002", "undirected factor `['v', 'v']` must join two or more distinct variables."),
    ],
)
def test_undirected_misuse(toy_registry, overrides, code, message):
    problems = _problems(RBM, toy_registry, *overrides)
    assert (code, message) in [(p.code, p.message) for p in problems], problems


def test_samplers_without_factors_are_g022(toy_registry):
    problems = _problems(AR, toy_registry, "samplers={m: {kind: toy_gibbs}}")
    assert [(p.code, p.path) for p in problems] == [("G022", ("samplers", "m"))]


def test_drawing_shows_factors_as_lines_ports_as_labels_and_learned_priors(toy_registry):
    from unigen.tools.draw import describe, layout, to_dot

    rbm = describe(_compile(RBM, toy_registry).graph)
    (line,) = rbm.arrows
    assert (line.kind, line.tail, line.head, line.label, line.style["none"]) == ("undirected", "v", "h", "rbm", True)
    assert layout(rbm)["h"][1] > layout(rbm)["v"][1]  # hidden units above the visible ones
    assert '"h" -> "v" [id="undirected:v--h:f_v_h", label="  rbm  ", color="black", fontcolor="black", style="solid", arrowhead="normal", dir="none"]' in to_dot(rbm)
    ports = describe(_compile(PORTS, toy_registry).graph)
    assert sorted(a.label for a in ports.arrows if a.kind == "generative") == ["g.a", "g.b"]
    ar = describe(_compile(AR, toy_registry).graph)
    assert ar.nodes[0].sublabel == "[64]\n~ toy_ar\n(made)" and not ar.arrows


def test_ports_shapes_taken_together_are_checked_by_the_architecture(toy_registry, monkeypatch):
    monkeypatch.setattr(Shared, "check_ports", lambda self, signatures, options: [f"ports {sorted(signatures)} disagree"], raising=False)
    (d,) = _problems(PORTS, toy_registry)
    assert (d.code, d.path) == ("G012", ("networks", "g")) and d.message == "network `g` (toy_shared), its ports `a`, `b`: ports ['a', 'b'] disagree"
