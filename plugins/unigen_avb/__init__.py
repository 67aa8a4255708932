"""Adversarial Variational Bayes (Mescheder, Nowozin & Geiger 2017): an implicit posterior
q(z | x, eps) — an encoder fed with noise — whose KL term no density gives, estimated instead by
an adversary T(x, z) that tells q's pairs (the real side) from pairs with z drawn from the prior
(the fake side). At T's optimum T(x, z) = log q(z | x) - log p(z), so the encoder and decoder
minimise -E_q[log p(x | z)] + E_q[T(x, z)].

In the unifying view this is an ALI-like link whose trainable side is the real one: the encoder
stands behind q.z and learns by moving it, which is why the validator accepts a link with nothing
trainable behind its fake side when something is behind its real side (G008).

Also here: `one_hot`, the paper's toy data (k one-hot points), and `nll_quadrature`, the exact
held-out log-likelihood of a model whose one latent root has at most two dimensions, and
`avb_nelbo`, AVB's approximate -ELBO on the test split.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .data import OneHotPoints
from .metrics import HeldOutAVB, QuadratureNLL
from .terms import AVBBound


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("avb", AVBBound())


@hookimpl
def unigen_register_datasets(register: Any) -> None:
    register("one_hot", OneHotPoints())


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("nll_quadrature", QuadratureNLL())
    register("avb_nelbo", HeldOutAVB())
