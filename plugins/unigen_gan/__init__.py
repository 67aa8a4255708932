"""The GAN family: adversarial terms on any adversarial link, objectives, a `gan` family.

In the unifying view, a discriminator q_phi(y | x) tells the q-side (data, or inferred
pairs) from the p-side (generated); the discriminator phase fits phi, and the generator
phase (sleep-like) updates whatever produces the fake side with the labels swapped.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from . import objectives
from .families import MADGANFamily, WGANFamily, WGANGPFamily
from .improved import FeatureMatching, HistoricalAverage
from .rules import IdentifyRule
from .terms import AdversarialD, AdversarialG, GANFamily


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("adversarial.d", AdversarialD())
    register("adversarial.g", AdversarialG())
    register("feature_matching", FeatureMatching())
    register("historical_average", HistoricalAverage())


@hookimpl
def unigen_register_objectives(register: Any) -> None:
    for name, obj in objectives.OBJECTIVES.items():
        register(name, obj)


@hookimpl
def unigen_register_rules(register: Any) -> None:
    register("identify", IdentifyRule())


@hookimpl
def unigen_register_families(register: Any) -> None:
    register("gan", GANFamily())
    register("wgan", WGANFamily())
    register("wgan_gp", WGANGPFamily())
    register("madgan", MADGANFamily())
