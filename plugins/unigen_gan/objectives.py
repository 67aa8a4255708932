"""Adversarial objectives on discriminator logits D(.) (real side r, fake side f).

Every objective gives the discriminator's loss and the generator side's loss. The
generator side also moves the real side when something trainable stands behind it (an
encoder in ALI/BiGAN): there the labels are swapped for both sides.

Options that change the discriminator's shape: `pack: m` (PacGAN, every objective) makes it
judge m samples at once; `identify: c` (MAD-GAN, the objectives that read a probability of
`real`) gives it 1 + k logits, `real` and one for each value of a categorical latent c.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from unigen.api.contexts import GraphView
from unigen.api.kinds import Objective, Options


class ObjectiveOptions(Options):
    r1: float = Field(0.0, ge=0, description="R1 penalty weight gamma: adds gamma/2 * E||grad D(real)||^2 to the D-loss (Mescheder et al. 2018)")
    pack: int = Field(1, ge=1, le=64, description="PacGAN packing: the discriminator judges m samples of a side jointly, concatenated along their first axis (Lin et al. 2018)")


class LogLossOptions(ObjectiveOptions):
    real_label: float = Field(1.0, gt=0, le=1, description="one-sided label smoothing: the discriminator's target on the real side, e.g. 0.9 (Salimans et al. 2016); the fake side keeps 0")
    identify: str | None = Field(None, description="MAD-GAN (Ghosh et al. 2018): a categorical latent c (shape [k]) behind the fake side; the discriminator gives 1 + k logits and also tells which value of c produced each fake sample (which generator)")


def identified(options: Any) -> str | None:
    """The latent a link's discriminator also tells (`identify: c`), or None."""
    return getattr(options, "identify", None)


class PackingObjective(Objective):
    """An objective whose options may pack samples (`pack: m`): the discriminator judges m
    samples of a side at once, stacked along their first axis."""

    def network_shapes(self, inputs: list[tuple[int, ...]], options: Any, graph: GraphView) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
        m = getattr(options, "pack", 1)
        return [(s[0] * m, *s[1:]) for s in inputs], (1,)


class NonSaturating(PackingObjective):
    Options = LogLossOptions
    doc = "D: -log D(r) - log(1 - D(f)); G: -log D(f) (Goodfellow et al. 2014, the practical form)"

    def network_shapes(self, inputs: list[tuple[int, ...]], options: Any, graph: GraphView) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
        inputs, output = super().network_shapes(inputs, options, graph)
        # `identify: c`: one logit for `real` and one for each value of c.
        c = identified(options)
        shape = graph.shape(c) if c is not None and c in graph.variables else ()
        return inputs, ((1 + shape[0],) if len(shape) == 1 else output)

    def note(self, options: Any) -> str:
        c = identified(options)
        return f"also tells which `{c}` made each fake" if c else ""

    def shown_options(self, options: Any) -> Any:
        # `identify` is said in words by `note`.
        return options.model_copy(update={"identify": None}) if identified(options) else options

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, options: Any) -> torch.Tensor:
        a = getattr(options, "real_label", 1.0)
        real_loss = F.softplus(-real).mean() if a == 1.0 else a * F.softplus(-real).mean() + (1 - a) * F.softplus(real).mean()
        return real_loss + F.softplus(fake).mean()

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = F.softplus(-fake).mean()
        return loss if real is None else loss + F.softplus(real).mean()


class Minimax(NonSaturating):
    doc = "D as non-saturating; G minimises log(1 - D(f)), the original minimax game"

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = -F.softplus(fake).mean()
        return loss if real is None else loss - F.softplus(-real).mean()


class Hinge(PackingObjective):
    Options = ObjectiveOptions
    doc = "D: relu(1 - D(r)) + relu(1 + D(f)); G: -D(f) (geometric GAN / SAGAN)"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, options: Any) -> torch.Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = -fake.mean()
        return loss if real is None else loss + real.mean()


class LeastSquares(PackingObjective):
    Options = ObjectiveOptions
    doc = "D: (D(r) - 1)^2/2 + D(f)^2/2; G: (D(f) - 1)^2/2 (LSGAN, Mao et al. 2017)"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, options: Any) -> torch.Tensor:
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = 0.5 * ((fake - 1) ** 2).mean()
        return loss if real is None else loss + 0.5 * (real**2).mean()


