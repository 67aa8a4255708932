"""`digits_shift`: the 8x8 digits as a source domain and a shifted copy as a target domain.

The training split's images are divided in two disjoint halves: the source half gives `x`
and its labels `y`; the other half, shifted, gives `xt` and `yt` (the target's labels, which
a spec leaves unbound: the dataset keeps them for scoring only). In the test split `xt` is
the shift of the very images in `x` (row i of `xt` is row i of `x`, shifted), so a
translation between the domains can be scored against the true one.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from unigen_std.pictures import ImageSamples

from unigen.api.kinds import Dataset, Options


class ShiftOptions(Options):
    shift: Literal["invert", "noise", "rotate"] = Field("noise", description="invert: 1 - x; noise: |x - t| with t a smooth random texture per image (a small MNIST-M); rotate: a quarter turn")
    level: float = Field(0.5, gt=0, le=1, description="noise: the texture's contrast (1: textures span [0, 1])")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, description="seed of the train/test split, of the source/target halves and of the textures")


def apply_shift(x: torch.Tensor, shift: str, gen: torch.Generator, level: float = 1.0) -> torch.Tensor:
    """The target-domain version of flat 8x8 images x in [0, 1]."""
    if shift == "invert":
        return 1.0 - x
    img = x.view(-1, 1, 8, 8)
    if shift == "rotate":
        return torch.rot90(img, 1, (2, 3)).reshape(len(x), 64)
    texture = torch.rand(len(x), 1, 8, 8, generator=gen)
    texture = F.avg_pool2d(F.pad(texture, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    texture = (texture - texture.amin((2, 3), keepdim=True)) / (texture.amax((2, 3), keepdim=True) - texture.amin((2, 3), keepdim=True) + 1e-6)
    return (img - level * texture).abs().reshape(len(x), 64)


class DigitsShift(ImageSamples):
    Options = ShiftOptions
    doc = "two domains from the 8x8 digits: source x, y and a shifted target xt (labels yt kept for scoring only); test rows of xt are the shifted test rows of x"

    def fields(self, o: ShiftOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (64,), "y": (10,), "xt": (64,), "yt": (10,)}

    def load(self, o: ShiftOptions) -> Dataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
        y = F.one_hot(torch.tensor(bunch.target, dtype=torch.long), 10).float()
        gen = torch.Generator().manual_seed(o.split_seed)
        perm = torch.randperm(len(x), generator=gen)
        n_test = int(round(len(x) * o.test_fraction))
        test, train = perm[:n_test], perm[n_test:]
        half = len(train) // 2
        src, tgt = train[:half], train[half : 2 * half]
        return Dataset(
            {"x": x[src], "y": y[src], "xt": apply_shift(x[tgt], o.shift, gen, o.level), "yt": y[tgt]},
            {"x": x[test], "y": y[test], "xt": apply_shift(x[test], o.shift, gen, o.level), "yt": y[test]},
            # Which field of the target domain stands for which field of the source, and which
            # test fields are row-wise translations of each other.
            {"image_shape": (8, 8), "classes": 10, "target": {"x": "xt", "y": "yt"}, "paired": {"x": "xt", "xt": "x"}},
        )
