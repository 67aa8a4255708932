"""The energy plugin: the RBM factor, the Gibbs / mean-field / Langevin samplers, the contrastive
divergence term's gradient, and exact and AIS partition functions against brute force."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from unigen_energy.factors import Factor, Factors, colour_classes
from unigen_energy.metrics import AISNLL, ExactNLL, ExactOptions
from unigen_energy.nets import RBMArch, RBMOptions
from unigen_energy.partition import Annealing, base_logits, configurations, exact_log_unnormalised, exact_log_z, summed_out
from unigen_energy.samplers import Gibbs, GibbsOptions, Langevin, LangevinOptions, MeanField, MeanFieldOptions
from unigen_energy.terms import ContrastiveDivergence

import unigen
from unigen.api.kinds import Site

D = torch.float64
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


def rbm(a: int, b: int, std: float, bias: str = "both", seed: int = 0) -> torch.nn.Module:
    """A built `rbm` factor in float64 with random weights and biases of scale `std`."""
    torch.manual_seed(seed)
    net = RBMArch().build([(a,), (b,)], (1,), RBMOptions(bias=bias)).to(D)  # type: ignore[arg-type]
    for p in net.parameters():
        p.data.normal_(0, std)
    return net


def rbm_view(a: int = 6, b: int = 4, std: float = 0.7, seed: int = 0) -> tuple[Factors, torch.nn.Module]:
    net = rbm(a, b, std, seed=seed)
    return Factors([Factor(net, ("v", "h"))], {"v": (a,), "h": (b,)}, ["v"]), net


def dbm_view(std: float = 0.7) -> Factors:
    w1, w2 = rbm(5, 4, std, seed=1), rbm(4, 3, std, bias="second", seed=2)
    return Factors([Factor(w1, ("v", "h1")), Factor(w2, ("h1", "h2"))], {"v": (5,), "h1": (4,), "h2": (3,)}, ["v"])


def all_states(view: Factors) -> dict[str, torch.Tensor]:
    """Every binary state of every variable (in the view's order of variables)."""
    k = sum(math.prod(s) for s in view.variables.values())
    flat = configurations(k, 0, 2**k, D, CPU)
    out, at = {}, 0
    for v, s in view.variables.items():
        out[v] = flat[:, at : at + math.prod(s)]
        at += math.prod(s)
    return out


# --- the factor -------------------------------------------------------------------------------


def test_rbm_energy_is_the_bilinear_formula_and_bias_options_drop_sides():
    net = rbm(3, 2, 1.0)
    a, b = torch.randn(5, 3, dtype=D), torch.randn(5, 2, dtype=D)
    expected = -((a @ net.weight) * b).sum(1) - a @ net.bias_a - b @ net.bias_b
    assert net(a, b).shape == (5, 1)
    torch.testing.assert_close(net(a, b)[:, 0], expected)
    # inputs of any shape are flattened
    torch.testing.assert_close(net(a.view(5, 3, 1), b.view(5, 1, 2)), net(a, b))
    assert rbm(3, 2, 1.0, bias="first").bias_b is None and rbm(3, 2, 1.0, bias="second").bias_a is None
    none = rbm(3, 2, 1.0, bias="none")
    assert none.bias_a is None and none.bias_b is None
    w = RBMArch().build([(3,), (2,)], (1,), RBMOptions(init_std=0.01))
    assert float(w.weight.detach().std()) < 0.05 and float(w.bias_a.detach().abs().sum()) == 0.0
    assert RBMArch().check([(3,)], (2,), RBMOptions()) == [
        "`rbm` joins exactly two variables, got 1; use one undirected edge per pair, e.g. `{undirected: [v, h], net: rbm}`",
        "`rbm` gives one energy per row (output [1]), not [2]",
    ]


def test_field_is_minus_the_energy_gradient():
    view, net = rbm_view()
    v, h = torch.bernoulli(torch.full((4, 6), 0.5, dtype=D)), torch.bernoulli(torch.full((4, 4), 0.5, dtype=D))
    torch.testing.assert_close(view.field("h", {"v": v, "h": h}), v @ net.weight + net.bias_b)
    torch.testing.assert_close(view.field("v", {"v": v, "h": h}), h @ net.weight.T + net.bias_a)
    assert net.weight.grad is None  # fields take no gradient into the parameters


def test_colour_classes_and_non_bipartite_graphs():
    assert colour_classes(dbm_view()) == (("v", "h2"), ("h1",))
    net = rbm(2, 2, 1.0)
    triangle = Factors([Factor(net, ("a", "b")), Factor(net, ("b", "c")), Factor(net, ("c", "a"))], {"a": (2,), "b": (2,), "c": (2,)})
    with pytest.raises(ValueError, match="not bipartite"):
        colour_classes(triangle)


# --- exact partition functions ----------------------------------------------------------------


def test_exact_log_z_of_a_tiny_rbm_equals_brute_force_over_all_1024_states():
    view, _ = rbm_view(6, 4, std=1.0)
    brute = float(torch.logsumexp(-view.energy(all_states(view)), 0).detach())
    assert exact_log_z(view, colour_classes(view)) == pytest.approx(brute, abs=1e-10)
    # the unnormalised marginal of every visible state, h summed analytically (the free energy)
    v = configurations(6, 0, 64, D, CPU)
    lp = exact_log_unnormalised(view, colour_classes(view), {"v": v})
    states = all_states(view)
    e = -view.energy(states)
    code = (states["v"] * 2 ** torch.arange(6, dtype=D)).sum(1).long()
    brute_v = torch.stack([torch.logsumexp(e[code == i], 0) for i in range(64)])
    v_code = (v * 2 ** torch.arange(6, dtype=D)).sum(1).long()
    torch.testing.assert_close(lp, brute_v[v_code], rtol=0, atol=1e-10)
    assert float(torch.logsumexp(lp, 0)) == pytest.approx(brute, abs=1e-10)


def test_exact_log_z_and_log_p_of_a_tiny_dbm_equal_brute_force():
    view = dbm_view(std=1.0)
    classes = colour_classes(view)
    states = all_states(view)
    e = -view.energy(states)
    assert exact_log_z(view, classes, chunk=7) == pytest.approx(float(torch.logsumexp(e, 0)), abs=1e-10)  # chunks of 7 rows
    code = (states["v"] * 2 ** torch.arange(5, dtype=D)).sum(1).long()
    brute = torch.stack([torch.logsumexp(e[code == i], 0) for i in range(32)])
    v = configurations(5, 0, 32, D, CPU)
    torch.testing.assert_close(exact_log_unnormalised(view, classes, {"v": v}, chunk=5), brute, rtol=0, atol=1e-10)


# --- samplers ---------------------------------------------------------------------------------


def test_mean_field_on_an_rbm_is_exactly_the_hidden_posterior_in_one_iteration():
    view, net = rbm_view()
    v = torch.bernoulli(torch.full((8, 6), 0.5, dtype=D))
    out = MeanField().fill(view, {"v": v}, {"v": v}, 8, MeanFieldOptions(iterations=1), {}, "train")
    assert set(out) == {"h"}
    torch.testing.assert_close(out["h"], torch.sigmoid(v @ net.weight + net.bias_b), rtol=0, atol=1e-14)


def test_mean_field_on_a_dbm_reaches_the_fixed_point_equations():
    view = dbm_view()
    w1, w2 = view.factors[0].module, view.factors[1].module
    v = torch.bernoulli(torch.full((8, 5), 0.5, dtype=D))
    mu = MeanField().fill(view, {"v": v}, {}, 8, MeanFieldOptions(iterations=200, tolerance=1e-13), {}, "train")
    torch.testing.assert_close(mu["h1"], torch.sigmoid(v @ w1.weight + w1.bias_b + mu["h2"] @ w2.weight.T), rtol=0, atol=1e-10)
    torch.testing.assert_close(mu["h2"], torch.sigmoid(mu["h1"] @ w2.weight + w2.bias_b), rtol=0, atol=1e-10)


def exact_visible_marginal(view: Factors) -> torch.Tensor:
    """p(v) for every visible state, state code = sum_i v_i 2^i."""
    n = view.variables["v"][0]
    v = configurations(n, 0, 2**n, D, CPU)
    classes = colour_classes(view)
    return (exact_log_unnormalised(view, classes, {"v": v}) - exact_log_z(view, classes)).exp()


def test_gibbs_chains_sample_the_exact_visible_marginal_of_a_tiny_rbm():
    torch.manual_seed(0)
    view, _ = rbm_view(4, 3, std=1.0)
    state: dict[str, torch.Tensor] = {}
    o = GibbsOptions(steps=30, persistent=True, init="noise", chains=8000, mean_last=False)
    out = Gibbs().fill(view, {}, {}, 8000, o, state, "train")
    assert set(state) == {"v", "h"} and state["v"].shape == (8000, 4)
    code = (out["v"] * 2 ** torch.arange(4, dtype=D)).sum(1).long()
    empirical = torch.bincount(code, minlength=16).to(D) / 8000
    exact = exact_visible_marginal(view)
    # total variation: about 0.015 expected from 8000 samples over 16 states; the seed is fixed
    tv = 0.5 * float((empirical - exact).abs().sum())
    assert tv < 0.04, tv


def test_gibbs_cd_starts_at_the_data_and_persistent_chains_are_kept():
    view, _ = rbm_view()
    v = torch.bernoulli(torch.full((5, 6), 0.5, dtype=D))
    out = Gibbs().fill(view, {}, {"v": v}, 5, GibbsOptions(steps=1), {}, "train")
    assert out["v"].shape == (5, 6) and out["h"].shape == (5, 4)
    assert set(out["v"].unique().tolist()) <= {0.0, 1.0}  # the visible units are samples
    assert bool(((out["h"] > 0) & (out["h"] < 1)).all())  # the last variable of the sweep: its probabilities
    # persistent: 7 chains kept, 5 rows returned; a state of the wrong size is started afresh
    state: dict[str, torch.Tensor] = {}
    out = Gibbs().fill(view, {}, {"v": v}, 5, GibbsOptions(persistent=True, chains=7), state, "train")
    assert out["v"].shape == (5, 6) and state["v"].shape == (7, 6) and state["h"].shape == (7, 4)
    assert set(state["h"].unique().tolist()) <= {0.0, 1.0}  # the chain keeps samples
    kept = {k: t.clone() for k, t in state.items()}
    Gibbs().fill(view, {}, {"v": v}, 5, GibbsOptions(persistent=True, chains=7, steps=3), state, "train")
    assert state["v"].shape == (7, 6) and not all(torch.equal(kept[k], state[k]) for k in kept)
    state["v"] = state["v"][:2]
    Gibbs().fill(view, {}, {"v": v}, 5, GibbsOptions(persistent=True, chains=7), state, "train")
    assert state["v"].shape == (7, 6)


def test_gibbs_sample_mode_gives_visible_probabilities_from_noise():
    view, _ = rbm_view()
    out = Gibbs().fill(view, {}, {}, 9, GibbsOptions(sample_steps=5), {}, "sample")
    assert out["v"].shape == (9, 6) and out["v"].dtype == D  # the energy's own dtype
    assert bool(((out["v"] > 0) & (out["v"] < 1)).all())
    assert set(out["h"].unique().tolist()) <= {0.0, 1.0}


def test_langevin_samples_a_gaussian_energy():
    torch.manual_seed(0)
    mean, sigma = torch.tensor([1.0, -2.0], dtype=D), torch.tensor([0.5, 1.5], dtype=D)

    class Quadratic(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (0.5 * ((x - mean) / sigma) ** 2).sum(1, keepdim=True)

    view = Factors([Factor(Quadratic(), ("x",))], {"x": (2,)}, [])
    eps = 0.05
    out = Langevin().fill(view, {}, {"x": torch.zeros(4000, 2, dtype=D)}, 4000, LangevinOptions(steps=1000, step_size=eps), {}, "train")["x"]
    torch.testing.assert_close(out.mean(0), mean, rtol=0, atol=0.08)
    expected = sigma**2 / (1 - eps / (4 * sigma**2))  # the unadjusted chain's stationary variance
    torch.testing.assert_close(out.var(0), expected, rtol=0.08, atol=0)


# --- the term ---------------------------------------------------------------------------------


class Traces:
    """A stand-in step context: fixed q and m values, the energy view as `ctx.model.energy`."""

    def __init__(self, view: Factors, q: dict[str, torch.Tensor], m: dict[str, torch.Tensor]) -> None:
        self.model = SimpleNamespace(energy=view)
        self.q, self.traces = q, {"q": q, "m": m}

    def trace(self, side: str) -> dict[str, torch.Tensor]:
        return self.traces[side]


def fake_graph(edges, observed=("v",)):
    variables = {v: SimpleNamespace(observed=v in observed) for e in edges for v in e.variables}
    return SimpleNamespace(of_kind=lambda kind: edges if kind == "undirected" else [], variables=variables, nets_of=lambda e: {e.net})


def test_contrastive_divergence_gradient_is_the_cd1_update():
    view, net = rbm_view()
    edge = SimpleNamespace(name="f_v_h", variables=("v", "h"), net="rbm")
    bound = ContrastiveDivergence().bind(Site(fake_graph([edge]), None, None, None))  # type: ignore[arg-type]
    assert bound.formula == "E_q[E(v,h)] - E_m[E(v,h)]"
    assert bound.traces == frozenset({"q", "m"}) and bound.reaches == frozenset({"rbm"})
    torch.manual_seed(3)
    n = 10
    v0 = torch.bernoulli(torch.full((n, 6), 0.5, dtype=D))
    h0 = torch.sigmoid(v0 @ net.weight + net.bias_b).detach()  # the q-trace's hidden means
    v1 = torch.bernoulli(torch.full((n, 6), 0.5, dtype=D))
    h1 = torch.rand(n, 4, dtype=D)
    loss = bound.loss(Traces(view, {"v": v0, "h": h0}, {"v": v1, "h": h1}))  # type: ignore[arg-type]
    energy = lambda v, h: (-((v @ net.weight) * h).sum(1) - v @ net.bias_a - h @ net.bias_b).mean()  # noqa: E731
    assert float(loss) == pytest.approx(float(energy(v0, h0) - energy(v1, h1)), abs=1e-12)
    loss.backward()
    # descending the loss is W += lr (<v h^T>_data - <v h^T>_model), and likewise the biases
    torch.testing.assert_close(net.weight.grad, -(v0.T @ h0 - v1.T @ h1) / n, rtol=0, atol=1e-12)
    torch.testing.assert_close(net.bias_a.grad, -(v0 - v1).mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(net.bias_b.grad, -(h0 - h1).mean(0), rtol=0, atol=1e-12)


def test_contrastive_divergence_needs_an_undirected_factor_with_an_observed_variable():
    from unigen.api.kinds import TermError

    with pytest.raises(TermError, match="no undirected factor"):
        ContrastiveDivergence().bind(Site(fake_graph([]), None, None, None))  # type: ignore[arg-type]
    edge = SimpleNamespace(name="f", variables=("a", "b"), net="rbm")
    with pytest.raises(TermError, match=r"no variable of the undirected factors \(`a`, `b`\) is observed"):
        ContrastiveDivergence().bind(Site(fake_graph([edge], observed=()), None, None, None))  # type: ignore[arg-type]


# --- AIS --------------------------------------------------------------------------------------


def exact_hidden_samples(view: Factors, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """n exact draws of h from p(h) (the visible units summed out), by listing its states."""
    k = view.variables["h"][0]
    h = configurations(k, 0, 2**k, D, CPU)
    log_p = summed_out(view, {"h": h}, ["v"], len(h))
    return {"h": h[torch.multinomial(torch.softmax(log_p, 0), n, replacement=True, generator=generator)]}


def test_ais_and_reverse_ais_estimate_log_z_and_bracket_it_in_expectation():
    view, _ = rbm_view(16, 8, std=2.0)
    exact = exact_log_z(view, colour_classes(view))
    base = {"v": torch.zeros(16, dtype=D), "h": torch.zeros(8, dtype=D)}
    g = torch.Generator().manual_seed(0)
    anneal = Annealing(view, ("h",), ("v",), base, g)
    assert anneal.log_z0 == pytest.approx(24 * math.log(2))
    forward, logw = anneal.forward(1000, torch.linspace(0, 1, 100, dtype=D))
    reverse, _ = anneal.reverse(exact_hidden_samples(view, 1000, g), torch.linspace(0, 1, 100, dtype=D))
    assert logw.shape == (1000,)
    assert abs(forward - exact) < 0.1 and abs(reverse - exact) < 0.1, (forward, exact, reverse)
    # Few betas: each group of 10 chains is one estimate; the forward ones are low on average
    # (E log Z_hat <= log Z), the reverse ones from exact samples high: by about 0.30 and 0.43
    # here, with standard errors of the means near 0.035
    betas = torch.linspace(0, 1, 10, dtype=D)
    _, logw = anneal.forward(4000, betas)
    _, logw_r = anneal.reverse(exact_hidden_samples(view, 4000, g), betas)
    groups = lambda lw: torch.logsumexp(lw.view(400, 10), 1) - math.log(10)  # noqa: E731
    low, high = anneal.log_z0 + groups(logw), anneal.log_z0 - groups(logw_r)
    assert float(low.mean()) < exact - 0.1 and float(high.mean()) > exact + 0.1, (float(low.mean()), exact, float(high.mean()))


def test_reverse_ais_from_gibbs_chains_and_the_base_logits():
    view, _ = rbm_view(12, 6, std=1.0)
    exact = exact_log_z(view, colour_classes(view))
    data = {"v": torch.bernoulli(torch.full((50, 12), 0.3, dtype=D))}
    base = base_logits(view, {"v": data["v"].mean(0)}, 50)
    p = (data["v"].sum(0) + 1) / 52
    torch.testing.assert_close(base["v"], (p / (1 - p)).log())
    assert torch.equal(base["h"], torch.zeros(6, dtype=D))
    anneal = Annealing(view, ("h",), ("v",), base, torch.Generator().manual_seed(1))
    start = anneal.model_samples(anneal.start_from(data, 500), 200)
    assert start["h"].shape == (500, 6)
    reverse, _ = anneal.reverse(start, torch.linspace(0, 1, 200, dtype=D))
    assert abs(reverse - exact) < 0.1


# --- the specs, through the core -------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
RBM_SPEC, DBM_SPEC = ROOT / "specs" / "rbm-digits.yaml", ROOT / "specs" / "dbm-digits.yaml"


def test_both_specs_compile_into_their_three_traces():
    rbm_text = str(unigen.compile(RBM_SPEC))
    assert "q-trace   v ~ data; h ~ mean_field(iterations=1)[energy rbm(v, h)]" in rbm_text
    assert "m-trace   v, h ~ gibbs[energy rbm(v, h)] (the chain)" in rbm_text
    assert "contrastive_divergence E_q[E(v,h)] - E_m[E(v,h)]" in rbm_text
    dbm_text = str(unigen.compile(DBM_SPEC))
    assert "m-trace   v, h1, h2 ~ gibbs(persistent=True)[energy w1(v, h1) + w2(h1, h2)] (the chain)" in dbm_text
    assert "contrastive_divergence E_q[E(v,h1,h2)] - E_m[E(v,h1,h2)]" in dbm_text
    assert "gibbs(steps=10)" in str(unigen.compile(RBM_SPEC, ["samplers.m.steps=10"]))  # CD-10


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (["~samplers", "+samplers={q: {kind: mean_field}}"], "G022", "undirected factor `f_v_h` (v, h) has no sampler: nothing draws the model's own values, which training compares the data with."),
        (["~samplers.m", "+samplers.m={kind: mean_field}"], "G022", "sampler `mean_field` cannot fill the sampler trace `m`; it fills q-trace `q`."),
        (["~samplers.q", "+samplers.q={kind: gibbs}"], "G022", "sampler `gibbs` cannot fill the q-trace `q`; it fills sampler trace `m`."),
        (["samplers.m.init=zeros"], "G016", "sampler `gibbs`: Input should be 'data' or 'noise' (got 'zeros')."),
        (["phases.0.terms=[contrastive_divergence@f_v_h]"], "G015", "term `contrastive_divergence` applies to the whole model and takes no `@f_v_h`."),
    ],
)
def test_spec_mistakes_are_reported(overrides, code, message):
    problems = unigen.validate(RBM_SPEC, overrides)
    assert [(d.code, d.message) for d in problems][:1] == [(code, message)]


def test_rbm_network_joins_two_variables_only():
    (d,) = unigen.validate(DBM_SPEC, ["edges.1.undirected=[h1, h2, v]"])
    assert d.code == "G012" and "`rbm` joins exactly two variables, got 3" in d.message


def hand_nll(w: torch.Tensor, b: torch.Tensor, c: torch.Tensor, v: torch.Tensor) -> tuple[float, float]:
    """An RBM's log Z (listing h) and mean -log p(v), written out: E = -v W h - b v - c h."""
    h = configurations(len(c), 0, 2 ** len(c), D, CPU)
    log_z = torch.logsumexp(h @ c + torch.nn.functional.softplus(h @ w.T + b).sum(1), 0)
    log_p = v @ b + torch.nn.functional.softplus(v @ w + c).sum(1)
    return float(log_z), float(log_z - log_p.mean())


def test_rbm_trains_through_the_cli_and_its_exact_nll_is_the_written_out_formula(cli, tmp_path):
    code, out, err = cli("compile-and-train", RBM_SPEC, "--steps", "30", "--out", tmp_path / "run", "--quiet", "train.eval_every=0", "networks.rbm.init_std=0.1", "samplers.m.sample_steps=20")
    assert code == 0, err
    run = unigen.open_run(tmp_path / "run")
    metrics = run.summary["metrics"]
    assert math.isfinite(metrics["test_nll_exact"]) and metrics["test_nll_exact"] < 64 * math.log(2)  # better than uniform already
    net = run.model.nets["rbm"]
    test = run.model.observed_batch(run.model.dataset.test)["v"].to(D)
    log_z, nll = hand_nll(net.weight.detach().to(D), net.bias_a.detach().to(D), net.bias_b.detach().to(D), test)
    assert metrics["log_z_exact"] == pytest.approx(log_z, abs=1e-9)
    assert metrics["test_nll_exact"] == pytest.approx(nll, abs=1e-9)
    # AIS on the same checkpoint, with few chains and betas (a near-uniform model: an easy one)
    ais = run.evaluate(["ais"], {"ais": {"chains": 50, "betas": 200, "model_steps": 50}})
    assert abs(ais["log_z_ais"] - log_z) < 0.1 and abs(ais["log_z_rais"] - log_z) < 0.1
    assert ais["test_nll_ais"] == pytest.approx(nll + ais["log_z_ais"] - log_z, abs=1e-9)
    # for an RBM the mean-field posterior is exact, so the bound on log p*(v) is log p*(v)
    assert ais["test_nll_ais_mf"] == pytest.approx(ais["test_nll_ais"], abs=1e-9)
    samples = run.sample(8)
    assert samples.shape == (8, 64) and bool(((samples >= 0) & (samples <= 1)).all())


def test_dbm_trains_with_persistent_chains_kept_in_its_checkpoint(tmp_path):
    run = unigen.train(DBM_SPEC, ["train.eval_every=0", "train.log_every=10", "samplers.m.sample_steps=20"], out=tmp_path / "run", steps=20)
    nll = run.summary["metrics"]["test_nll_exact"]
    assert math.isfinite(nll) and nll < 64 * math.log(2)
    # a DBM's mean-field bound is below log p*(v): with the same log Z, its NLL is above the exact one
    ais = run.evaluate(["ais"], {"ais": {"chains": 20, "betas": 100, "model_steps": 10}})
    gap = ais["test_nll_ais_mf"] - ais["test_nll_ais"]
    assert 1e-4 < gap < 5, gap
    state = torch.load(sorted((tmp_path / "run" / "checkpoints").glob("step_*.pt"))[-1], weights_only=False)
    chains = state["samplers"]["m"]
    assert {k: tuple(t.shape) for k, t in chains.items()} == {"v": (100, 64), "h1": (100, 16), "h2": (100, 8)}
    assert set(torch.cat([t.flatten() for t in chains.values()]).unique().tolist()) <= {0.0, 1.0}


def test_the_exact_metric_applies_within_its_enumeration_limit_only(tmp_path):
    run = unigen.train(RBM_SPEC, ["variables.h.shape=[24]", "train.eval_every=0", "metrics=[]", "samplers.m.sample_steps=2"], out=tmp_path / "run", steps=2)
    with pytest.warns(RuntimeWarning, match=r"2\^24 states, beyond max_units=22"):
        assert run.evaluate(["exact_nll"]) == {}  # named, it is tried, and refuses at once
    metric = ExactNLL()
    metric.options = ExactOptions(max_units=24)
    assert metric.applies(run.model) and AISNLL().applies(run.model)


def test_visible_biases_start_at_the_data_log_odds_with_init_bias_data(registry):
    from unigen.compiler.compiler import compile_file
    from unigen.training.model import Model

    spec = Path(__file__).resolve().parents[1] / "specs" / "rbm-digits.yaml"
    program = compile_file(spec, ["networks.rbm.init_bias=data"], registry=registry).program
    model = Model(program, torch.device("cpu"))
    v = model.dataset.train["x"]
    expected = torch.logit(v.mean(0).clamp(0.001, 0.999))
    assert torch.allclose(model.nets["rbm"].bias_a, expected) and torch.equal(model.nets["rbm"].bias_b, torch.zeros(16))  # h is hidden: no data
    plain = Model(compile_file(spec, [], registry=registry).program, torch.device("cpu"))
    assert torch.equal(plain.nets["rbm"].bias_a, torch.zeros(64))