class WassersteinOptions(ObjectiveOptions):
    clip: float | None = Field(0.01, gt=0, description="weight clipping: every parameter of the critic is kept in [-clip, clip] (Arjovsky et al. 2017); null: no clipping")


class Wasserstein(PackingObjective):
    Options = WassersteinOptions
    doc = "critic: D(f) - D(r) (Wasserstein-1 estimate, critic kept Lipschitz by weight clipping); G: -D(f) (WGAN, Arjovsky et al. 2017)"
    d_loss_min = None  # unbounded below: a critic loss says nothing about collapse

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, options: Any) -> torch.Tensor:
        return fake.mean() - real.mean()

    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        loss = -fake.mean()
        return loss if real is None else loss + real.mean()

    def prepare(self, net: torch.nn.Module, options: Any) -> None:
        # Clamping before every use of the critic equals clamping after each of its updates:
        # the critic the generator sees is always the clipped one.
        clip = getattr(options, "clip", None)
        if clip:
            with torch.no_grad():
                for p in net.parameters():
                    p.clamp_(-clip, clip)


class GradientPenaltyOptions(ObjectiveOptions):
    gp: float = Field(10.0, ge=0, description="gradient-penalty weight lambda: lambda * E(||grad D(x_hat)||_2 - 1)^2 on random interpolates x_hat (Gulrajani et al. 2017)")


class WassersteinGP(Wasserstein):
    Options = GradientPenaltyOptions  # type: ignore[assignment]
    doc = "WGAN-GP: critic D(f) - D(r) + lambda (||grad D(x_hat)|| - 1)^2 on x_hat = e r + (1 - e) f, e ~ U(0, 1); G: -D(f) (Gulrajani et al. 2017)"

    def prepare(self, net: torch.nn.Module, options: Any) -> None:
        return None

    def d_penalty(self, net: torch.nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor], options: Any) -> torch.Tensor | None:
        lam = getattr(options, "gp", 0.0)
        return gradient_penalty(net, real, fake, lam) if lam else None


OBJECTIVES: dict[str, Objective] = {
    "nonsaturating": NonSaturating(),
    "minimax": Minimax(),
    "hinge": Hinge(),
    "least_squares": LeastSquares(),
    "wasserstein": Wasserstein(),
    "wgan_gp": WassersteinGP(),
}


def r1_penalty(real_logits: torch.Tensor, real: list[torch.Tensor], gamma: float) -> torch.Tensor:
    """gamma/2 * E||grad_x D(x)||^2 at the real side (inputs that require grad): it keeps D
    flat on the data manifold (Mescheder et al. 2018)."""
    grads = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    sq = sum(g.flatten(1).pow(2).sum(1) for g in grads)
    return 0.5 * gamma * sq.mean()


def gradient_penalty(net: torch.nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor], lam: float) -> torch.Tensor:
    """lam * E(||grad_x D(x_hat)||_2 - 1)^2 at x_hat = e * real + (1 - e) * fake, one e ~ U(0, 1)
    per sample shared by every variable of the side; the norm runs over all of them together."""
    n = real[0].shape[0]
    e = torch.rand(n, device=real[0].device, dtype=real[0].dtype)
    mixed = []
    for r, f in zip(real, fake):
        w = e.view(n, *([1] * (r.dim() - 1)))
        mixed.append((w * r.detach() + (1 - w) * f.detach()).requires_grad_(True))
    grads = torch.autograd.grad(net(*mixed).sum(), mixed, create_graph=True)
    norm = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads) + 1e-12)
    return lam * (norm - 1).pow(2).mean()


class Packed:
    """A discriminator that judges `m` samples at once: its inputs (n, C, ...) are regrouped
    into (n // m, m * C, ...), consecutive samples together (a remainder of n % m is left out)."""

    def __init__(self, net: torch.nn.Module, m: int) -> None:
        self.net, self.m = net, m

    def _pack(self, xs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        m = self.m
        n = xs[0].shape[0] // m * m
        return [x[:n].reshape(n // m, m * x.shape[1], *x.shape[2:]) for x in xs]

    def __call__(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.net(*self._pack(xs))

    def features(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.net.features(*self._pack(xs))  # type: ignore[operator]


def packed(net: torch.nn.Module, options: Any) -> Any:
    m = getattr(options, "pack", 1)
    return Packed(net, m) if m > 1 else net
