"""Autoregressive densities (plugin `autoregressive`): MADE's and the gated PixelCNN's causal
order, the density against its definition written out as D sequential passes, normalisation
over every binary configuration, sampling frequencies, the G021 rule, and the two specs."""

from __future__ import annotations

import itertools
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from torch import nn

from unigen import hookimpl
from unigen.api.kinds import Arch, Options

try:
    import unigen_autoregressive
except ImportError:  # not installed yet (no entry point): the package from the source tree
    sys.path.insert(0, str(ROOT / "plugins"))
    import unigen_autoregressive

from unigen_autoregressive.dists import AutoregressiveDist, AutoregressiveOptions
from unigen_autoregressive.made import MADEArch, MADEOptions
from unigen_autoregressive.pixelcnn import PixelCNNArch, PixelCNNOptions
from unigen_autoregressive.rules import first_violation

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def made(d: int, parents: tuple[tuple[int, ...], ...] = (), hidden: tuple[int, ...] = (32, 32), activation: str = "tanh", n_params: int = 1) -> nn.Module:
    return MADEArch().build([(d,), *parents], (d * n_params,), MADEOptions(hidden=list(hidden), activation=activation))


def pixelcnn(child: tuple[int, ...], parents: tuple[tuple[int, ...], ...] = (), **options) -> nn.Module:
    output = (math.prod(child),) if len(child) == 1 else child
    return PixelCNNArch().build([child, *parents], output, PixelCNNOptions(**options))


def jacobian(module: nn.Module, x: torch.Tensor, *parents: torch.Tensor) -> torch.Tensor:
    """d out / d x for one row, (outputs, D)."""
    return torch.autograd.functional.jacobian(lambda v: module(v.view(1, *x.shape[1:]), *parents).reshape(-1), x.reshape(-1))


def sharpen(module: nn.Module, scale: float = 3.0) -> nn.Module:
    """Larger weights, so that the tiny models' conditionals are far from 1/2."""
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)
    return module


def density(module: nn.Module, shape: tuple[int, ...], n: int, parents: tuple[torch.Tensor, ...] = ()) -> torch.distributions.Distribution:
    return AutoregressiveDist().density(module, module, list(parents), shape, n, AutoregressiveOptions())


def sequential_log_prob(module: nn.Module, x: torch.Tensor, *parents: torch.Tensor) -> torch.Tensor:
    """sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i), where l_i is the network's output
    at i given x with the elements i, i+1, ... zeroed: one pass per element, as sampling does."""
    n, d = x.shape[0], x[0].numel()
    flat = x.reshape(n, d)
    total = torch.zeros(n, dtype=x.dtype)
    for i in range(d):
        seen = flat.clone()
        seen[:, i:] = 0
        logit = module(seen.view_as(x), *parents).reshape(n, d)[:, i]
        xi = flat[:, i]
        total = total + xi * F.logsigmoid(logit) + (1 - xi) * F.logsigmoid(-logit)
    return total


def all_configurations(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)))


# ------------------------------------------------------------------------------ (a) causal order


@pytest.mark.parametrize("parents", [(), ((3,),)], ids=["alone", "with-parent"])
def test_made_jacobian_is_strictly_lower_triangular_and_sees_every_earlier_element(float64, parents):
    torch.manual_seed(0)
    d = 7
    net = made(d, parents, hidden=(40, 40), n_params=2)
    x = torch.rand(1, d)
    given = [torch.rand(1, *s) for s in parents]
    jac = jacobian(net, x, *given).view(2, d, d)  # two parameter blocks of D outputs
    upper = torch.ones(d, d, dtype=torch.bool).triu()  # j >= i
    assert jac[:, upper].abs().max() == 0
    assert (jac[:, ~upper].abs() > 0).all()  # every j < i reaches output i (40 units, 6 degrees)
    if parents:
        jp = torch.autograd.functional.jacobian(lambda p: net(x, p.view(1, 3)).reshape(-1), given[0].reshape(-1))
        assert (jp.abs().sum(1) > 0).all()  # every output, the first element's included, sees the parent


def test_made_hidden_degrees_follow_the_paper():
    net = made(5, hidden=(8,))
    first = net.hidden[0].mask  # (8, 5): unit k sees input d iff m(k) >= d
    m = first.sum(1)  # a unit of degree m sees inputs 1..m
    assert m.tolist() == [1, 2, 3, 4, 1, 2, 3, 4]  # degrees 1..D-1 in turn
    out = net.out.mask  # (5, 8): output i sees units with m(k) < i
    assert out.tolist() == [[float(mk < i) for mk in m.tolist()] for i in range(1, 6)]


