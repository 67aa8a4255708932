"""Stacked MNIST (`source: stacked_mnist`) and its mode count (`stacked_modes`), on small MNIST
files generated here in the formats `source: mnist` reads: no test needs the real MNIST.

The generated digits are easy to read: digit d is a bright bar on rows 4 + 2d and 5 + 2d over
faint noise (the noise makes every image distinct), so the feature classifier reads them all."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from test_mnist import idx_bytes, pkl_gz, trust, wheel
from unigen_conv.stacked import StackedMNIST, StackedMNISTOptions, StackedModes, StackedModesOptions, mode_index, triple_stats

from unigen.api.kinds import Dataset
from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.evaluate import configured_metrics

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch) -> Path:
    """The data folder of every test: an empty folder of its own (never the user's cache)."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("UNIGEN_DATA_DIR", str(folder))
    return folder


def bar_digits(labels: np.ndarray, seed: int) -> np.ndarray:
    """uint8 images (n, 28, 28): noise below 40, and digit d's bar (255) on rows 4 + 2d, 5 + 2d."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (len(labels), 28, 28))
    for i, d in enumerate(labels):
        images[i, 4 + 2 * d : 6 + 2 * d] = 255
    return images.astype(np.uint8)


def write_mnist(folder: Path, n_train: int = 200, n_test: int = 60) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four IDX files (images gzipped) of bar digits, every class in both splits."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        labels = np.arange(n) % 10
        np.random.default_rng(seed).shuffle(labels)
        images = bar_digits(labels, seed)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(2051, images)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(2049, labels))
        made[prefix] = (images, labels)
    return made


def load(**options) -> Dataset:
    return StackedMNIST().load(StackedMNISTOptions(**options))


def check_rows(rows: dict[str, torch.Tensor], pool: tuple[np.ndarray, np.ndarray]) -> None:
    """Every channel of every row is an image of `pool`, and `y` and `label` name its digits."""
    images = torch.from_numpy(pool[0]).float().reshape(len(pool[0]), 784) / 255
    labels = torch.from_numpy(pool[1]).long()
    x = rows["x"].reshape(len(rows["x"]), 3, 784)
    found = torch.cdist(x.reshape(-1, 784), images).argmin(1)
    assert torch.equal(x.reshape(-1, 784), images[found])  # each channel is exactly one pool image
    digits = labels[found].reshape(-1, 3)
    assert torch.equal(rows["y"], torch.nn.functional.one_hot(digits, 10).reshape(-1, 30).float())
    assert torch.equal(rows["label"], digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2])


# ------------------------------------------------------------------ the dataset


def test_stacked_mnist_rows_stack_three_digits_and_name_their_mode(tmp_path):
    made = write_mnist(tmp_path / "m")
    ds = load(path=str(tmp_path / "m"), n_train=300, n_test=50)
    assert ds.train["x"].shape == (300, 3, 28, 28) and ds.test["x"].shape == (50, 3, 28, 28)
    assert ds.train["y"].shape == (300, 30) and ds.train["label"].dtype == torch.int64
    assert StackedMNIST().fields(StackedMNISTOptions()) == {"x": (3, 28, 28), "y": (30,)}
    assert float(ds.train["x"].min()) >= 0 and float(ds.train["x"].max()) <= 1
    check_rows(ds.train, made["train"])
    check_rows(ds.test, made["t10k"])  # the test rows draw from the test digits only
    assert len(ds.train["label"].unique()) > 150  # 300 random triples of 1,000: few repeat
    assert ds.info["stacked_mnist"]["modes"] == 1000 and ds.info["image_shape"] == (28, 28) and ds.info["format"] == "idx"
    assert "modes" not in ds.info and "classes" not in ds.info  # neither the 2-D mode metric nor `quality` takes it for theirs


def test_stacked_mnist_flattened_rows_and_the_pickle(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = []
    for n in (40, 10, 20):
        labels = rng.integers(0, 10, n)
        arrays.append(((bar_digits(labels, n).reshape(n, 784) / 256).astype(np.float32), labels.astype(np.int64)))
    raw = pkl_gz(tuple(arrays))
    trust(monkeypatch, raw)
    path = str(wheel(tmp_path / "w", raw))
    image = load(path=path, n_train=30, n_test=12)
    flat = load(path=path, n_train=30, n_test=12, image=False)
    assert flat.train["x"].shape == (30, 2352) and StackedMNIST().fields(StackedMNISTOptions(image=False))["x"] == (2352,)
    assert torch.equal(flat.train["x"], image.train["x"].reshape(30, 2352)) and torch.equal(flat.test["label"], image.test["label"])
    pool = torch.from_numpy(arrays[0][0])
    x = image.train["x"].reshape(30, 3, 784)
    assert torch.equal(x, pool[torch.cdist(x.reshape(-1, 784), pool).argmin(1)].reshape(30, 3, 784))  # mnist.pkl.gz's k/256 levels kept
    valid = load(path=path, n_train=30, n_test=12, split="validation")  # the test rows from the validation images
    assert torch.cdist(valid.test["x"].reshape(-1, 784), torch.from_numpy(arrays[1][0])).min(1).values.max() == 0


def test_stacked_mnist_is_fixed_by_its_seed(tmp_path):
    write_mnist(tmp_path / "m")
    path = str(tmp_path / "m")
    a, b = load(path=path, n_train=100, n_test=40), load(path=path, n_train=100, n_test=40)
    assert all(torch.equal(a.train[k], b.train[k]) and torch.equal(a.test[k], b.test[k]) for k in ("x", "y", "label"))
    other = load(path=path, n_train=100, n_test=40, seed=1)
    assert not torch.equal(other.train["label"], a.train["label"]) and not torch.equal(other.test["label"], a.test["label"])
    more = load(path=path, n_train=150, n_test=40)
    assert torch.equal(more.test["x"], a.test["x"])  # the test rows do not depend on n_train


def test_stacked_mnist_bad_options_and_missing_files_are_coded(write_spec, registry, data_folder):
    spec = (ROOT / "specs" / "dcgan-stacked-mnist.yaml")
    for override, words in (("data.n_train=0", "n_train"), ("data.image=maybe", "image"), ("data.split=everything", "split"), ("data.rows=5", "rows")):
        with pytest.raises(UnigenError) as info:
            compile_file(spec, [override], registry)
        assert [d.code for d in info.value.diagnostics] == ["G016"] and f"data.{words}" in str(info.value), override
    with pytest.raises(UnigenError) as info:
        compile_file(spec, ["data.image=false"], registry)  # the spec's x [3, 28, 28] against the flattened field
    assert [d.code for d in info.value.diagnostics] == ["G012"] and "[2352]" in str(info.value)
    with pytest.raises(UnigenError) as info:
        load()
    assert [d.code for d in info.value.diagnostics] == ["D010"] and f"the data folder `{data_folder}` holds no MNIST data" in str(info.value)
    with pytest.raises(UnigenError) as info:
        configured_metrics(registry, ["stacked_modes"], {"stacked_modes": {"samples": 0}})
    assert [d.code for d in info.value.diagnostics] == ["E003"] and "`samples`" in str(info.value)


# ------------------------------------------------------------------ the metric


def test_triple_stats_counts_modes_and_kl_to_uniform():
    for k in (1, 7, 250, 1000):
        modes = torch.arange(k).repeat(4)  # k distinct triples, each 4 times
        digits = torch.stack([modes // 100, modes // 10 % 10, modes % 10], 1)
        count, kl = triple_stats(digits)
        assert count == k and kl == pytest.approx(math.log(1000 / k), abs=1e-9)
    count, kl = triple_stats(torch.tensor([[1, 2, 3]] * 3 + [[3, 2, 1]]))  # 3/4 and 1/4
    assert count == 2 and kl == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))
    assert torch.equal(mode_index(torch.tensor([[9, 0, 4]])), torch.tensor([904]))


class StubModel:
    """What the metric reads of a model: its dataset, device, variable and samples (here: fixed images)."""

    def __init__(self, dataset: Dataset, images: torch.Tensor) -> None:
        self.dataset, self.images, self.device, self.drawn = dataset, images, torch.device("cpu"), 0

    def sampled_variable(self) -> str:
        return "x"

    def generate(self, n: int, var: str, batch=None) -> torch.Tensor:
        out = self.images[self.drawn : self.drawn + n]
        self.drawn += n
        return out


def test_stacked_modes_of_real_images_of_k_triples(tmp_path):
    write_mnist(tmp_path / "m")
    ds = load(path=str(tmp_path / "m"), n_train=400, n_test=20)
    chosen = torch.unique(ds.train["label"])[:7]  # 7 distinct triples, each row of them 10 times
    rows = torch.stack([torch.nonzero(ds.train["label"] == m)[0, 0] for m in chosen]).repeat(10)
    metric = StackedModes()
    metric.options = StackedModesOptions(samples=70)
    model = StubModel(ds, ds.train["x"][rows])
    assert metric.applies(model)
    m = metric.compute(model)
    assert m["digit_classifier_accuracy"] == 1.0 and m["stacked_samples"] == 70
    assert m["modes"] == 7 and m["kl_uniform"] == pytest.approx(math.log(1000 / 7), abs=1e-9)
    # The floor: 70 real images drawn from the training digits with seed 3s + 2, read as they are.
    digits = torch.from_numpy(write_mnist(tmp_path / "again")["train"][1]).long()
    truth = digits[torch.randint(len(digits), (70, 3), generator=torch.Generator().manual_seed(2))]
    assert (m["modes_floor"], m["kl_uniform_floor"]) == pytest.approx(triple_stats(truth))
    assert m["modes_floor"] > 60  # 70 random triples of 1,000 rarely repeat


def test_stacked_modes_of_one_triple_and_of_flattened_samples(tmp_path):
    write_mnist(tmp_path / "m")
    ds = load(path=str(tmp_path / "m"), n_train=50, n_test=20, image=False)
    metric = StackedModes()
    metric.options = StackedModesOptions(samples=30)
    m = metric.compute(StubModel(ds, ds.train["x"][[3] * 30]))
    assert m["modes"] == 1 and m["kl_uniform"] == pytest.approx(math.log(1000))


def test_stacked_modes_applies_to_stacked_mnist_only(tmp_path):
    other = Dataset({"x": torch.zeros(4, 2)}, {"x": torch.zeros(4, 2)}, {"modes": torch.zeros(8, 2), "sigma": 0.1})
    model = StubModel(other, torch.zeros(4, 2))
    assert not StackedModes().applies(model)
    with pytest.raises(ValueError, match="`source: stacked_mnist`"):
        StackedModes().compute(model)  # a spec that names it anyway: a recorded failure that says why
    write_mnist(tmp_path / "m")
    ds = load(path=str(tmp_path / "m"), n_train=10, n_test=10)
    metric = StackedModes()
    metric.options = StackedModesOptions(samples=5)
    with pytest.raises(ValueError, match="3 x 28 x 28 images"):
        metric.compute(StubModel(ds, torch.zeros(5, 784)))


# ------------------------------------------------------------------ the shipped spec


def test_dcgan_stacked_mnist_trains_and_evaluates_from_the_data_folder(tmp_path, data_folder, cli):
    write_mnist(data_folder)
    out = tmp_path / "run"
    code, _, err = cli("compile-and-train", ROOT / "specs" / "dcgan-stacked-mnist.yaml", "--steps", "2", "--out", out, "--quiet", "--device", "cpu",
                       "train.batch_size=8", "data.n_train=64", "data.n_test=16", "networks.generator.base=8", "networks.discriminator.base=8", "metrics=[]")
    assert code == 0, err
    code, text, err = cli("evaluate", out, "--metric", "stacked_modes", "--option", "stacked_modes.samples=300", "--json")
    assert code == 0, err
    m = json.loads(text)["metrics"]
    assert m["stacked_samples"] == 300 and 1 <= m["modes"] <= 300 and 0 <= m["kl_uniform"] <= math.log(1000) + 1e-9
    assert m["digit_classifier_accuracy"] == 1.0 and m["modes_floor"] > 200  # 300 real triples of 1,000


def test_stacked_mnist_draws_its_channels_as_colours():
    import matplotlib.pyplot as plt

    x = torch.zeros(4, 3, 28, 28)
    x[:, 0, 2:5], x[:, 2, :, 7:9] = 1.0, 1.0  # a red bar across, a blue one down
    fig, ax = plt.subplots()
    try:
        StackedMNIST().draw_samples(ax, x.reshape(4, 2352), {"image_shape": (28, 28)}, 2, 2)
        pixels = np.asarray(ax.images[-1].get_array())
    finally:
        plt.close(fig)
    assert pixels.shape == (2 * 29 + 1, 2 * 29 + 1, 3)
    assert pixels[1 + 3, 1 + 20].tolist() == [1.0, 0.0, 0.0] and pixels[1 + 20, 1 + 8].tolist() == [0.0, 0.0, 1.0]
    assert pixels[1 + 3, 1 + 8].tolist() == [1.0, 0.0, 1.0] and pixels[0, 0].tolist() == [0.5, 0.5, 0.5]  # both; the grey frame
