"""The flow plugin: RealNVP's inverse and log-determinant, the `flow` density (against the
change-of-variables formula written out, its normalisation, its samples), the G021 rule, and the
two shipped flow specs compiled and trained."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import unigen_flow
from torch import nn
from unigen_flow.dist import FlowDensity, FlowDist, FlowOptions
from unigen_flow.realnvp import RealNVP, RealNVPArch, RealNVPOptions, checkerboard
from unigen_flow.rules import InvertibleRule

import unigen
from unigen import hookimpl
from unigen.api.contexts import EdgeInfo
from unigen.api.kinds import Arch, Dist
from unigen.api.registry import Registry, default_registry, load_registry

ROOT = Path(__file__).resolve().parents[1]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@pytest.fixture(scope="module")
def flow_registry() -> Registry:
    """The installed plugins, with this one loaded from the tree when it is not installed."""
    reg = default_registry()
    return reg if reg.has("distributions", "flow") else load_registry(extra=[unigen_flow])


def perturbed(module: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """`module` in float64 with its parameters moved off their start (a coupling starts as the
    identity), by about `scale` of each layer's own size."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype) / math.sqrt(math.prod(p.shape[1:])))
    return module


def realnvp(shape: tuple[int, ...], parents: list[tuple[int, ...]] = (), scale: float = 0.3, seed: int = 0, **options) -> RealNVP:
    o = RealNVPOptions(**options)
    module = RealNVPArch().build([shape, *parents], shape, o)
    return perturbed(module, scale, seed)


def jacobian_logdet(module: nn.Module, x: torch.Tensor, parents: list[torch.Tensor], create_graph: bool = False) -> torch.Tensor:
    """log|det du/dx| of each row from autograd's full Jacobian of the forward map."""
    out = []
    for i in range(len(x)):
        row = [p[i : i + 1] for p in parents]
        jac = torch.autograd.functional.jacobian(lambda v, row=row: module(v.view(1, *x.shape[1:]), *row)[0].flatten(), x[i].flatten(), create_graph=create_graph)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


# ------------------------------------------------------------------------------ RealNVP


@pytest.mark.parametrize(
    ("shape", "parents"),
    [((2,), []), ((5,), [(3,)]), ((1, 4, 4), [(2,), (3,)]), ((1,), [(2,)])],
    ids=["2d", "odd-vector-with-a-parent", "image-two-parents", "scalar"],
)
def test_realnvp_inverts_and_its_logdet_is_the_jacobians(shape, parents):
    torch.manual_seed(0)
    module = realnvp(shape, parents, couplings=6, hidden=[16, 16])
    x = torch.randn(4, *shape, dtype=torch.float64)
    cond = [torch.randn(4, *s, dtype=torch.float64) for s in parents]
    u, logdet = module(x, *cond)
    assert u.shape == x.shape and logdet.shape == (4,)
    assert not torch.allclose(u, x)  # a perturbed flow is not the identity
    assert torch.allclose(module.inverse(u, *cond), x, atol=1e-12, rtol=0)
    assert torch.allclose(logdet, jacobian_logdet(module, x, cond), atol=1e-10, rtol=0)
    assert logdet.abs().max() > 1e-3  # and the check compares something


def test_a_new_realnvp_is_the_identity():
    module = RealNVPArch().build([(3,)], (3,), RealNVPOptions())
    x = torch.randn(5, 3)
    u, logdet = module(x)
    assert torch.equal(u, x) and torch.equal(logdet, torch.zeros(5))


def test_realnvp_alternates_checkerboard_halves():
    assert checkerboard((2,)).tolist() == [1.0, 0.0]
    assert checkerboard((5,)).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert checkerboard((2, 2)).tolist() == [1.0, 0.0, 0.0, 1.0]
    module = RealNVPArch().build([(2,)], (2,), RealNVPOptions(couplings=4))
    kept = [layer.keep.tolist() for layer in module.couplings]
    assert kept == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]  # for 2-D data, one coordinate each