@pytest.mark.parametrize("child,parents,options", [
    ((64,), (), {"image": [8, 8]}),
    ((1, 6, 5), ((4,),), {"channels": 8, "layers": 3, "kernel": 5}),
], ids=["flat-8x8", "image-6x5-conditional"])
def test_pixelcnn_jacobian_is_strictly_lower_triangular_in_raster_order(float64, child, parents, options):
    torch.manual_seed(0)
    net = pixelcnn(child, parents, **options)
    d = math.prod(child)
    x = torch.rand(1, *child)
    jac = jacobian(net, x, *[torch.rand(1, *s) for s in parents])
    assert jac.shape == (d, d)
    assert jac[torch.ones(d, d, dtype=torch.bool).triu()].abs().max() == 0
    h, w = (8, 8) if len(child) == 1 else child[1:]
    # No blind spot: pixel (r, c) sees its left neighbour and the pixel above and to its right.
    for r, c in itertools.product(range(h), range(w)):
        i = r * w + c
        if c > 0:
            assert jac[i, i - 1] != 0
        if r > 0 and c < w - 1:
            assert jac[i, i - w + 1] != 0


def test_pixelcnn_check_refuses_several_channels_and_odd_shapes():
    arch, o = PixelCNNArch(), PixelCNNOptions()
    assert "single-channel" in arch.check([(3, 8, 8)], (3, 8, 8), o)[0]
    assert "no square image" in arch.check([(60,)], (60,), o)[0]
    assert "holds 60 pixels" in arch.check([(64,)], (64,), PixelCNNOptions(image=[6, 10]))[0]
    assert "even" in arch.check([(64,)], (64,), PixelCNNOptions(kernel=4))[0]
    assert arch.check([(64,)], (64,), o) == [] and arch.check([(1, 8, 8), (10,)], (1, 8, 8), o) == []


# ------------------------------------------------------------------- (b) the density's formula


@pytest.mark.parametrize("kind", ["made", "made-conditional", "pixelcnn"])
def test_log_prob_is_the_sequential_sum_of_bernoulli_terms_value_and_gradient(float64, kind):
    torch.manual_seed(1)
    n = 5
    if kind == "pixelcnn":
        shape, parents = (16,), ()
        net = pixelcnn(shape, image=[4, 4], channels=6, layers=3)
    else:
        shape, parents = (6,), ((2,),) if kind == "made-conditional" else ()
        net = made(6, parents, hidden=(16, 12))
    sharpen(net, 2.0)
    x = torch.bernoulli(torch.full((n, *shape), 0.5))
    given = tuple(torch.randn(n, *s) for s in parents)
    dist = density(net, shape, n, given)
    assert dist.batch_shape == (n,) and dist.event_shape == shape
    got = dist.log_prob(x)
    want = sequential_log_prob(net, x, *given)
    assert got.shape == (n,)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    params = list(net.parameters())
    g_got = torch.autograd.grad(got.sum(), params)
    g_want = torch.autograd.grad(want.sum(), params)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------------- (c) normalisation


@pytest.mark.parametrize("kind", ["made", "made-conditional", "pixelcnn"])
def test_probabilities_of_every_configuration_sum_to_one(float64, kind):
    torch.manual_seed(2)
    d = 6
    configs = all_configurations(d)  # (64, 6)
    n = len(configs)
    if kind == "pixelcnn":
        net, given = pixelcnn((1, 2, 3), channels=6, layers=2), ()
        shape = (1, 2, 3)
    else:
        parents = ((3,),) if kind == "made-conditional" else ()
        net = made(d, parents, hidden=(16,))
        given = tuple(torch.randn(1, *s).expand(n, *s) for s in parents)  # one parent value for all rows
        shape = (d,)
    sharpen(net)
    with torch.no_grad():
        probs = density(net, shape, n, given).log_prob(configs.view(n, *shape)).exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(probs.max()) > 2 / n  # not the uniform distribution: the check has something to sum


# ------------------------------------------------------------------------------ (d) sampling


@pytest.mark.parametrize("kind", ["made", "pixelcnn"])
def test_sampled_configurations_have_the_density_frequencies(kind):
    torch.manual_seed(3)
    d, n = 4, 40_000
    if kind == "pixelcnn":
        net, shape = pixelcnn((1, 2, 2), channels=6, layers=2), (1, 2, 2)
    else:
        net, shape = made(d, hidden=(16,)), (d,)
    sharpen(net)
    dist = density(net, shape, n)
    x = dist.sample()
    assert x.shape == (n, *shape) and not x.requires_grad
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    configs = all_configurations(d)
    with torch.no_grad():
        probs = density(net, shape, len(configs)).log_prob(configs.view(-1, *shape)).exp()
    index = (x.reshape(n, d) * (2 ** torch.arange(d - 1, -1, -1))).sum(1).long()  # the row of configs
    counts = torch.bincount(index, minlength=len(configs)).double()
    expected = n * probs.double()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.0  # 15 degrees of freedom: P(chi2 > 45) is about 1e-4 for a correct sampler
    assert float(probs.max()) > 0.15  # a peaked distribution, so a uniform sampler would fail


