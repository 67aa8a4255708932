"""The importance-weighted bound: exact for an exact posterior, tighter with more samples."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from unigen.compiler.compiler import compile_file
from unigen.training.model import Model

SPEC = """
unigen: 1
name: linear-gaussian
data: {source: ring2d, n_train: 200, n_test: 400}
variables:
  x: {observed: true, shape: [2]}
  z: {prior: normal, shape: [2]}
networks:
  decoder: {arch: mlp, hidden: []}
  encoder: {arch: mlp, hidden: []}
edges:
  - {generative: z -> x, net: decoder, dist: normal}
  - {inference: x -> z, net: encoder, dist: normal}
phases:
  - {name: elbo, update: [encoder, decoder], terms: [elbo]}
"""
A, S2 = 1.5, 0.3  # x = A z + N(0, S2): p(x) = N(0, A^2 + S2), p(z | x) = N(A x / (A^2 + S2), S2 / (A^2 + S2))


def linear_model(write_spec, registry, enc_scale: float = 1.0, enc_var_scale: float = 1.0) -> Model:
    program = compile_file(write_spec(SPEC), ["train.device=cpu"], registry).program
    model = Model(program, torch.device("cpu"))
    dec, enc = model.nets["decoder"].body[0], model.nets["encoder"].body[0]
    with torch.no_grad():
        for layer in (dec, enc):
            layer.weight.zero_()
            layer.bias.zero_()
        dec.weight[:2] = A * torch.eye(2)
        dec.bias[2:] = math.log(S2)
        enc.weight[:2] = enc_scale * A / (A * A + S2) * torch.eye(2)
        enc.bias[2:] = math.log(enc_var_scale * S2 / (A * A + S2))
    return model.eval()


def iwae(registry, model: Model, k: int, examples: int = 400) -> dict[str, float]:
    metric = copy.copy(registry.get("metrics", "iwae"))
    metric.options = metric.Options(k=k, examples=examples)
    torch.manual_seed(0)
    return metric.compute(model)


def exact_nll(model: Model, examples: int = 400) -> float:
    x = model.dataset.test["x"][:examples].double()
    var = A * A + S2
    return float((0.5 * x.pow(2) / var + 0.5 * math.log(2 * math.pi * var)).sum(1).mean())


def test_iwae_is_exact_with_the_true_posterior(write_spec, registry):
    model = linear_model(write_spec, registry)
    truth = exact_nll(model)
    for k in (1, 7):
        out = iwae(registry, model, k)
        assert out["iwae_nll"] == pytest.approx(truth, abs=1e-4)
        assert out["iwae_nelbo"] == pytest.approx(truth, abs=1e-4)
    # the held-out ELBO metric scores one draw of z per example: right only on average
    assert registry.get("metrics", "elbo").compute(model)["test_nelbo"] == pytest.approx(truth, abs=0.1)


def test_iwae_tightens_with_k_towards_the_likelihood(write_spec, registry):
    model = linear_model(write_spec, registry, enc_scale=0.4, enc_var_scale=3.0)  # a poor posterior
    truth = exact_nll(model)
    runs = {k: iwae(registry, model, k) for k in (1, 10, 100)}
    elbo = runs[100]["iwae_nelbo"]  # the mean single-sample ELBO over 100 draws per example: precise
    assert runs[1]["iwae_nll"] == runs[1]["iwae_nelbo"]  # k = 1 is the ELBO
    assert runs[1]["iwae_nll"] == pytest.approx(elbo, abs=0.35)  # one draw per example: about 3 standard errors
    assert registry.get("metrics", "elbo").compute(model)["test_nelbo"] == pytest.approx(elbo, abs=0.35)
    assert elbo > runs[10]["iwae_nll"] > runs[100]["iwae_nll"] > truth
    assert runs[100]["iwae_nll"] - truth < 0.25 * (elbo - truth)  # most of the gap closed at k = 100
    assert elbo - truth > 0.3


def test_iwae_applies_only_with_densities(registry):
    from conftest import ROOT

    metric = registry.get("metrics", "iwae")
    gan = Model(compile_file(ROOT / "specs" / "gan-ring.yaml", ["train.device=cpu"], registry).program, torch.device("cpu"))
    vae = Model(compile_file(ROOT / "specs" / "vae-digits.yaml", ["train.device=cpu"], registry).program, torch.device("cpu"))
    assert not metric.applies(gan) and metric.applies(vae)
    assert metric.during_training is False
