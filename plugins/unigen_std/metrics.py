"""Mode coverage on the 2-D mixtures, as in the VEEGAN protocol."""

from __future__ import annotations

import torch

from unigen.kinds import Metric
from unigen.runtime import Model


def mode_stats(samples: torch.Tensor, modes: torch.Tensor, sigma: float) -> dict[str, float]:
    """High quality: within 3 sigma of the nearest mode. A mode is captured when it is the
    nearest mode of at least one high-quality sample. `mode_kl` is KL(generated || true) over
    the nearest-mode histogram of all samples (the true one is uniform)."""
    d = torch.cdist(samples.float(), modes.float().to(samples.device))
    dist, nearest = d.min(dim=1)
    hq = dist < 3 * sigma
    captured = int(torch.unique(nearest[hq]).numel())
    counts = torch.bincount(nearest, minlength=len(modes)).float()
    p = counts / counts.sum()
    nz = p > 0
    kl = float((p[nz] * (p[nz] * len(modes)).log()).sum())
    return {"modes_captured": float(captured), "modes_total": float(len(modes)), "hq_fraction": float(hq.float().mean()), "mode_kl": kl}


class ModeCoverage(Metric):
    doc = "modes captured, high-quality fraction and mode-histogram KL on a 2-D mixture"

    def applies(self, model: Model) -> bool:
        return "modes" in model.dataset.info and model.sampled_variable() is not None

    def compute(self, model: Model) -> dict[str, float]:
        var = model.sampled_variable()
        assert var is not None
        x = model.generate(model.program.spec.train.eval_samples, var)
        return mode_stats(x.reshape(len(x), -1), model.dataset.info["modes"], float(model.dataset.info["sigma"]))
