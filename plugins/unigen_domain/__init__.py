"""Domain shift: an embedded two-domain task built from the digits, a supervised term, and the
accuracy on the held-out target domain.

Adversarial domain adaptation (DANN, Ganin & Lempitsky 2015) in the unifying view: a feature
network infers h from x in both domains (two inference edges sharing one network); a
classifier q(y | h) is fit on the labelled source domain; and an adversarial link on the
features tells source features (real) from target features (fake), with the feature network
trained to fool it.
"""

from __future__ import annotations

from typing import Any

from unigen_ssvae.terms import LabelNLL

from unigen import hookimpl

from .data import DigitsShift
from .terms import TargetAccuracy


@hookimpl
def unigen_register_datasets(register: Any) -> None:
    register("digits_shift", DigitsShift())


@hookimpl
def unigen_register_terms(register: Any) -> None:
    # The classifier term of the semi-supervised VAE, on features the q-trace infers (DANN's h).
    register("supervised", LabelNLL("supervised", features=True, doc="supervised fit of an inference edge into an observed variable: -E_q[log q(y|pa)] with y from the data, gradient through the parents (a classifier on learnt features)"))


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("target_accuracy", TargetAccuracy())
