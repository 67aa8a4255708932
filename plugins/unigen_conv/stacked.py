"""Stacked MNIST, the mode-collapse benchmark on real images (Metz et al. 2017; VEEGAN,
Srivastava et al. 2017; PacGAN, Lin et al. 2018), and `stacked_modes`, its mode count.

Dataset `stacked_mnist`: each row stacks three MNIST digits, each drawn uniformly at random
(with replacement, independently) from a pool of MNIST images, as the three channels of one
28x28 image, so the data have 1,000 modes: the digit triples (d1, d2, d3). The digits are read
by `source: mnist`'s loader from the same local files (`path`, `split`, `sha256` and `verify`
mean what they mean there; its decoded cache is shared): the training rows draw from the
split's training images, the test rows from its test images, so no test row holds a digit image
the training rows hold. The draws are fixed by `seed` (one generator per split, seeds 3s and
3s + 1), so a run is repeatable and the test rows do not depend on `n_train`.

Fields: `x`, pixels in [0, 1], of shape [3, 28, 28] (`image: false`: [2352], channel after
channel); `y` [30], the one-hot codes of d1, d2 and d3 side by side (each as `mnist` gives its
`y`). The rows also hold `label`, the mode index 100 d1 + 10 d2 + d3 (an integer, as `mnist`'s
`label` is). A row costs 9.4 kB of memory (float32).

Defaults follow PacGAN's code for this benchmark (fjxmlzn/PacGAN,
stacked_MNIST_experiments/VEEGAN_experiment/config.py): 128,000 training triples and 26,000
samples scored. That code draws its digits from MNIST's 70,000 training and test images
together; here the training rows draw from the training images only (`split: train+valid`
on mnist.pkl.gz: 60,000 of them).

Metric `stacked_modes` (offline): draws `samples` (N) generated images, reads each channel with
an MNIST digit classifier and counts the triples. The classifier is the image metrics' feature
classifier (`unigen_eval.features`: a small MLP trained from a fixed seed on MNIST's training
digits of the same files and split, cached under `$UNIGEN_CACHE_DIR`, shared with `quality` on
`source: mnist, flatten: true` with the same options). It reports:

- `modes`: the number of distinct triples among the N read triples, of 1,000.
- `kl_uniform`: KL(p || u) = sum_k p_k log(1000 p_k) = log 1000 - H(p), in nats, with p the
  histogram of the N read triples over the 1,000 modes and u uniform over them (VEEGAN's "KL";
  PacGAN's code computes the same). 0: every mode equally often; log(1000 / k) when the samples
  are spread evenly over k triples; log 1000 = 6.91 when they all read as one triple.
- `digit_classifier_accuracy`: the classifier's accuracy on MNIST's held-out test digits.
- `modes_floor`, `kl_uniform_floor`: the same statistics, through the same classifier, on N real
  Stacked MNIST images drawn from the training digits (seed 3s + 2): what real data score. They
  are not 1,000 and 0: N finite draws leave about 999 / (2N) nats of KL (0.019 for N = 26,000),
  MNIST's classes are not of equal size, and the classifier errs.
- `stacked_samples`: N.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from unigen_eval.features import feature_classifier
from unigen_eval.metrics import generate
from unigen_std.pictures import ImageSamples, draw_image_grid, image_grid

from unigen.api.contexts import ModelView
from unigen.api.kinds import Dataset, Metric, Options

from .mnist import MNIST, MNISTOptions, Split

MODES = 1000
PIXELS = 3 * 28 * 28
_DIGIT = MNISTOptions.model_fields  # the options that locate and check the MNIST files, as `mnist` documents them


class StackedMNISTOptions(Options):
    path: str | None = _DIGIT["path"]
    split: Split | None = _DIGIT["split"]
    sha256: str | None = _DIGIT["sha256"]
    verify: bool = _DIGIT["verify"]
    n_train: int = Field(128_000, gt=0, le=1_000_000, description="training rows (triples drawn from the split's training digits); 9.4 kB each. Default: PacGAN's 128,000")
    n_test: int = Field(10_000, gt=0, le=1_000_000, description="test rows (triples drawn from the split's test digits)")
    seed: int = Field(0, ge=0, lt=2**62, description="seed of the draws of the triples (training rows: generator seed 3s, test rows: 3s + 1, the metric's real floor: 3s + 2); not the training seed")
    image: bool = Field(True, description="x of shape [3, 28, 28]; false: flattened to [2352], channel after channel")


def digit_options(o: StackedMNISTOptions) -> MNISTOptions:
    """The `mnist` options that read the digits of `o`: the same files and split, flattened."""
    return MNISTOptions(path=o.path, split=o.split, sha256=o.sha256, verify=o.verify, flatten=True)


def draw_triples(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n rows of three images drawn uniformly with replacement from `images` (m, 784): the images
    (n, 3, 784) and their digits (n, 3)."""
    idx = torch.randint(len(images), (n, 3), generator=torch.Generator().manual_seed(seed)).to(images.device)
    return images[idx], labels.to(images.device)[idx]


