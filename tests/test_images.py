"""Image architectures (DCGAN generator/discriminator, conv encoder/decoder) and local image
data (MNIST IDX files, image folders), with their coded errors. Test files are built here."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from unigen_conv import nets

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.driver import train_run
from unigen.training.data import load_dataset

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


# ---------------------------------------------------------------- architectures


@pytest.mark.parametrize("shape", SHAPES, ids=["8x8", "28x28", "32x32"])
def test_dcgan_pair_sizes_itself_from_the_image_shape(shape):
    g = nets.UpArch().build([(16,)], shape, nets.UpOptions(base=8))
    d = nets.DownArch().build([shape], (1,), nets.DownOptions(base=8))
    x = g(torch.randn(5, 16))
    assert x.shape == (5, *shape) and 0 <= x.min() and x.max() <= 1  # sigmoid output for data in [0, 1]
    assert d(x).shape == (5, 1)
    ups = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    downs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    k = {8: 1, 28: 2, 32: 3}[shape[1]]
    assert len(ups) == len(downs) == k and all(m.stride == (2, 2) for m in ups + downs)
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in list(g.modules()) + list(d.modules()))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in d.modules())
    # features(): the last hidden layer, which the output layer reads
    f = d.features(x)
    assert f.shape[0] == 5 and torch.allclose(d.out(f), d(x))


def test_spectral_norm_option_normalises_every_layer():
    d = nets.DownArch().build([(1, 28, 28)], (1,), nets.DownOptions(base=8, spectral_norm=True))
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    d.train()
    for _ in range(30):  # power iterations converge: the top singular value of each weight is ~1
        d(torch.rand(4, 1, 28, 28))
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1) < 0.05


def test_virtual_batch_norm_makes_each_output_independent_of_its_batch():
    g = nets.UpArch().build([(16,)], (1, 8, 8), nets.UpOptions(base=8, norm="vbn"))
    z = torch.randn(10, 16)
    first = g(z)  # fixes the reference batch
    assert torch.allclose(g(z[:3]), first[:3], atol=1e-6) and torch.allclose(g(z[5:]), first[5:], atol=1e-6)
    plain = nets.UpArch().build([(16,)], (1, 8, 8), nets.UpOptions(base=8))
    assert not torch.allclose(plain(z[:3]), plain(z)[:3], atol=1e-4)  # batch norm: it does depend
    assert g.reference.ready and g.state_dict()["reference.rows"].shape == (64, 16)  # saved with the network


def test_minibatch_discrimination_sees_the_whole_batch():
    layer = nets.MinibatchDiscrimination(6, kernels=3, dims=2)
    x = torch.randn(4, 6)
    out = layer(x)
    m = (x @ layer.T).view(4, 3, 2)
    hand = torch.stack([sum(torch.exp(-(m[i] - m[j]).abs().sum(1)) for j in range(4) if j != i) for i in range(4)])
    assert out.shape == (4, 9) and torch.allclose(out[:, 6:], hand, atol=1e-6)
    d = nets.DownArch().build([(1, 8, 8)], (1,), nets.DownOptions(base=4, minibatch_features=5))
    a = d(torch.rand(6, 1, 8, 8))
    assert a.shape == (6, 1)


def test_conv_encoder_takes_extra_vector_parents():
    e = nets.EncoderArch().build([(1, 8, 8), (10,)], (16,), nets.EncoderOptions(base=8))
    assert e(torch.rand(3, 1, 8, 8), torch.rand(3, 10)).shape == (3, 16)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in e.modules())  # the encoder's default


def test_non_image_shape_is_reported(registry):
    with pytest.raises(UnigenError) as info:
        compile_file(ROOT / "specs" / "dcgan-digits.yaml", ["data.flatten=true", "variables.x.shape=[64]"], registry)
    assert any(d.code == "G012" and "image [C, H, W]" in d.message for d in info.value.diagnostics)


@pytest.mark.parametrize("name", ["dcgan-digits", "conv-vae-digits"])
def test_image_specs_train(tmp_path, registry, name):
    run = train_run(ROOT / "specs" / f"{name}.yaml", ["train.batch_size=16"], out=str(tmp_path / name), steps=3, device="cpu", registry=registry, quiet=True)
    assert (run / "samples" / "step_00000003.png").stat().st_size > 1000
    assert "[1, 8, 8]" in (run / "program.txt").read_text()


# ----------------------------------------------------------------------- MNIST


def idx_bytes(magic: int, array: torch.Tensor) -> bytes:
    return struct.pack(">i", magic) + struct.pack(">" + "i" * array.dim(), *array.shape) + bytes(array.flatten().tolist())


def write_mnist(folder: Path, n_train: int = 6, n_test: int = 3, gz: bool = True, image_magic: int = 2051, size: int = 28) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    made = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, size, size), generator=gen, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=gen, dtype=torch.uint8)
        for stem, data in ((f"{prefix}-images-idx3-ubyte", idx_bytes(image_magic, images)), (f"{prefix}-labels-idx1-ubyte", idx_bytes(2049, labels))):
            (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
        made[prefix] = images
        made[prefix + "_labels"] = labels
    return made


def mnist(registry, path: Path, *extra: str):
    program = compile_file(ROOT / "specs" / "dcgan-mnist.yaml", [f"data.path={path}", *extra], registry).program
    return load_dataset(program)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_mnist_reads_idx_files(tmp_path, registry, gz):
    made = write_mnist(tmp_path / "m", gz=gz)
    ds = mnist(registry, tmp_path / "m")
    assert ds.train["x"].shape == (6, 1, 28, 28) and ds.test["x"].shape == (3, 1, 28, 28)
    assert torch.allclose(ds.train["x"][:, 0], made["train"].float() / 255)
    assert torch.equal(ds.test["label"], made["t10k_labels"].long())
    assert torch.equal(ds.train["y"].argmax(1), made["train_labels"].long())


def codes(exc: pytest.ExceptionInfo) -> list[str]:
    return [d.code for d in exc.value.diagnostics]


def test_mnist_missing_folder_and_file(tmp_path, registry):
    with pytest.raises(UnigenError) as info:
        mnist(registry, tmp_path / "nowhere")
    assert codes(info) == ["D010"] and "does not exist" in str(info.value) and "data.path=" in str(info.value)
    write_mnist(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UnigenError) as info:
        mnist(registry, tmp_path / "m")
    assert codes(info) == ["D010"] and "t10k-labels-idx1-ubyte" in str(info.value)
    assert info.value.diagnostics[0].path == ("data", "path")


def test_mnist_bad_magic_wrong_sizes_and_truncation(tmp_path, registry):
    write_mnist(tmp_path / "magic", image_magic=2049)
    with pytest.raises(UnigenError) as info:
        mnist(registry, tmp_path / "magic")
    assert codes(info) == ["D011"] and "magic number 2049, expected 2051" in str(info.value)
    write_mnist(tmp_path / "size", size=20)
    with pytest.raises(UnigenError) as info:
        mnist(registry, tmp_path / "size")
    assert codes(info) == ["D011"] and "20 x 20" in str(info.value)
    write_mnist(tmp_path / "cut", gz=False)
    f = tmp_path / "cut" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(UnigenError) as info:
        mnist(registry, tmp_path / "cut")
    assert codes(info) == ["D011"] and "truncated" in str(info.value)
    write_mnist(tmp_path / "gz")
    (tmp_path / "gz" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(UnigenError) as info:
        mnist(registry, tmp_path / "gz")
    assert codes(info) == ["D011"]


def test_dcgan_mnist_trains_on_local_files(tmp_path, registry):
    write_mnist(tmp_path / "m", n_train=16, n_test=4)
    run = train_run(ROOT / "specs" / "dcgan-mnist.yaml", [f"data.path={tmp_path / 'm'}", "train.batch_size=8", "networks.generator.base=8", "networks.discriminator.base=8", "metrics=[]"], out=str(tmp_path / "run"), steps=2, device="cpu", registry=registry, quiet=True)
    assert (run / "summary.json").exists()


# ---------------------------------------------------------------- image folders


def folder_spec(write_spec, path: Path) -> Path:
    return write_spec(f"""
        unigen: 1
        name: folder
        data: {{source: image_folder, path: "{path}", size: [8, 8], channels: 1, test_fraction: 0.25}}
        variables:
          x: {{observed: true, shape: [1, 8, 8]}}
          z: {{prior: normal, shape: [4]}}
        networks:
          g: {{arch: dcgan_generator, base: 4}}
          d: {{arch: dcgan_discriminator, base: 4}}
        edges:
          - {{generative: z -> x, net: g, dist: deterministic}}
          - {{adversarial: x, net: d, objective: hinge}}
        phases:
          - {{name: d, update: [d], terms: [adversarial.d]}}
          - {{name: g, update: [g], terms: [adversarial.g]}}
    """)


def test_image_folder_reads_class_subfolders(tmp_path, registry, write_spec):
    from PIL import Image

    for c, value in (("a", 0), ("b", 255)):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (16, 16), color=value).save(tmp_path / "img" / c / f"{i}.png")
    program = compile_file(folder_spec(write_spec, tmp_path / "img"), [], registry).program
    ds = load_dataset(program)
    assert ds.train["x"].shape == (6, 1, 8, 8) and ds.test["x"].shape == (2, 1, 8, 8)
    x = torch.cat([ds.train["x"], ds.test["x"]])
    label = torch.cat([ds.train["label"], ds.test["label"]])
    assert torch.equal(x.flatten(1).mean(1), label.float())  # class a black, class b white
    assert ds.info["classes"] == 2


def test_image_folder_errors(tmp_path, registry, write_spec):
    spec = folder_spec(write_spec, tmp_path / "img")
    program = compile_file(spec, [], registry).program
    with pytest.raises(UnigenError) as info:
        load_dataset(program)
    assert codes(info) == ["D010"]
    (tmp_path / "img" / "a").mkdir(parents=True)
    with pytest.raises(UnigenError) as info:
        load_dataset(program)
    assert codes(info) == ["D012"] and "hold no images" in str(info.value)
    (tmp_path / "img" / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UnigenError) as info:
        load_dataset(program)
    assert codes(info) == ["D013"] and "broken.png" in str(info.value)