def test_distribution_has_no_rsample_and_no_mean():
    net = made(4, hidden=(8,))
    dist = density(net, (4,), 3)
    assert not dist.has_rsample
    with pytest.raises(NotImplementedError, match="no closed form"):
        _ = dist.mean
    with pytest.raises(TypeError, match="density"):
        AutoregressiveDist().make(torch.zeros(3, 4), 1, AutoregressiveOptions())
    kind = AutoregressiveDist()
    assert (kind.evaluates, kind.needs, kind.reparam, kind.has_density, kind.can_be_prior, kind.n_params) == (True, "causal", False, True, False, 1)


# ---------------------------------------------------------------------- G021, the causal rule


class _LeakyMask(nn.Module):
    """A MADE-like layer whose mask lets output i see input i (a diagonal too many)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, d)
        self.register_buffer("mask", torch.ones(d, d).tril())  # should be tril(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.linear.weight * self.mask, self.linear.bias)


class LeakyArch(Arch):
    """Test only: declares itself causal, but its mask is off by one."""

    causal = True
    doc = "broken masked linear map (test)"

    class Options(Options):
        pass

    def build(self, inputs, output, options):
        return _LeakyMask(math.prod(inputs[0]))


def test_first_violation_names_the_first_output_and_input(float64):
    assert first_violation(made(6), [(6,)]) is None
    assert first_violation(_LeakyMask(6).double(), [(6,)]) == (0, 0)
    assert first_violation(nn.Linear(6, 6).double(), [(6,)]) == (0, 0)
    shifted = _LeakyMask(6)
    shifted.mask = torch.ones(6, 6).tril(-1)
    shifted.mask[4, 5] = 1.0  # only output 4 looks ahead, at input 5
    assert first_violation(shifted.double(), [(6,)]) == (4, 5)


# ------------------------------------------------------------------ (e) the specs, end to end

SPECS = ROOT / "specs"
MADE_SPEC, PIXELCNN_SPEC = SPECS / "made-digits.yaml", SPECS / "pixelcnn-digits.yaml"
SMALL_PIXELCNN = ["networks.pixelcnn.channels=8", "networks.pixelcnn.layers=2"]  # a fast stand-in for training tests


@pytest.fixture(scope="module")
def ar_registry():
    """The installed plugins, with this one loaded from the tree when it is not installed."""
    from unigen.api.registry import default_registry, load_registry

    reg = default_registry()
    return reg if reg.has("distributions", "autoregressive") else load_registry(extra=[unigen_autoregressive])


def bernoulli_baseline(train: torch.Tensor, test: torch.Tensor) -> float:
    """Test NLL (nats per image) of independent Bernoulli pixels at their training means."""
    p = train.double().mean(0).clamp(1e-6, 1 - 1e-6)
    t = test.double()
    return float(-(t * p.log() + (1 - t) * (1 - p).log()).sum(1).mean())


@pytest.mark.parametrize("spec,net,arch", [(MADE_SPEC, "made", "made"), (PIXELCNN_SPEC, "pixelcnn", "pixelcnn")], ids=["made", "pixelcnn"])
def test_spec_compiles_to_one_exact_likelihood_phase(ar_registry, spec, net, arch):
    from unigen.compiler.compiler import compile_file

    program = compile_file(spec, registry=ar_registry).program
    text = str(program)
    assert f"x ~ autoregressive({net}(x))" in text
    assert "-E_q[log p(x)]" in text  # no latents: the ELBO is the exact log-likelihood
    assert re.search(rf"\n    {net} +{arch}(\(.*\))?: \[64\] -> \[64\]\n", text), text
    (phase,) = program.phases
    assert phase.update == (net,) and phase.terms[0].bound.reaches == {net}
    assert program.train.best is not None and program.train.best.metric == "test_nelbo"


def test_made_spec_test_nelbo_is_the_exact_nll_and_beats_independent_pixels(ar_registry, tmp_path):
    import unigen

    run = unigen.train(MADE_SPEC, ["train.eval_every=50", "train.log_every=50"], out=tmp_path / "run", steps=150, device="cpu", registry=ar_registry)
    curve = [float(r["test_nelbo"]) for r in run.metrics() if r.get("test_nelbo") not in (None, "")]
    assert len(curve) >= 3 and all(math.isfinite(v) for v in curve)
    assert curve[-1] < curve[0]
    model = run.model
    test = model.dataset.test["x"]
    baseline = bernoulli_baseline(model.dataset.train["x"], test)
    assert 24.0 < baseline < 24.6  # 24.29 nats on this split
    assert curve[-1] < baseline
    # test_nelbo is -mean_x sum_i log p(x_i | x_<i), written out from the trained network:
    with torch.no_grad():
        logits = model.nets["made"](test)
        nll = F.binary_cross_entropy_with_logits(logits, test, reduction="none").sum(1).mean()
    assert float(run.evaluate(["elbo"])["test_nelbo"]) == pytest.approx(float(nll), rel=1e-5)
    samples = run.sample(16, seed=1)
    assert samples.shape == (16, 64) and set(samples.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(samples, run.sample(16, seed=1))


def test_pixelcnn_spec_trains_and_its_held_out_nll_decreases(ar_registry, tmp_path):
    import unigen

    run = unigen.train(PIXELCNN_SPEC, [*SMALL_PIXELCNN, "train.eval_every=10", "train.log_every=10"], out=tmp_path / "run", steps=30, device="cpu", registry=ar_registry)
    curve = [float(r["test_nelbo"]) for r in run.metrics() if r.get("test_nelbo") not in (None, "")]
    assert len(curve) >= 3 and all(math.isfinite(v) for v in curve)
    assert curve[-1] < curve[0]
    samples = run.sample(8, seed=0)
    assert samples.shape == (8, 64) and set(samples.unique().tolist()) <= {0.0, 1.0}


def test_pixelcnn_spec_trains_as_shipped(ar_registry, tmp_path):
    import unigen

    run = unigen.train(PIXELCNN_SPEC, ["train.eval_every=3"], out=tmp_path / "run", steps=3, device="cpu", registry=ar_registry)
    assert math.isfinite(run.summary["metrics"]["test_nelbo"])


# -------------------------------------------------------------------------- G021 in the compiler

CAUSAL_SPEC = """
unigen: 1
name: causal-check
data: {source: digits, binarize: true}
variables:
  x: {observed: true, shape: [64], prior: {dist: autoregressive, net: f}}
