"""The health of a Gaussian likelihood whose variance the network learns.

On data in [0, 1] with elements that barely vary (the constant border pixels of digits, a few
grey levels), a learned standard deviation can shrink towards zero on those elements: the density
there grows without bound, the held-out -ELBO falls far below zero, and the bound stops saying
anything of the model. The ELBO's `Bound.monitor` watches for it on a held-out batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from unigen.api.contexts import EdgeInfo, ModelView, RegistryView, StepContext

# A learned standard deviation below this on data in [0, 1] has collapsed onto the element's few
# values: 2% of the range, a third of a grey level of 16-level digits, five levels of 8-bit images.
# A floor `min_scale` at or above it keeps the monitor quiet.
COLLAPSED_SCALE = 0.02
HEALTH_ROWS = 256  # held-out rows the monitor scores


def learned_scale_edges(edges: tuple[EdgeInfo, ...], registry: RegistryView) -> tuple[EdgeInfo, ...]:
    """The edges whose distribution learns its variance (options with `variance: learned`, as
    `normal`'s): those the monitor judges."""
    out = []
    for e in edges:
        if not registry.has("distributions", e.dist or ""):
            continue
        options, problems = registry.options("distributions", e.dist or "", e.options, e.path + ("options",))
        if not problems and getattr(options, "variance", None) == "learned":
            out.append(e)
    return tuple(out)


class ScaleCollapse:
    """A `Bound.monitor`: a warning when, on the first `HEALTH_ROWS` held-out rows of an observed
    variable whose values lie in [0, 1], the learned standard deviation (each element's mean
    over the rows) falls below `COLLAPSED_SCALE` at some element while the held-out -ELBO per
    example (`nelbo` on a context of those rows) is below zero."""

    def __init__(self, edges: tuple[EdgeInfo, ...], nelbo: Callable[[StepContext], torch.Tensor]) -> None:
        self.edges, self.nelbo = edges, nelbo

    def __call__(self, model: ModelView) -> tuple[str, str] | None:
        test = model.observed_batch(model.dataset.test)
        n = min((len(v) for v in test.values()), default=0)
        if n < 1:
            return None
        n = min(n, HEALTH_ROWS)
        batch = {k: v[:n] for k, v in test.items()}
        ctx = model.context(batch, n)
        found: list[tuple[EdgeInfo, int, int, float]] = []
        for e in self.edges:
            x = batch.get(e.child or "")
            if x is None or not x.is_floating_point() or float(x.min()) < 0 or float(x.max()) > 1:
                continue
            scale = getattr(ctx.q.cond(e), "scale", None)
            if not isinstance(scale, torch.Tensor) or scale.shape != x.shape:
                continue
            per = scale.detach().float().flatten(1).mean(0)
            low = int((per < COLLAPSED_SCALE).sum())
            if low:
                found.append((e, low, per.numel(), float(per.min())))
        if not found:
            return None
        nelbo = float(self.nelbo(ctx))
        if not math.isfinite(nelbo) or nelbo >= 0:
            return None
        e, low, total, smallest = found[0]
        return f"scale/{e.child}", (
            f"the learned standard deviation of `{e.child}` (edge `{e.name}`, `{e.dist}`) has collapsed on data in [0, 1]: on {n} held-out rows it is below {COLLAPSED_SCALE:g} "
            f"at {low} of {total} elements (smallest {smallest:.2g}), and the held-out -ELBO is {nelbo:.4g} nats per example, below zero; "
            "a learned variance shrinks on elements that barely vary (constant pixels, a few grey levels), where the density grows without bound, "
            f"so the bound measures that shrinking more than the model; expected a standard deviation of at least {COLLAPSED_SCALE:g} at every element. "
            f"Hint: fix the variance with `options: {{variance: fixed, scale: 0.1}}` on edge `{e.name}`, or floor it with `options: {{min_scale: 0.05}}`; "
            "for data in {0, 1} use `dist: bernoulli`."
        )


def scale_monitor(edges: tuple[EdgeInfo, ...], registry: RegistryView, nelbo: Callable[[StepContext], torch.Tensor]) -> Any:
    """The monitor of a bound over `edges` (its reconstruction edges), or None where none of them
    learns its variance."""
    judged = learned_scale_edges(edges, registry)
    return ScaleCollapse(judged, nelbo) if judged else None
