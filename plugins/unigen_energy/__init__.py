"""Energy-based models over undirected factors: the RBM's bilinear factor, samplers that fill
the model's chain (Gibbs, Langevin) and the hidden units of the q-trace (mean field), the
contrastive divergence term, and the exact and AIS test log-likelihoods of binary models.

In the unifying view, contrastive divergence is the adversarial move with the critic equal to
the negative free energy and the 'generator' being the model's own chain.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .metrics import AISNLL, ExactNLL
from .nets import RBMArch
from .samplers import Gibbs, Langevin, MeanField
from .terms import ContrastiveDivergence


@hookimpl
def unigen_register_networks(register: Any) -> None:
    register("rbm", RBMArch())


@hookimpl
def unigen_register_samplers(register: Any) -> None:
    register("gibbs", Gibbs())
    register("mean_field", MeanField())
    register("langevin", Langevin())


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("contrastive_divergence", ContrastiveDivergence())


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("exact_nll", ExactNLL())
    register("ais", AISNLL())