def test_realnvp_log_scale_is_soft_clamped():
    module = RealNVPArch().build([(2,)], (2,), RealNVPOptions(couplings=1, scale_clamp=0.5)).double()
    with torch.no_grad():
        module.couplings[0].net[-1].bias.fill_(100.0)  # a raw log-scale far beyond the clamp
    x = torch.randn(3, 2, dtype=torch.float64)
    u, logdet = module(x)
    assert torch.allclose(logdet, torch.full((3,), 0.5 * math.tanh(200.0), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(module.inverse(u), x, atol=1e-12)


def test_realnvp_check_refuses_an_output_that_is_not_its_input():
    arch = RealNVPArch()
    assert arch.check([(2,), (4,)], (2,), RealNVPOptions()) == []
    (msg,) = arch.check([(2,)], (4,), RealNVPOptions())
    assert msg.startswith("a flow maps a variable onto itself: its output shape [4] differs from its first input's shape [2]; use `realnvp` under a distribution that evaluates its own value")


# ------------------------------------------------------------------------------ the density


def test_flow_kind_declares_what_the_core_reads():
    kind = FlowDist()
    assert isinstance(kind, Dist)
    assert (kind.evaluates, kind.needs, kind.reparam, kind.has_density, kind.n_params, kind.can_be_prior) == (True, "invertible", True, True, 1, False)
    assert FlowOptions().base == "normal"
    with pytest.raises(TypeError, match="evaluates its own value"):
        kind.make(torch.zeros(2, 2), 1, FlowOptions())
    assert RealNVPArch.invertible and isinstance(RealNVPArch(), Arch)


def test_log_prob_value_and_gradient_match_the_change_of_variables_formula():
    """log p(x | c) = sum_i log N(u_i; 0, 1) + log|det du/dx|, the determinant from autograd's
    Jacobian, not from the flow's own log-scales; value and parameter gradient in float64."""
    torch.manual_seed(1)
    module = realnvp((3,), [(2,)], couplings=4, hidden=[8])
    x = torch.randn(5, 3, dtype=torch.float64)
    c = torch.randn(5, 2, dtype=torch.float64)
    params = list(module.parameters())

    got = FlowDist().density(module, module, [c], (3,), 5, FlowOptions()).log_prob(x)
    u = module(x, c)[0]
    want = (-0.5 * u.pow(2) - HALF_LOG_2PI).sum(1) + jacobian_logdet(module, x, [c], create_graph=True)
    assert got.shape == (5,)
    assert torch.allclose(got, want, atol=1e-10, rtol=0)
    g_got = torch.autograd.grad(got.sum(), params)
    g_want = torch.autograd.grad(want.sum(), params)
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9)
    assert max(float(g.abs().max()) for g in g_got) > 1e-3


def test_the_density_integrates_to_one_over_the_plane(one_thread):
    """Quadrature (a Riemann sum) on a 241^2 grid over [-12, 12]^2 (spacing 0.1), for two
    values of the parent: within 1e-3 of 1 (the sum of a smooth, fast-decaying density on a
    regular grid is far more accurate than that), for a density well away from the base's."""
    torch.manual_seed(2)
    module = realnvp((2,), [(1,)], couplings=6, hidden=[16, 16])
    axis = torch.linspace(-12, 12, 241, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    cell = float(axis[1] - axis[0]) ** 2
    for c in (-1.0, 2.0):
        cond = torch.full((len(grid), 1), c, dtype=torch.float64)
        with torch.no_grad():
            logp = FlowDist().density(module, module, [cond], (2,), len(grid), FlowOptions()).log_prob(grid)
        mass = float(logp.exp().sum()) * cell
        assert abs(mass - 1) < 1e-3, mass
        base = (-0.5 * grid.pow(2) - HALF_LOG_2PI).sum(1)
        near = grid.norm(dim=1) < 3
        assert float((logp - base)[near].abs().max()) > 0.5  # not the base density itself


def test_samples_follow_log_prob(one_thread):
    """Samples and log_prob describe one density: E_{x ~ p}[q(x) / p(x)] = 1 for a normalised
    q (here N(0.3, 0.6^2 I)), checked to four standard errors on 40,000 samples."""
    torch.manual_seed(3)
    module = realnvp((2,), couplings=6, hidden=[16, 16])
    density = FlowDist().density(module, module, [], (2,), 40_000, FlowOptions())
    x = density.sample()
    assert x.shape == (40_000, 2) and not x.requires_grad
    with torch.no_grad():
        log_p = density.log_prob(x)
    q = torch.distributions.Independent(torch.distributions.Normal(torch.full((2,), 0.3, dtype=torch.float64), torch.full((2,), 0.6, dtype=torch.float64)), 1)
    w = (q.log_prob(x) - log_p).exp()
    se = float(w.std()) / math.sqrt(len(w))
    assert abs(float(w.mean()) - 1) < 4 * se and se < 0.02, (float(w.mean()), se)
    # Draws of another density (wider normal noise) fail the same check.
    y = 1.5 * torch.randn(40_000, 2, dtype=torch.float64)
    with torch.no_grad():
        w_wrong = (q.log_prob(y) - density.log_prob(y)).exp()
    assert abs(float(w_wrong.mean()) - 1) > 0.1


def test_rsample_carries_gradients_to_the_parameters_and_sample_does_not():
    torch.manual_seed(4)
    module = realnvp((2,), [(3,)], couplings=2, hidden=[8])
    c = torch.randn(6, 3, dtype=torch.float64)
    density = FlowDist().density(module, module, [c], (2,), 6, FlowOptions())
    torch.manual_seed(5)
    x = density.rsample()
    torch.manual_seed(5)
    u = torch.randn(6, 2, dtype=torch.float64)
    assert torch.allclose(x, module.inverse(u, c), atol=1e-14)
    grads = torch.autograd.grad(x.pow(2).sum(), list(module.parameters()), allow_unused=True)
    assert all(g is not None for g in grads) and max(float(g.abs().max()) for g in grads) > 0
    assert density.sample().requires_grad is False
    assert density.rsample(torch.Size([4])).shape == (4, 6, 2)
    with pytest.raises(NotImplementedError):
        _ = density.mean


def test_log_prob_goes_through_the_network_as_the_phase_runs_it():
    """`net` scores the value (a compiled or wrapped network); `module` draws samples."""
    torch.manual_seed(6)
    module = realnvp((2,), couplings=2, hidden=[8])
    calls = []

    def net(x, *parents):
        calls.append(x.shape)
        return module(x, *parents)

    density = FlowDensity(net, module, [], (2,), 3)
    density.log_prob(torch.zeros(3, 2, dtype=torch.float64))
    density.sample()
    assert calls == [torch.Size([3, 2])]


# ------------------------------------------------------------------------------ G021


class NotInverse(nn.Module):
    """u = 2x with log|det| right, but an inverse that returns u itself."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.d = d

    def forward(self, x, *parents):
        return 2 * x, torch.full((len(x),), self.d * math.log(2.0), dtype=x.dtype)

    def inverse(self, u, *parents):
        return u


class WrongLogdet(NotInverse):
    """u = 2x, inverts, but reports log|det| = 0."""

    def forward(self, x, *parents):
        return 2 * x, x.new_zeros(len(x))

    def inverse(self, u, *parents):
        return u / 2


class Doubling(NotInverse):
    """u of twice the variable's width."""

    def forward(self, x, *parents):
        return torch.cat([x, x], 1), x.new_zeros(len(x))


class Fake(Arch):
    invertible = True

    def __init__(self, module: type[nn.Module]) -> None:
        self.module = module

    def build(self, inputs, output, options):
        return self.module(math.prod(inputs[0]))


class TwoParams(FlowDist):
    n_params = 2


def graph_of(arch: str, dist: str = "flow", parents: tuple[str, ...] = (), options: dict | None = None) -> SimpleNamespace:
    """A graph view with one generative edge `parents -> x` (x of shape [2]) computed by `flow`."""
    edge = EdgeInfo(name="p_x", kind="generative", parents=parents, child="x", net="flow", dist=dist, objective=None, options={}, index=0)
    shapes = {"x": (2,), "z": (3,)}
    spec = SimpleNamespace(networks={"flow": SimpleNamespace(arch=arch, options=options or {})})
    return SimpleNamespace(spec=spec, edges=[edge], of_kind=lambda kind: [edge] if kind == "generative" else [], shape=lambda v: shapes[v])


class Registered:
    """A registry view over a few kinds of this test's own and the real registry's."""

    def __init__(self, base: Registry, **kinds: object) -> None:
        self.base, self.kinds = base, kinds

    def has(self, kind, name):
        return name in self.kinds or self.base.has(kind, name)

    def get(self, kind, name, path=()):
        return self.kinds[name] if name in self.kinds else self.base.get(kind, name, path)

    def options(self, kind, name, options, path):
        return (None, []) if name in self.kinds else self.base.options(kind, name, options, path)


def g021(graph, registry) -> list:
    return list(InvertibleRule().check(graph, registry))


def test_g021_accepts_realnvp_and_leaves_the_random_streams_alone(flow_registry):
    state = torch.random.get_rng_state()
    assert g021(graph_of("realnvp"), flow_registry) == []
    assert g021(graph_of("realnvp", parents=("z",), options={"couplings": 3, "hidden": [8]}), flow_registry) == []
    assert torch.equal(torch.random.get_rng_state(), state)


def test_g021_leaves_an_architecture_that_is_not_invertible_to_the_core(flow_registry):
    """The core's G021 refuses `mlp` under `flow` (see the compiled spec below); the rule does
    not report it a second time."""
    assert g021(graph_of("mlp"), flow_registry) == []


def test_g021_refuses_a_flow_whose_shapes_do_not_invert(flow_registry):
    reg = Registered(flow_registry, two=TwoParams(), doubling=Fake(Doubling))
    (d,) = g021(graph_of("realnvp", dist="two"), reg)
    assert "network `flow` would map `x` [2] to [4]: a flow whose shapes do not invert." in d.message
    assert "a flow maps a variable onto itself" in d.hint
    (d,) = g021(graph_of("doubling"), reg)
    assert "network `flow` (`doubling`) maps rows of shape [2] to u of shape [4]" in d.message and "shapes do not invert" in d.message


def test_g021_refuses_a_wrong_inverse_or_log_determinant(flow_registry):
    reg = Registered(flow_registry, notinverse=Fake(NotInverse), wronglogdet=Fake(WrongLogdet))
    (d,) = g021(graph_of("notinverse"), reg)
    assert d.code == "G021" and "network `flow` (`notinverse`) does not invert: inverse(forward(x)) differs from x by" in d.message
    (d,) = g021(graph_of("wronglogdet"), reg)
    assert "network `flow` (`wronglogdet`) gives log|det du/dx| = 0 where the Jacobian's is 1.38629" in d.message


def test_g021_ignores_densities_that_need_no_inverse(flow_registry):
    assert g021(graph_of("mlp", dist="normal"), flow_registry) == []


# ------------------------------------------------------------------------------ specs

SPECS = [ROOT / "specs" / "realnvp-ring.yaml", ROOT / "specs" / "realnvp-grid.yaml"]


class BrokenFlows:
    """A plugin of invertible-declared architectures that are not."""

    @hookimpl
    def unigen_register_networks(self, register) -> None:
        register("notinverse", Fake(NotInverse))


def spec_text(arch: str) -> str:
    """specs/realnvp-ring.yaml with network `flow` of architecture `arch`."""
    text = SPECS[0].read_text()
    shipped = "flow: {arch: realnvp, couplings: 8, hidden: [64, 64], activation: relu}"
    assert shipped in text
    return text.replace(shipped, f"flow: {{arch: {arch}}}")


def test_a_flow_on_a_network_that_is_not_invertible_is_g021(flow_registry, write_spec):
    diags = unigen.validate(write_spec(spec_text("mlp")), registry=flow_registry)
    assert [d.code for d in diags] == ["G021"], diags
    (d,) = diags
    assert d.path == ("networks", "flow", "arch") and "`flow` on edge `p_x`" in d.message and "`flow` (mlp) is not" in d.message
    assert "`realnvp`" in d.hint


def test_a_flow_whose_network_does_not_invert_is_g021_at_the_prior(write_spec):
    registry = load_registry(extra=[BrokenFlows()])
    path = write_spec(spec_text("notinverse"))
    (d,) = unigen.validate(path, registry=registry)
    assert d.code == "G021" and d.path == ("variables", "x", "prior", "net")
    assert d.message.startswith("edge `p_x` evaluates `x` with distribution `flow`, which needs an invertible network, but network `flow` (`notinverse`) does not invert")
    text = path.read_text().splitlines()
    assert "prior: {dist: flow, net: flow}" in text[d.line - 1]  # located at x's prior in the file


def test_realnvp_under_a_density_that_does_not_evaluate_its_value_is_g012(flow_registry, write_spec):
    """`normal` on `z -> x` asks its network for [4] (mean and log-variance) from z: no flow."""
    path = write_spec("""
        unigen: 1
        name: mismatch
        data: {source: ring2d}
        variables:
          x: {observed: true, shape: [2]}
          z: {prior: normal, shape: [2]}
        networks:
          flow: {arch: realnvp, couplings: 2}
          encoder: {arch: mlp, hidden: [8]}
        edges:
          - {generative: z -> x, net: flow, dist: normal}
          - {inference: x -> z, net: encoder, dist: normal}
        phases:
          - {name: elbo, update: [flow, encoder], terms: [elbo]}
    """)
    (d,) = unigen.validate(path, registry=flow_registry)
    assert d.code == "G012" and d.path == ("networks", "flow")
    assert "network `flow` (realnvp) on edge `p_x`: a flow maps a variable onto itself: its output shape [4] differs from its first input's shape [2]" in d.message


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_the_flow_specs_compile_and_train(path, tmp_path, flow_registry):
    program = unigen.compile(path, registry=flow_registry)
    assert "realnvp" in str(program) and ": [2] -> [2]" in str(program) and "-E_q[log p(x)]" in str(program)
    run = unigen.train(path, ["train.eval_samples=500", "data.n_train=5000", "data.n_test=1000"], out=tmp_path / "run", steps=5, registry=flow_registry)
    metrics = run.summary["metrics"]
    assert math.isfinite(metrics["test_nelbo"]) and metrics["test_kl"] == 0  # no latent: the exact NLL
    # The flow starts as the identity, so at step 0 its NLL is the base's on the test split;
    # five steps of training lower it.
    x = run.model.dataset.test["x"].double()
    base_nll = float((0.5 * x.pow(2).sum(1)).mean()) + 2 * HALF_LOG_2PI
    assert metrics["test_nelbo"] < base_nll, (metrics["test_nelbo"], base_nll)
    assert metrics["modes_total"] == (8 if "ring" in path.stem else 25) and 0 <= metrics["hq_fraction"] <= 1
    x = run.sample(16)
    assert x.shape == (16, 2) and bool(torch.isfinite(x).all())
