"""Local image data: MNIST-format IDX files and folders of images, from a path in the spec.

Nothing is downloaded: the files must already be on disk. Every problem with them is a
coded error naming the file: D010 missing, D011 malformed IDX, D012 no images, D013 an image
that cannot be read (or PIL missing).

- `mnist`: the four IDX files of MNIST or Fashion-MNIST (`train-images-idx3-ubyte`,
  `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), each
  raw or gzipped (`.gz`), in `path`. x in [0, 1] of shape [1, 28, 28] (or [784]).
- `image_folder`: `path/<class>/<image>.png` (any format PIL reads), resized to `size`,
  classes in sorted order; a fixed fraction is held out as the test split.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch
from pydantic import Field
from unigen_std.pictures import ImageSamples

from unigen.api.kinds import Dataset, Options
from unigen.errors import UnigenError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def _error(code: str, message: str, hint: str, key: str = "path") -> UnigenError:
    return UnigenError.one(code, message, ("data", key), hint)


class MNISTOptions(Options):
    path: str = Field(description="folder holding the four IDX files (raw or .gz)")
    flatten: bool = Field(False, description="x of shape [784] instead of [1, 28, 28]")
    binarize: bool = Field(False, description="pixels > 0.5 become 1, others 0")
    limit: int | None = Field(None, gt=0, description="keep only the first `limit` training images (quick runs)")


def _open_idx(folder: Path, stem: str) -> tuple[Path, bytes]:
    for name in (stem, stem + ".gz"):
        f = folder / name
        if f.is_file():
            try:
                raw = f.read_bytes()
                return f, gzip.decompress(raw) if name.endswith(".gz") else raw
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
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
    return f, torch.frombuffer(bytearray(data[head:]), dtype=torch.uint8).view(*shape)


class MNIST(ImageSamples):
    Options = MNISTOptions
    doc = "MNIST or Fashion-MNIST from local IDX files (raw or gzipped): x in [0,1], y one-hot over 10 classes"

    def fields(self, o: MNISTOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (784,) if o.flatten else (1, 28, 28), "y": (10,)}

    def load(self, o: MNISTOptions) -> Dataset:
        folder = Path(o.path).expanduser()
        splits = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            fi, images = read_idx(folder, f"{prefix}-images-idx3-ubyte", IMAGES_MAGIC)
            fl, labels = read_idx(folder, f"{prefix}-labels-idx1-ubyte", LABELS_MAGIC)
            if tuple(images.shape[1:]) != (28, 28):
                raise _error("D011", f"`{fi}` holds images of {images.shape[1]} x {images.shape[2]} pixels; expected 28 x 28 (MNIST, Fashion-MNIST).", "use the `image_folder` dataset for images of other sizes.")
            if len(images) != len(labels):
                raise _error("D011", f"`{fi}` holds {len(images)} images but `{fl}` {len(labels)} labels; expected one label per image.", "use the image and label files of one release.")
            if len(labels) and int(labels.max()) > 9:
                raise _error("D011", f"`{fl}` holds the label {int(labels.max())}; expected labels 0 to 9.", "check that it is an MNIST-format label file.")
            if split == "train" and o.limit:
                images, labels = images[: o.limit], labels[: o.limit]
            x = images.float().div_(255.0).unsqueeze(1)
            if o.binarize:
                x = (x > 0.5).float()
            if o.flatten:
                x = x.flatten(1)
            labels = labels.long()
            splits[split] = {"x": x, "y": torch.nn.functional.one_hot(labels, 10).float(), "label": labels}
        return Dataset(splits["train"], splits["test"], {"image_shape": (28, 28), "classes": 10})


class FolderOptions(Options):
    path: str = Field(description="folder with one subfolder of images per class")
    size: tuple[int, int] = Field((32, 32), description="images are resized to [height, width]")
    channels: int = Field(3, description="1 (grey) or 3 (RGB)", ge=1, le=3)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    split_seed: int = 0


class ImageFolder(ImageSamples):
    Options = FolderOptions
    doc = "images from local class subfolders (PNG via PIL), resized: x in [0,1] of shape [C, H, W], label the class index"

    def fields(self, o: FolderOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (o.channels, *o.size)}

    def load(self, o: FolderOptions) -> Dataset:
        folder = Path(o.path).expanduser()
        if not folder.is_dir():
            raise _error("D010", f"the image folder `{folder}` does not exist; expected a folder with one subfolder of images per class.", "give it with `data.path=/path/to/images` (nothing is downloaded).")
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        files = [(f, i) for i, c in enumerate(classes) for f in sorted((folder / c).iterdir()) if f.suffix.lower() in SUFFIXES]
        if not files:
            found = f"its subfolders {', '.join(classes[:5])} hold no images" if classes else "it has no class subfolders"
            raise _error("D012", f"no images in `{folder}`: {found}; expected `{folder}/<class>/<image>.png`.", f"put the images in one subfolder per class (suffixes: {', '.join(SUFFIXES)}).")
        try:
            from PIL import Image
        except ImportError:
            raise _error("D013", "reading an image folder needs Pillow (PIL), which is not installed.", "install it: `pip install pillow`.", "source") from None
        mode = "L" if o.channels == 1 else "RGB"
        h, w = o.size
        xs = []
        for f, _ in files:
            try:
                with Image.open(f) as img:
                    pic = img.convert(mode).resize((w, h))
                    xs.append(torch.frombuffer(bytearray(pic.tobytes()), dtype=torch.uint8).view(h, w, -1).permute(2, 0, 1))
            except (OSError, ValueError) as exc:
                raise _error("D013", f"the image `{f}` cannot be read: {exc}.", "remove or replace the file.") from None
        x = torch.stack(xs).float().div_(255.0)
        labels = torch.tensor([i for _, i in files], dtype=torch.long)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(o.split_seed))
        n_test = int(round(len(x) * o.test_fraction)) if len(x) > 1 else 0
        n_test = min(max(n_test, 1 if o.test_fraction > 0 and len(x) > 1 else 0), len(x) - 1)
        test, train = perm[:n_test], perm[n_test:]
        if n_test == 0:
            test = train[:1]  # both splits need rows; a single image is its own test split
        return Dataset({"x": x[train], "label": labels[train]}, {"x": x[test], "label": labels[test]}, {"image_shape": (h, w), "classes": len(classes)})
