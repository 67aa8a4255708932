"""VAE/GAN (Larsen et al. 2016): a VAE whose reconstruction is measured in the features of a
discriminator layer, plus an adversarial link on x that judges both prior draws and
reconstructions (the `reconstructions` option of `adversarial.d`/`adversarial.g`).

In the unifying view the encoder phase is wake-like (KL + feature reconstruction on the
q-trace), the decoder phase adds the sleep-like generator loss, and the discriminator phase
fits q_phi(y | x) on data against both kinds of fake.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .terms import KL, FeatureRecon


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("kl", KL())
    register("feature_recon", FeatureRecon())