def mode_index(digits: torch.Tensor) -> torch.Tensor:
    """The mode 100 d1 + 10 d2 + d3 of each row of digits (n, 3)."""
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def stacked_rows(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int, image: bool) -> dict[str, torch.Tensor]:
    x, digits = draw_triples(images, labels, n, seed)
    x = x.reshape(n, 3, 28, 28) if image else x.reshape(n, PIXELS)
    y = torch.nn.functional.one_hot(digits, 10).reshape(n, 30).float()
    return {"x": x.contiguous(), "y": y, "label": mode_index(digits)}


class StackedMNIST(ImageSamples):
    Options = StackedMNISTOptions
    doc = "Stacked MNIST: three random MNIST digits as the 3 channels of a 28x28 image, 1,000 modes (digit triples), from the local files `mnist` reads: x in [0,1], y the three digits one-hot [30], label the mode 100 d1 + 10 d2 + d3"

    def fields(self, o: StackedMNISTOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (3, 28, 28) if o.image else (PIXELS,), "y": (30,)}

    def load(self, o: StackedMNISTOptions) -> Dataset:
        digits = MNIST().load(digit_options(o))
        train = stacked_rows(digits.train["x"], digits.train["label"], o.n_train, 3 * o.seed, o.image)
        test = stacked_rows(digits.test["x"], digits.test["label"], o.n_test, 3 * o.seed + 1, o.image)
        info = {k: v for k, v in digits.info.items() if k in ("file", "format", "split", "sha256")}
        info.update(image_shape=(28, 28), channels=3, stacked_mnist={"digits": digit_options(o).model_dump(), "seed": o.seed, "modes": MODES})
        return Dataset(train, test, info)

    def draw_samples(self, ax: Any, samples: torch.Tensor, info: dict[str, Any], rows: int, cols: int, row_labels: list[str] | None = None, paths: bool = False) -> None:
        """The three channels as red, green and blue."""
        x = samples.detach().float().cpu().reshape(len(samples), 3, 28, 28)
        draw_image_grid(ax, x[:, 0], rows, cols, (28, 28), row_labels)  # the frame, its size and the row labels
        ax.images[-1].set_data(torch.stack([image_grid(x[:, c], rows, cols, (28, 28)) for c in range(3)], -1).numpy())


# --------------------------------------------------------------------------- the metric


def triple_stats(digits: torch.Tensor) -> tuple[float, float]:
    """(distinct triples, KL(histogram || uniform over the 1,000 modes) in nats) of digits (n, 3)."""
    counts = torch.bincount(mode_index(digits.long()).cpu(), minlength=MODES).double()
    p = counts / counts.sum()
    seen = p > 0
    return float(seen.sum()), float((p[seen] * (p[seen] * MODES).log()).sum())


def read_digits(net: torch.nn.Module, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """The classifier's digit for each channel of the images x (n, 3, 28, 28) or (n, 2352): (n, 3)."""
    channels = x.reshape(len(x) * 3, 784)
    out = [net(channels[i : i + chunk])[1].argmax(1) for i in range(0, len(channels), chunk)]
    return torch.cat(out).reshape(len(x), 3)


class StackedModesOptions(Options):
    samples: int = Field(26_000, gt=0, le=1_000_000, description="generated samples scored, and real ones for the floor (VEEGAN, PacGAN: 26,000; not `train.eval_samples`)")


class StackedModes(Metric):
    doc = "Stacked MNIST: modes (distinct digit triples of 1,000, each channel read by an MNIST classifier) and KL(triple histogram || uniform) in nats, of generated samples beside the same on real ones, and the classifier's test accuracy"
    Options = StackedModesOptions
    during_training = False

    def applies(self, model: ModelView) -> bool:
        return "stacked_mnist" in model.dataset.info and model.sampled_variable() is not None

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        o = self.options or StackedModesOptions()
        var = model.sampled_variable()
        stacked = model.dataset.info.get("stacked_mnist")
        if stacked is None or var is None:
            raise ValueError("stacked_modes scores models of `source: stacked_mnist` data that generate a variable; drop it from the spec's `metrics`")
        opts = MNISTOptions(**stacked["digits"])
        digits = MNIST().load(opts)
        train = {k: v.to(model.device) for k, v in digits.train.items()}
        test = {k: v.to(model.device) for k, v in digits.test.items()}
        net, acc = feature_classifier("mnist", opts, "x", train, test, 10)
        fake = generate(model, var, o.samples)
        if fake[0].numel() != PIXELS:
            raise ValueError(f"stacked_modes reads 3 x 28 x 28 images, but `{var}` has {fake[0].numel()} elements per sample")
        real, _ = draw_triples(train["x"], train["label"], o.samples, 3 * int(stacked["seed"]) + 2)
        modes, kl = triple_stats(read_digits(net, fake))
        modes_real, kl_real = triple_stats(read_digits(net, real))
        return {"modes": modes, "modes_floor": modes_real, "kl_uniform": kl, "kl_uniform_floor": kl_real,
                "digit_classifier_accuracy": acc, "stacked_samples": float(o.samples)}

