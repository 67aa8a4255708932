"""Wasserstein families: the `gan` family's graph with a critic trained several times per
generator step, as the papers prescribe."""

from __future__ import annotations

from typing import Any

from unigen.api.kinds import Family, merge_defaults

from .terms import GANFamily


def _wasserstein(objective: str, options: dict[str, Any], critic_optim: dict[str, Any], gen_optim: dict[str, Any], repeats: int) -> dict[str, Any]:
    return {
        "edges": [
            {"generative": "z -> x", "net": "generator", "dist": "deterministic"},
            {"adversarial": "x", "net": "discriminator", "objective": objective, "options": options},
        ],
        "phases": [
            {"name": "discriminator", "update": ["discriminator"], "terms": ["adversarial.d"], "optim": critic_optim, "repeats": repeats},
            {"name": "generator", "update": ["generator"], "terms": ["adversarial.g"], "optim": gen_optim},
        ],
    }


class WGANFamily(Family):
    doc = "Wasserstein GAN with weight clipping (Arjovsky et al. 2017): clip 0.01, RMSProp lr 5e-5, 5 critic steps per generator step"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        rms = {"kind": "rmsprop", "lr": 5e-5}
        return GANFamily().complete(merge_defaults(_wasserstein("wasserstein", {"clip": 0.01}, rms, rms, 5), doc))


class WGANGPFamily(Family):
    doc = "Wasserstein GAN with gradient penalty (Gulrajani et al. 2017): lambda 10, Adam lr 1e-4 betas (0, 0.9), 5 critic steps per generator step"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        adam = {"kind": "adam", "lr": 1e-4, "betas": [0.0, 0.9]}
        return GANFamily().complete(merge_defaults(_wasserstein("wgan_gp", {"gp": 10.0}, adam, adam, 5), doc))


class MADGANFamily(Family):
    doc = "MAD-GAN (Ghosh et al. 2018) on the 2-D ring: 8 generators (`multi_mlp`, c picks one), one discriminator with 1 + 8 classes that also tells which generator made each fake sample"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "variables": {"c": {"prior": "categorical", "shape": [8]}},
            "networks": {"generator": {"arch": "multi_mlp", "hidden": [128, 128]}},
            "edges": [
                {"generative": "c, z -> x", "net": "generator", "dist": "deterministic"},
                {"adversarial": "x", "net": "discriminator", "objective": "nonsaturating", "options": {"identify": "c"}},
            ],
        }
        return GANFamily().complete(merge_defaults(defaults, doc))
