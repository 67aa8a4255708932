"""Mode coverage on the 2-D mixtures, as in the VEEGAN protocol."""

from __future__ import annotations

import math

import torch

from unigen.api.contexts import ModelView
from unigen.api.kinds import Metric

# E[r^2 | r < 3 sigma] / sigma^2 for a 2-D Gaussian (r^2 / 2 sigma^2 is exponential with mean 1):
# 2 (1 - 5.5 e^-4.5) / (1 - e^-4.5), about 1.899.
HQ_MEAN_SQUARE = 2 * (1 - 5.5 * math.exp(-4.5)) / (1 - math.exp(-4.5))


def mode_stats(samples: torch.Tensor, modes: torch.Tensor, sigma: float) -> dict[str, float]:
    """High quality: within 3 sigma of the nearest mode. A mode is captured when it is the
    nearest mode of at least one high-quality sample. `mode_kl` is KL(generated || true) over
    the nearest-mode histogram of all samples (the true one is uniform). `hq_spread` is the RMS
    distance of the high-quality samples to their mode over what the data's own would have
    (1: as spread as the data; near 0: each mode collapsed to a point, which the high-quality
    share alone would reward; 2-D mixtures)."""
    d = torch.cdist(samples.float(), modes.float().to(samples.device))
    dist, nearest = d.min(dim=1)
    hq = dist < 3 * sigma
    captured = int(torch.unique(nearest[hq]).numel())
    counts = torch.bincount(nearest, minlength=len(modes)).float()
    p = counts / counts.sum()
    nz = p > 0
    kl = float((p[nz] * (p[nz] * len(modes)).log()).sum())
    spread = float((dist[hq].pow(2).mean() / (HQ_MEAN_SQUARE * sigma**2)).sqrt()) if bool(hq.any()) else float("nan")
    return {"modes_captured": float(captured), "modes_total": float(len(modes)), "hq_fraction": float(hq.float().mean()), "mode_kl": kl, "hq_spread": spread}


class ModeCoverage(Metric):
    doc = "modes captured, high-quality fraction, mode-histogram KL and the high-quality samples' spread against the data's, on a 2-D mixture"

    def applies(self, model: ModelView) -> bool:
        return "modes" in model.dataset.info and model.sampled_variable() is not None

    def compute(self, model: ModelView) -> dict[str, float]:
        var = model.sampled_variable()
        assert var is not None
        x = model.generate(model.program.train.eval_samples, var)
        return mode_stats(x.reshape(len(x), -1), model.dataset.info["modes"], float(model.dataset.info["sigma"]))