networks:
  f: {arch: ARCH}
phases:
  - {name: nll, update: [f], terms: [elbo]}
"""


class LeakyPlugin:
    __name__ = "leaky_mask_test"

    @hookimpl
    def unigen_register_networks(self, register):
        register("leaky", LeakyArch())


def g021(registry, path) -> list:
    from unigen.compiler.compiler import compile_file
    from unigen.errors import UnigenError

    with pytest.raises(UnigenError) as exc:
        compile_file(path, [], registry)
    return [d for d in exc.value.diagnostics if d.code == "G021"]


def test_g021_an_unmasked_mlp_is_not_causal(ar_registry, write_spec):
    found = g021(ar_registry, write_spec(CAUSAL_SPEC.replace("ARCH", "mlp, hidden: [16]")))
    # one report, the core's: `mlp` declares no causal order, so the plugin's rule does not measure it
    assert len(found) == 1, [str(d) for d in found]
    (d,) = found
    assert d.message.startswith("`autoregressive` on edge `p_x` needs a causal network, and `f` (mlp) is not causal")
    assert d.path == ("networks", "f", "arch")
    assert "`made`" in d.hint and "`pixelcnn`" in d.hint


def test_g021_a_mask_that_lets_element_i_see_itself_is_caught(write_spec):
    from unigen.api.registry import default_registry, load_registry

    reg = load_registry(extra=[LeakyPlugin()] + ([] if default_registry().has("distributions", "autoregressive") else [unigen_autoregressive]))
    (d,) = g021(reg, write_spec(CAUSAL_SPEC.replace("ARCH", "leaky")))
    assert "network `f` (leaky) under autoregressive density `p_x` is not causal although its architecture declares it: output element 0 depends on input element 0, at or after it" in d.message
    assert d.path == ("variables", "x", "prior", "net") and d.line == 5  # located at `net: f` in the spec
    assert ": variables.x.prior.net: G021 network `f` (leaky)" in str(d)


def test_g021_passes_made_and_pixelcnn(ar_registry, write_spec):
    from unigen.compiler.compiler import compile_file

    for arch in ("made, hidden: [32]", "pixelcnn, channels: 4, layers: 2"):
        compile_file(write_spec(CAUSAL_SPEC.replace("ARCH", arch)), [], ar_registry)
