"""Autoregressive densities: p(x | pa) = prod_i p(x_i | x_<i, pa) in raster order, with the
causal networks that compute every conditional in one pass (MADE, a gated PixelCNN) and the
rule (G021) that checks, on the built network, that they are causal.

Given as a learned prior, `x: {observed: true, shape: [64], prior: {dist: autoregressive, net: made}}`,
the density is the model itself: the `elbo` term is then the exact negative log-likelihood.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .dists import AutoregressiveDist
from .made import MADEArch
from .pixelcnn import PixelCNNArch
from .rules import CausalRule


@hookimpl
def unigen_register_distributions(register: Any) -> None:
    register("autoregressive", AutoregressiveDist())


@hookimpl
def unigen_register_networks(register: Any) -> None:
    register("made", MADEArch())
    register("pixelcnn", PixelCNNArch())


@hookimpl
def unigen_register_rules(register: Any) -> None:
    register("causal", CausalRule())
