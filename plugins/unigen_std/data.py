"""Embedded datasets: they ship with the install, so every command works offline.

- `digits`: scikit-learn's bundled 8x8 digits (1,797 images), scaled to [0, 1], with a fixed
  train/test split and optional binarisation (`binarize`: see `BINARIZE_DOC`; image datasets of
  other plugins share `Binarize`, `binarize_splits` and `dynamic_draw`).
- `ring2d`, `grid2d`: the 2-D Gaussian mixtures of the VEEGAN protocol (Srivastava et al.
  2017): 8 modes on the unit circle with sigma 0.01, and 25 modes on {-4,-2,0,2,4}^2 with
  sigma 0.05.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from unigen.api.kinds import Dataset, Options

from .pictures import ImageSamples, MixtureSamples

# How an image dataset makes its pixels binary; `true`/`false` are the older spellings of
# `threshold`/`none` (kept as given, so a spec's printed program does not change).
Binarize = Literal["none", "threshold", "stochastic", "dynamic"] | bool
BINARIZE_DOC = (
    "how grey pixels in [0, 1] become 0/1: `none` (or false) keeps the grey levels; `threshold` (or true): "
    "a pixel > 0.5 becomes 1; `stochastic`: one fixed Bernoulli draw of every image, each pixel 1 with "
    "probability its grey level, seeded by `binarize_seed` (Salakhutdinov & Murray 2008); `dynamic`: the "
    "training split keeps its grey levels and every training batch is a fresh Bernoulli draw (Burda et al. "
    "2016), while the test split is one fixed draw seeded by `binarize_seed` (as `stochastic`), so held-out "
    "numbers are stable"
)
BINARIZE_SEED_DOC = "seed of the fixed Bernoulli draws of `stochastic` and of the test split under `dynamic` (not the training seed)"


def binarize_mode(value: bool | str) -> str:
    """The binarisation a `binarize` option names: none, threshold, stochastic or dynamic."""
    if isinstance(value, bool):
        return "threshold" if value else "none"
    return value


def binarize_splits(train: torch.Tensor, test: torch.Tensor, value: bool | str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The train and test images (grey levels in [0, 1]) as the binarisation `value` gives them.

    The fixed draws use one generator per split (seed 2s for train, 2s + 1 for test), so the test
    split's draw does not depend on how many training rows there are."""
    mode = binarize_mode(value)
    if mode == "threshold":
        return (train > 0.5).float(), (test > 0.5).float()
    if mode == "none":
        return train, test

    def draw(x: torch.Tensor, stream: int) -> torch.Tensor:
        return torch.bernoulli(x, generator=torch.Generator().manual_seed(2 * seed + stream))

    return (draw(train, 0) if mode == "stochastic" else train), draw(test, 1)


def dynamic_draw(rows: torch.Tensor) -> torch.Tensor:
    """A training batch of grey levels as a fresh Bernoulli draw (dynamic binarisation), in the
    global random stream the trainer seeds and checkpoints."""
    return torch.bernoulli(rows)


class DigitsOptions(Options):
    binarize: Binarize = Field(False, description=BINARIZE_DOC)
    binarize_seed: int = Field(0, ge=0, description=BINARIZE_SEED_DOC)
    flatten: bool = Field(True, description="x of shape [64]; false gives [1, 8, 8]")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, description="seed of the fixed train/test split (not the training seed)")
    labelled_fraction: float = Field(1.0, gt=0, le=1, description="below 1: only this fraction of the training rows keep their label (the same fraction of each class); the field `labelled` (1/0) marks them, the hidden rows' `y` is all zeros; the test split keeps every label")
    label_seed: int = Field(0, description="seed of the choice of the labelled rows (not the training seed)")


