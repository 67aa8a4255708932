"""Sample pictures: a dataset kind says how its samples are drawn and how many a training-time
picture shows; the core's default draws points and names no dataset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from unigen.api.kinds import Dataset, DatasetKind
from unigen.runs.samples import layout, picture_count, sample_figure, save_samples


class Plain(DatasetKind):
    """A dataset kind that leaves the drawing to the core."""

    def fields(self, options):
        return {"x": (1,)}

    def load(self, options):
        return Dataset({"x": torch.zeros(4, 1)}, {"x": torch.zeros(4, 1)})


def stub(kind, info):
    """A model as pictures see it: its dataset kind and info, and nothing it generates from an encoder."""
    return SimpleNamespace(data_kind=kind, dataset=SimpleNamespace(info=info), sampled_variable=lambda: None, program=SimpleNamespace(graph=None))


def test_picture_count_is_the_dataset_kind_s(registry):
    assert picture_count(stub(registry.get("datasets", "ring2d"), {})) == 2500
    assert picture_count(stub(registry.get("datasets", "digits"), {})) == 64
    assert picture_count(stub(Plain(), {})) == 64


def test_layout_puts_eight_samples_a_row():
    assert layout(64) == (8, 8) and layout(5) == (1, 5) and layout(9) == (2, 8) and layout(0) == (1, 1)


def test_images_are_a_grid_and_mixtures_points_over_their_density(registry):
    digits = registry.get("datasets", "digits")
    fig = sample_figure(digits, torch.rand(16, 64), {"image_shape": (8, 8)}, 2, 8, "digits", row_labels=["a", "b"])
    (ax,) = fig.axes
    assert len(ax.images) == 1 and ax.images[0].get_array().shape == (2 * 9 + 1, 8 * 9 + 1)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    ring = registry.get("datasets", "ring2d")
    info = ring.load(ring.Options(n_train=10, n_test=10)).info
    fig = sample_figure(ring, torch.randn(100, 2), info, *layout(100), "ring")
    (ax,) = fig.axes
    assert len(ax.images) == 1 and len(ax.collections) == 1  # the density, then the points
    assert ax.get_xlim() == pytest.approx((-1.6, 1.6))  # the modes' span, not the points'


def test_the_default_draws_points_of_any_size(tmp_path):
    fig = sample_figure(Plain(), torch.randn(6, 1), {}, 2, 3, "plain", paths=True)
    (ax,) = fig.axes
    assert not ax.images and len(ax.lines) == 2  # one path a row, a single coordinate on a line
    save_samples(tmp_path / "s.png", torch.randn(10, 3), stub(Plain(), {}), "plain")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
