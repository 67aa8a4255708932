"""A small classifier trained on a dataset's training split, whose hidden layer is the feature
space of the image metrics (the role Inception-v3 plays for FID on natural images).

It is trained locally, from a fixed seed, and cached in the user's cache directory
(`$UNIGEN_CACHE_DIR`, else `$XDG_CACHE_HOME/unigen`, else `~/.cache/unigen`) under
`features/<dataset>-<hash>.pt`, where the hash covers the dataset's name and options and the
classifier's settings: another split or binarisation gets its own classifier. A missing or
unreadable file is retrained and written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

VERSION = 1  # bump when the classifier or its training changes: old cache files are then ignored


@dataclass(frozen=True)
class Settings:
    hidden: int = 128
    features: int = 64
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


class FeatureNet(nn.Module):
    def __init__(self, n_in: int, classes: int, s: Settings) -> None:
        super().__init__()
        f32 = torch.float32  # a fixed yardstick: float32 whatever the default dtype (forward casts its input)
        self.body = nn.Sequential(nn.Linear(n_in, s.hidden, dtype=f32), nn.ReLU(), nn.Linear(s.hidden, s.features, dtype=f32), nn.ReLU())
        self.head = nn.Linear(s.features, classes, dtype=f32)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (the last hidden layer) and class logits."""
        f = self.body(x.flatten(1).float())
        return f, self.head(f)


def cache_dir() -> Path:
    explicit = os.environ.get("UNIGEN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "unigen"


def labels_of(split: dict[str, torch.Tensor], classes: int) -> torch.Tensor | None:
    """Integer class labels of a split: its `label` field, or the argmax of a one-hot `y`."""
    label = split.get("label")
    if label is not None and label.dim() == 1 and not label.is_floating_point():
        return label.long()
    y = split.get("y")
    if y is not None and y.dim() == 2 and y.shape[1] == classes:
        return y.argmax(1)
    return None


def cache_key(dataset: str, options: Any, field: str, s: Settings) -> str:
    opts = options.model_dump(mode="json") if hasattr(options, "model_dump") else options
    blob = json.dumps({"dataset": dataset, "options": opts, "field": field, "settings": asdict(s), "version": VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_classifier(x: torch.Tensor, y: torch.Tensor, classes: int, s: Settings) -> FeatureNet:
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # metrics run under no_grad
        torch.manual_seed(s.seed)
        net = FeatureNet(x[0].numel(), classes, s).to(x.device)
        opt = torch.optim.Adam(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        gen = torch.Generator().manual_seed(s.seed)
        n = len(x)
        for _ in range(s.epochs):
            order = torch.randperm(n, generator=gen).to(x.device)
            for start in range(0, n, s.batch_size):
                idx = order[start : start + s.batch_size]
                loss = nn.functional.cross_entropy(net(x[idx])[1], y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    net.eval()
    net.requires_grad_(False)
    return net


_MEMO: dict[str, tuple[FeatureNet, float]] = {}


def feature_classifier(dataset: str, options: Any, field: str, train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], classes: int, s: Settings = Settings()) -> tuple[FeatureNet, float]:
    """The cached classifier for this dataset (trained when missing) and its test accuracy."""
    key = cache_key(dataset, options, field, s)
    x = train[field]
    if key in _MEMO:
        net, acc = _MEMO[key]
        return net.to(x.device), acc
    path = cache_dir() / "features" / f"{dataset}-{key}.pt"
    with torch.random.fork_rng(devices=[]):  # building a network draws initial weights: leave the caller's stream alone
        net = FeatureNet(x[0].numel(), classes, s)
    acc = math.nan
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["state"])
        acc = float(state["test_accuracy"])
        net = net.to(x.device).eval().requires_grad_(False)
    except FileNotFoundError:
        net = None  # type: ignore[assignment]
    except Exception as exc:  # a torn or foreign file: train afresh and replace it
        print(f"warning: the feature classifier cache `{path}` is unreadable ({type(exc).__name__}); retraining it.", file=sys.stderr)
        net = None  # type: ignore[assignment]
    if net is None:
        y, y_test = labels_of(train, classes), labels_of(test, classes)
        assert y is not None and y_test is not None, "applies() checks the labels"
        net = train_classifier(x, y.to(x.device), classes, s)
        with torch.no_grad():
            acc = float((net(test[field])[1].argmax(1) == y_test.to(x.device)).float().mean())
        _save(path, {"state": {k: v.cpu() for k, v in net.state_dict().items()}, "test_accuracy": acc, "key": key})
    _MEMO[key] = (net, acc)
    return net, acc


def _save(path: Path, state: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:  # a read-only cache costs a retraining next time, nothing else
        print(f"warning: cannot write the feature classifier cache `{path}`: {exc.strerror or exc}.", file=sys.stderr)