class Digits(ImageSamples):
    Options = DigitsOptions
    doc = "scikit-learn's bundled 8x8 digits: x in [0,1] (or binary), y one-hot over 10 classes"

    def fields(self, o: DigitsOptions) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {"x": (64,) if o.flatten else (1, 8, 8), "y": (10,)}
        if o.labelled_fraction < 1:
            out["labelled"] = ()
        return out

    def load(self, o: DigitsOptions) -> Dataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
        labels = torch.tensor(bunch.target, dtype=torch.long)
        y = torch.nn.functional.one_hot(labels, 10).float()
        if not o.flatten:
            x = x.view(-1, 1, 8, 8)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(o.split_seed))
        n_test = int(round(len(x) * o.test_fraction))
        test, train = perm[:n_test], perm[n_test:]
        x_train, x_test = binarize_splits(x[train], x[test], o.binarize, o.binarize_seed)
        train_fields = {"x": x_train, "y": y[train], "label": labels[train]}
        test_fields = {"x": x_test, "y": y[test], "label": labels[test]}
        if o.labelled_fraction < 1:
            keep = labelled_rows(labels[train], o.labelled_fraction, o.label_seed)
            # Hidden labels are gone from the training split, so nothing can read them by mistake.
            train_fields["y"] = train_fields["y"] * keep[:, None]
            train_fields["label"] = torch.where(keep.bool(), train_fields["label"], torch.full_like(train_fields["label"], -1))
            train_fields["labelled"] = keep
            test_fields["labelled"] = torch.ones(len(test))
        return Dataset(train_fields, test_fields, {"image_shape": (8, 8), "classes": 10})

    def fresh_fields(self, o: DigitsOptions) -> tuple[str, ...]:
        return ("x",) if binarize_mode(o.binarize) == "dynamic" else ()

    def per_batch(self, field: str, rows: torch.Tensor, options: DigitsOptions) -> torch.Tensor:
        return dynamic_draw(rows)


def labelled_rows(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """1.0 for the rows that keep their label: round(fraction * count) of each class (at least
    one), chosen by `seed`; 0.0 elsewhere."""
    gen = torch.Generator().manual_seed(seed)
    keep = torch.zeros(len(labels))
    for c in torch.unique(labels).tolist():
        rows = (labels == c).nonzero().flatten()
        k = max(1, int(round(fraction * len(rows))))
        keep[rows[torch.randperm(len(rows), generator=gen)[:k]]] = 1.0
    return keep


class MixtureOptions(Options):
    n_train: int = Field(100_000, gt=0)
    n_test: int = Field(10_000, gt=0)
    sigma: float | None = Field(None, gt=0, description="standard deviation of each mode (default: the protocol's)")
    seed: int = 0


def mixture(modes: torch.Tensor, sigma: float, o: MixtureOptions) -> Dataset:
    gen = torch.Generator().manual_seed(o.seed)

    def draw(n: int) -> torch.Tensor:
        k = torch.randint(len(modes), (n,), generator=gen)
        return modes[k] + sigma * torch.randn(n, 2, generator=gen)

    return Dataset({"x": draw(o.n_train)}, {"x": draw(o.n_test)}, {"modes": modes, "sigma": sigma})


class Ring2D(MixtureSamples):
    Options = MixtureOptions
    doc = "8 Gaussians at angles 2*pi*k/8 on the unit circle, sigma 0.01 (VEEGAN protocol)"

    def fields(self, o: MixtureOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (2,)}

    def load(self, o: MixtureOptions) -> Dataset:
        angles = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
        modes = torch.stack([angles.cos(), angles.sin()], 1).float()
        return mixture(modes, o.sigma or 0.01, o)


class Grid2D(MixtureSamples):
    Options = MixtureOptions
    doc = "25 Gaussians at {-4,-2,0,2,4}^2, sigma 0.05 (VEEGAN protocol)"

    def fields(self, o: MixtureOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (2,)}

    def load(self, o: MixtureOptions) -> Dataset:
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        modes = torch.cartesian_prod(axis, axis)
        return mixture(modes, o.sigma or 0.05, o)
