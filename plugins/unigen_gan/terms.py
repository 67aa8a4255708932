"""The two sides of an adversarial link as terms, and the `gan` family's defaults."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from unigen.graph import EdgeInfo, ModelGraph
from unigen.kinds import Bound, Family, Site, Term, merge_defaults
from unigen.runtime import StepContext

from .objectives import packed, r1_penalty


def _side(ctx: StepContext, refs: tuple[tuple[str, str], ...]) -> list[torch.Tensor]:
    return [ctx.trace(t)[v] for t, v in refs]


def _behind(graph: ModelGraph, refs: tuple[tuple[str, str], ...]) -> set[str]:
    out: set[str] = set()
    for t, v in refs:
        out |= graph.nets_behind(v, t)
    return out


def _show(refs: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{t}.{v}" for t, v in refs)


class AdversarialD(Term):
    target = "adversarial"
    doc = "discriminator side of an adversarial link: tell the real side from the fake side"

    def bind(self, site: Site) -> Bound:
        e: EdgeInfo = site.edge  # type: ignore[assignment]
        net = e.net

        def loss(ctx: StepContext) -> torch.Tensor:
            objective, opts = ctx.model.objectives[e.name]
            objective.prepare(ctx.net(net), opts)
            d = packed(ctx.net(net), opts)
            real = _side(ctx, e.real)
            gamma = getattr(opts, "r1", 0.0)
            if gamma:
                # R1 differentiates D(real) with respect to the real inputs; one forward serves both.
                real = [r.detach().requires_grad_(True) for r in real]
            real_logits = d(*real)
            fake = _side(ctx, e.fake)
            loss = objective.d_loss(real_logits, d(*fake), opts)
            penalty = objective.d_penalty(d, real, fake, opts)
            if penalty is not None:
                loss = loss + penalty
            return loss + r1_penalty(real_logits, real, gamma) if gamma else loss

        traces = frozenset(t for t, _ in e.real + e.fake)
        reaches = site.graph.nets_of(e) | _behind(site.graph, e.real) | _behind(site.graph, e.fake)
        return Bound(loss, f"{e.objective} D-loss of {net}: real ({_show(e.real)}) vs fake ({_show(e.fake)})", traces, frozenset(reaches), health=_collapse_check(site, e))


# A D-loss within this fraction of the way from its floor (D wins outright) to its value at
# chance (D outputs 0 on both sides) is a discriminator that has collapsed the game.
COLLAPSE_FRACTION = 0.01


def _collapse_check(site: Site, e: EdgeInfo) -> Callable[[torch.Tensor], str | None] | None:
    """The health check of a D-loss: the objective says where its loss bottoms out
    (`d_loss_min`), and its value at chance is computed once here."""
    if not site.registry.has("objectives", e.objective or ""):
        return None
    objective = site.registry.get("objectives", e.objective or "")
    floor = getattr(objective, "d_loss_min", None)
    options, problems = site.registry.options("objectives", e.objective or "", e.options, e.path)
    if floor is None or problems:
        return None
    try:
        with torch.no_grad():
            zeros = torch.zeros(2, 1)
            chance = float(objective.d_loss(zeros, zeros, options))
    except Exception:  # an objective that cannot be evaluated on a dummy batch goes unjudged
        return None
    if not math.isfinite(chance) or chance <= floor:
        return None
    below = floor + COLLAPSE_FRACTION * (chance - floor)

    def health(value: torch.Tensor) -> str | None:
        v = float(value)
        if not math.isfinite(v) or v >= below:
            return None
        return (
            f"the discriminator `{e.net}` tells real ({_show(e.real)}) from fake ({_show(e.fake)}) almost perfectly: its {e.objective} loss is {v:.3g}, "
            f"below {below:.3g} (it is {chance:.3g} at chance, {floor:g} when it wins outright), so the generator side gets little gradient (discriminator collapse); "
            f"expected the two sides to stay close. Hint: lower `{e.net}`'s learning rate or raise the generator's, or add a gradient penalty (`options: {{r1: 1.0}}` on edge `{e.name}`)."
        )

    return health


class AdversarialG(Term):
    target = "adversarial"
    doc = "generator side of an adversarial link: make the fake side pass as real (and, if trainable, the real side as fake)"

    def bind(self, site: Site) -> Bound:
        e: EdgeInfo = site.edge  # type: ignore[assignment]
        net = e.net
        real_moves = bool(_behind(site.graph, e.real))

        def loss(ctx: StepContext) -> torch.Tensor:
            objective, opts = ctx.model.objectives[e.name]
            objective.prepare(ctx.net(net), opts)
            d = packed(ctx.net(net), opts)
            real = d(*_side(ctx, e.real)) if real_moves else None
            return objective.g_loss(d(*_side(ctx, e.fake)), opts, real=real)

        traces = frozenset(t for t, _ in e.fake + (e.real if real_moves else ()))
        reaches = site.graph.nets_of(e) | _behind(site.graph, e.fake) | (_behind(site.graph, e.real) if real_moves else set())
        sides = f"fake ({_show(e.fake)})" + (f" and real ({_show(e.real)}) with labels swapped" if real_moves else "")
        return Bound(loss, f"{e.objective} G-loss through {net}: {sides}", traces, frozenset(reaches))


class GANFamily(Family):
    doc = "generative adversarial network on the 2-D ring: z ~ N(0, I), x = generator(z), a discriminator on x"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "data": {"source": "ring2d"},
            "variables": {"x": {"observed": True, "shape": [2]}, "z": {"prior": "normal", "shape": [16]}},
            "networks": {
                "generator": {"arch": "mlp", "hidden": [128, 128]},
                "discriminator": {"arch": "mlp", "hidden": [128, 128]},
            },
            "edges": [
                {"generative": "z -> x", "net": "generator", "dist": "deterministic"},
                {"adversarial": "x", "net": "discriminator", "objective": "nonsaturating"},
            ],
            "phases": [
                {"name": "discriminator", "update": ["discriminator"], "terms": ["adversarial.d"]},
                {"name": "generator", "update": ["generator"], "terms": ["adversarial.g"]},
            ],
        }
        return merge_defaults(defaults, doc)
