"""Semi-supervised learning with a partially observed label (Kingma et al. 2014, M2).

The generative side is a VAE whose label y is an observed variable with a `mask`: the `elbo`
term (plugins/unigen_vae) scores rows that show y with y observed and sums y out under
q(y | x) on the others. This plugin adds what is particular to a classifier q(y | x):

- `label_nll`: -E[log q(y | x)] over the rows that observe y (the alpha term of M2's J^alpha);
  the same class is the domain plugin's `supervised`, with latent parents allowed;
- `label_accuracy`: the test accuracy of q(y | x), as `test_accuracy`.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .terms import LabelAccuracy, LabelNLL


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("label_nll", LabelNLL("label_nll", features=False, doc="supervised fit of q(y|x) to observed labels: -E[log q(y|x)] over the rows that observe y (a mask's rows, or all)"))


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("label_accuracy", LabelAccuracy())
