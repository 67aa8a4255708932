"""The generator side's health: generated samples that lost their diversity (mode collapse)."""

from __future__ import annotations

import math
from typing import Any

from unigen.api.contexts import ModelView

# Generated samples whose spread across a batch falls below this fraction of the data's have
# lost their diversity (a generator that maps every noise to nearly one point).
DIVERSITY_FRACTION = 0.02
DIVERSITY_SAMPLES = 256


class SampleDiversity:
    """A `Bound.monitor`: a warning when generated samples of the model's sampled variable
    spread across a batch less than `DIVERSITY_FRACTION` of the data's spread (the mean over
    coordinates of the std). The data's spread is computed once per model."""

    def __init__(self) -> None:
        self._spread: dict[int, float] = {}

    def data_spread(self, model: ModelView, data: Any) -> float:
        key = id(model)
        if key not in self._spread:
            self._spread[key] = float(data[:10_000].float().flatten(1).std(0).mean())
        return self._spread[key]

    def __call__(self, model: ModelView) -> tuple[str, str] | None:
        var = model.sampled_variable()
        data = model.dataset.train.get(model.fields.get(var, "")) if var is not None else None
        if var is None or data is None or len(data) < 2:
            return None
        spread = self.data_spread(model, data)
        if not math.isfinite(spread) or spread <= 0:
            return None
        test = model.dataset.test
        n = min(DIVERSITY_SAMPLES, min((len(v) for v in test.values()), default=DIVERSITY_SAMPLES))
        if n < 2:
            return None
        x = model.generate(n, var, {k: v[:n] for k, v in test.items()})
        got = float(x.detach().float().flatten(1).std(0).mean())
        if not math.isfinite(got) or got >= DIVERSITY_FRACTION * spread:
            return None
        return f"diversity/{var}", (
            f"generated samples of `{var}` have lost their diversity (mode collapse): their std across a batch of {n} is {got:.3g}, "
            f"{100 * got / spread:.2g}% of the data's {spread:.3g}; expected a spread near the data's. "
            "Hint: lower the learning rates, or strengthen what keeps the generator spread out (e.g. a gradient penalty on the discriminator)."
        )


sample_diversity = SampleDiversity()
