"""Adversarial objectives on discriminator logits D(.) (real side r, fake side f).

Every objective gives the discriminator's loss and the generator side's loss. The
generator side also moves the real side when something trainable stands behind it (an
encoder in ALI/BiGAN): there the labels are swapped for both sides.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from unigen.kinds import Objective, Options


class ObjectiveOptions(Options):
    r1: float = Field(0.0, ge=0, description="R1 penalty weight gamma: adds gamma/2 * E||grad D(real)||^2 to the D-loss (Mescheder et al. 2018)")


class NonSaturating(Objective):
    Options = ObjectiveOptions
    doc = "D: -log D(r) - log(1 - D(f)); G: -log D(f) (Goodfellow et al. 2014, the practical form)"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, options: Any) -> torch.Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = F.softplus(-fake).mean()
        return loss if real is None else loss + F.softplus(real).mean()


class Minimax(NonSaturating):
    doc = "D as non-saturating; G minimises log(1 - D(f)), the original minimax game"

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = -F.softplus(fake).mean()
        return loss if real is None else loss - F.softplus(-real).mean()


class Hinge(Objective):
    Options = ObjectiveOptions
    doc = "D: relu(1 - D(r)) + relu(1 + D(f)); G: -D(f) (geometric GAN / SAGAN)"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, options: Any) -> torch.Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = -fake.mean()
        return loss if real is None else loss + real.mean()


class LeastSquares(Objective):
    Options = ObjectiveOptions
    doc = "D: (D(r) - 1)^2/2 + D(f)^2/2; G: (D(f) - 1)^2/2 (LSGAN, Mao et al. 2017)"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, options: Any) -> torch.Tensor:
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = 0.5 * ((fake - 1) ** 2).mean()
        return loss if real is None else loss + 0.5 * (real**2).mean()


OBJECTIVES: dict[str, Objective] = {
    "nonsaturating": NonSaturating(),
    "minimax": Minimax(),
    "hinge": Hinge(),
    "least_squares": LeastSquares(),
}


def r1_penalty(real_logits: torch.Tensor, real: list[torch.Tensor], gamma: float) -> torch.Tensor:
    """gamma/2 * E||grad_x D(x)||^2 at the real side (inputs that require grad): it keeps D
    flat on the data manifold (Mescheder et al. 2018)."""
    grads = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    sq = sum(g.flatten(1).pow(2).sum(1) for g in grads)
    return 0.5 * gamma * sq.mean()
