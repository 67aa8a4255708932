"""The VAE family: the evidence lower bound as a term, a `vae` family and held-out ELBO;
`aa_elbo`, the adversary-activated VAE's term on generated samples; `iwae`, the importance-weighted
bound as a term (the IWAE) and as a metric; `decoder_ais`, AIS estimates of the test log-likelihood.

In the unifying view, the ELBO is the wake phase with reparameterisation: the q-trace
(data through inference edges) is scored by the generative joint, and both theta and eta
are updated from it.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .aa import AAELBO
from .ais import DecoderAIS
from .iwae import IWAEBound, IWAETerm
from .terms import ELBO, HeldOutELBO, VAEFamily


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("elbo", ELBO())
    register("aa_elbo", AAELBO())
    register("iwae", IWAETerm())


@hookimpl
def unigen_register_families(register: Any) -> None:
    register("vae", VAEFamily())


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("elbo", HeldOutELBO())
    register("iwae", IWAEBound())
    register("decoder_ais", DecoderAIS())
