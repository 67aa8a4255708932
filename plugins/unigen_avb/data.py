"""`one_hot`: k one-hot points, equally likely (the AVB paper's toy data with k = 4)."""

from __future__ import annotations

import torch
from pydantic import Field

from unigen.api.kinds import Dataset, DatasetKind, Options


class OneHotOptions(Options):
    k: int = Field(4, ge=2, le=64, description="how many points (one-hot vectors of k elements)")
    rows: int = Field(1000, ge=1, le=1_000_000, description="rows of each split, cycling through the k points")


class OneHotPoints(DatasetKind):
    Options = OneHotOptions
    doc = "k one-hot points, equally likely: x of shape [k] (AVB's toy data, k = 4; the best model gives each point probability 1/k: -log p(x) = log k)"

    def fields(self, o: OneHotOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (o.k,)}

    def load(self, o: OneHotOptions) -> Dataset:
        x = torch.nn.functional.one_hot(torch.arange(o.rows) % o.k, o.k).float()
        return Dataset({"x": x}, {"x": x.clone()}, {"points": o.k})

    def draw_samples(self, ax, samples, info, rows, cols, row_labels=None, paths=False) -> None:  # type: ignore[no-untyped-def]
        """A bar per point: the model's probability of it, the mean over the drawn rows (each a
        one-hot sample or, as training's pictures show, the probabilities p(x | z) of one z)."""
        k = samples.shape[-1]
        share = samples.reshape(len(samples), -1).float().mean(0).cpu()
        ax.bar(range(k), (share / share.sum()).numpy(), color="tab:blue")
        ax.axhline(1 / k, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(k))
        ax.set_xlabel("point")
        ax.set_ylabel("p(x)")
