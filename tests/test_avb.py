"""AVB: the bound with an adversary's logit for the KL term, the toy data, and the exact
log-likelihood by quadrature that scores models with a latent of at most two dimensions."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.training.model import Model

AVB = ROOT / "specs" / "avb-toy.yaml"


def test_avb_term_is_reconstruction_plus_the_adversary_logit(registry):
    program = compile_file(AVB, ["train.batch_size=8"], registry=registry).program
    torch.manual_seed(0)
    model = Model(program, torch.device("cpu")).double()
    (term,) = next(p for p in program.phases if p.name == "vae").terms
    x = model.dataset.train["x"][:8].double()
    eps = torch.randn(8, 16, dtype=torch.float64)
    ctx = model.context({"x": x}, 8)
    ctx.q.values["eps"] = eps
    loss = term.bound.loss(ctx)
    # by hand: z = encoder(x, eps); -log softmax(decoder(z))[x] + T(x, z)
    z = model.nets["encoder"](x, eps)
    logits = model.nets["decoder"](z)
    expected = (-(x * torch.log_softmax(logits, 1)).sum(1) + model.nets["adversary"](x, z)[:, 0]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    params = list(model.nets["encoder"].parameters()) + list(model.nets["decoder"].parameters())
    got = torch.autograd.grad(loss, params)
    want = torch.autograd.grad(expected, params)
    assert all(torch.allclose(g, w, rtol=1e-10, atol=1e-12) for g, w in zip(got, want))


def test_avb_term_needs_q_pairs_against_prior_draws(registry):
    with pytest.raises(UnigenError) as err:
        compile_file(AVB, ["edges.2.fake=[q.x, q.z]"], registry=registry)
    (d,) = [d for d in err.value.diagnostics if d.code == "G014"]
    assert "needs the prior's draws on the fake side" in d.message and "fake: [q.x, p.z]" in d.hint


def linear_gaussian(registry):
    """A decoder x = W z + b + N(0, 0.3^2 I), z ~ N(0, I_2), and its exact test NLL: p(x) = N(b, W W^T + s^2 I)."""
    spec = ROOT / "specs" / "vae-digits.yaml"
    overrides = ["~data", "+data={source: ring2d, n_train: 100, n_test: 50}", "variables.x.shape=[2]", "variables.z.shape=[2]", "edges.0.dist=normal", "networks.decoder.hidden=[]", "train.best=null", "train.eval_every=0"]
    program = compile_file(spec, overrides, registry=registry).program
    model = Model(program, torch.device("cpu"))
    W = torch.tensor([[0.8, -0.3], [0.2, 0.5]])
    b, log_var = torch.tensor([0.1, -0.2]), math.log(0.3**2)
    linear = model.nets["decoder"].body[0]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[:2] = W
        linear.bias[:2] = b
        linear.bias[2:] = log_var
    x = model.dataset.test["x"]
    exact = -torch.distributions.MultivariateNormal(b, W @ W.T + 0.09 * torch.eye(2)).log_prob(x)
    return model, exact


def test_quadrature_nll_equals_the_linear_gaussian_closed_form(registry):
    model, exact = linear_gaussian(registry)
    metric = copy.copy(registry.get("metrics", "nll_quadrature"))  # options set below stay on this copy
    with torch.no_grad():
        got = metric.compute(model)["test_nll_quadrature"]
    assert got == pytest.approx(float(exact.mean()), abs=2e-3)
    metric.options = metric.Options(examples=10)  # the first ten rows only
    with torch.no_grad():
        got = metric.compute(model)["test_nll_quadrature"]
    assert got == pytest.approx(float(exact[:10].mean()), abs=2e-3)


def test_decoder_ais_approaches_the_linear_gaussian_closed_form(registry):
    model, exact = linear_gaussian(registry)
    metric = copy.copy(registry.get("metrics", "decoder_ais"))
    assert metric.applies(model)
    metric.options = metric.Options(examples=20, chains=16, betas=500, leapfrog=5)
    out = metric.compute(model)
    assert out["decoder_ais_examples"] == 20 and 0.3 < out["decoder_ais_accept"] <= 1
    # AIS is exact in the limit (its log p(x) low in expectation): within Monte Carlo error of the exact NLL
    assert abs(out["test_nll_decoder_ais"] - float(exact[:20].mean())) < 0.06
    # with one intermediate step it is plain importance sampling from the prior: further off
    metric.options = metric.Options(examples=20, chains=1, betas=2, leapfrog=1)
    assert metric.compute(model)["test_nll_decoder_ais"] - float(exact[:20].mean()) > 0.2


def test_avb_nelbo_is_the_bound_on_the_test_split(registry):
    program = compile_file(AVB, [], registry=registry).program
    torch.manual_seed(0)
    model = Model(program, torch.device("cpu"))
    metric = registry.get("metrics", "avb_nelbo")
    assert metric.applies(model)
    torch.manual_seed(1)
    out = metric.compute(model)
    torch.manual_seed(1)  # the same draws of eps: the bound by hand on the whole test split
    x = model.dataset.test["x"]
    with torch.no_grad():
        ctx = model.context({"x": x}, len(x))
        z = model.nets["encoder"](x, ctx.q["eps"])
        rec = -(x * torch.log_softmax(model.nets["decoder"](z), 1)).sum(1)
        logit = model.nets["adversary"](x, z)[:, 0]
    assert out["test_avb_nelbo"] == pytest.approx(float((rec + logit).mean()), rel=1e-5)
    assert out["test_avb_recon"] == pytest.approx(float(rec.mean()), rel=1e-5)
    assert out["test_avb_kl"] == pytest.approx(float(logit.mean()), rel=1e-4, abs=1e-5)


def test_avb_toy_trains_and_is_scored(cli, tmp_path):
    code, out, err = cli("compile-and-train", str(AVB), "--steps", "30", "--out", str(tmp_path / "run"), "--quiet", "train.eval_every=0", "data.rows=64")
    assert code == 0, err
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    nll = summary["metrics"]["test_nll_quadrature"]
    assert math.log(4) - 1e-3 < nll < 10  # never below the optimum log 4
