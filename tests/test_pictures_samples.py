"""Pictures of samples: colour image grids, reconstructions for models with an encoder, 2-D
scatters in one style during training and from `unigen sample`, traversals whose columns
carry their values."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from matplotlib.collections import LineCollection
from unigen_std.pictures import image_grid

from unigen.runs import samples as samples_mod
from unigen.runs.driver import train_run
from unigen.runs.evaluate import open_run
from unigen.runs.samples import encoded_latents, reconstruct, sample_figure, save_reconstructions
from unigen.tools import plots

PNG = b"\x89PNG\r\n\x1a\n"
RING = ["data.n_train=2000", "data.n_test=500", "train.eval_samples=300"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(one_thread, tmp_path_factory, registry) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pictures")
    return {
        "vae": train_run(ROOT / "specs" / "vae-digits.yaml", ["train.log_every=2"], out=str(root / "vae"), steps=4, device="cpu", registry=registry, quiet=True),
        "gan": train_run(ROOT / "specs" / "gan-ring.yaml", [*RING, "train.log_every=2"], out=str(root / "gan"), steps=2, device="cpu", registry=registry, quiet=True),
        "infogan": train_run(ROOT / "specs" / "infogan-ring.yaml", [*RING, "train.log_every=2"], out=str(root / "infogan"), steps=2, device="cpu", registry=registry, quiet=True),
    }


# ------------------------------------------------------------------------- colour


def test_image_grid_draws_three_channels_as_rgb_and_one_in_grey():
    x = torch.zeros(2, 3, 4, 4)
    x[:, 0], x[:, 2] = 1.0, 0.25  # red, with a little blue
    grid = image_grid(x, 1, 2, (4, 4))
    assert grid.shape == (6, 11, 3)
    cell = grid[1:5, 1:5]
    assert torch.all(cell[..., 0] == 1) and torch.all(cell[..., 1] == 0) and torch.all(cell[..., 2] == 0.25)
    assert torch.all(grid[0, 0] == 0.5)  # the grey border, in all three channels
    flat = image_grid(torch.rand(2, 16), 1, 2, (4, 4))  # one channel: a grey image
    assert flat.shape == (6, 11)


def test_a_colour_dataset_is_drawn_in_colour_and_a_grey_one_in_grey(registry):
    folder = registry.get("datasets", "image_folder")
    rgb = torch.rand(6, 3, 4, 4)
    fig = sample_figure(folder, rgb, {"image_shape": (4, 4)}, 2, 3, "colour")
    pixels = np.asarray(fig.axes[0].images[0].get_array())
    assert pixels.shape == (11, 16, 3)
    assert not np.allclose(pixels[..., 0], pixels[..., 1]) and not np.allclose(pixels[..., 1], pixels[..., 2])
    assert np.allclose(pixels[1:5, 1:5], rgb[0].permute(1, 2, 0).numpy())  # the first image, channel by channel
    digits = registry.get("datasets", "digits")
    fig = sample_figure(digits, torch.rand(6, 64), {"image_shape": (8, 8)}, 2, 3, "grey")
    assert np.asarray(fig.axes[0].images[0].get_array()).ndim == 2


# --------------------------------------------------------------- reconstructions


def test_training_writes_reconstructions_beside_the_samples_of_a_model_with_an_encoder(runs):
    recon = runs["vae"] / "samples" / "recon_step_00000004.png"
    assert png_size(recon) == (480, 460)  # four pairs of rows of eight 8x8 digits, half an inch each
    assert (runs["vae"] / "samples" / "step_00000004.png").is_file()
    assert not list((runs["gan"] / "samples").glob("recon_*"))  # a GAN infers nothing from x
    assert list((runs["infogan"] / "samples").glob("recon_*"))  # InfoGAN infers its code c from x


def test_sample_reconstruct_writes_the_picture_and_refuses_a_model_without_encoder(cli, runs, tmp_path):
    out = tmp_path / "recon.png"
    code, stdout, err = cli("sample", runs["vae"], "--reconstruct", "-o", out)
    assert code == 0, err
    assert str(out) in stdout and png_size(out) == (480, 460)
    code, _, err = cli("sample", runs["gan"], "--reconstruct", "-o", tmp_path / "no.png")
    assert code == 2 and "E004" in err and "no encoder" in err and not (tmp_path / "no.png").exists()
    code, _, err = cli("sample", runs["vae"], "--reconstruct", "--traverse", "z", "-o", tmp_path / "two.png")
    assert code == 2 and "E004" in err


def test_reconstruction_is_the_decoder_at_the_encoder_s_code_of_the_first_test_rows(runs, registry):
    opened = open_run(runs["vae"], registry=registry)
    model = opened.model
    assert encoded_latents(opened.program.graph, "x") == ["z"]
    data, recon, latents = reconstruct(model, 5)
    assert latents == ["z"] and torch.equal(data, model.dataset.test["x"][:5])
    with torch.no_grad():
        mean = model.nets["encoder"](data)[:, :8]  # q(z | x) = N(mean, var): the encoder's first half
        expected = torch.sigmoid(model.nets["decoder"](mean))  # the Bernoulli decoder's mean
    assert torch.allclose(recon, expected, atol=1e-5)
    gan = open_run(runs["gan"], registry=registry)
    assert encoded_latents(gan.program.graph, "x") == [] and reconstruct(gan.model, 5) is None


def test_reconstructions_in_training_leave_the_random_stream_and_the_mode_alone(runs, registry, tmp_path):
    model = open_run(runs["vae"], registry=registry).model
    model.train()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    save_reconstructions(tmp_path / "r.png", model, "vae")
    assert torch.equal(torch.get_rng_state(), before) and model.training
    assert png_size(tmp_path / "r.png") == (480, 460)


def test_points_are_joined_to_their_reconstructions(runs, registry, monkeypatch, tmp_path):
    figures = capture(monkeypatch)
    code = plots.sample_run(runs["infogan"], 40, tmp_path / "r.png", reconstruct=True, registry=registry)
    assert code == tmp_path / "r.png"
    (ax,) = figures[-1].axes
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines.get_segments()) == 40
    assert "`z` drawn from the prior" in ax.get_title().replace("\n", " ")  # z is not inferred, c is


# --------------------------------------------------------------------- one style


def capture(monkeypatch) -> list:
    """The figures `unigen sample` and the training pictures draw, kept open for a look."""
    figures: list = []

    def keep(fig, out):
        figures.append(fig)
        return Path(out)

    monkeypatch.setattr(plots, "_save", keep)
    monkeypatch.setattr(samples_mod, "_write_png", lambda path, fig: figures.append(fig))
    return figures


def _look(fig) -> dict:
    (ax,) = fig.axes
    return {
        "size": tuple(fig.get_size_inches()),
        "labels": (ax.get_xlabel(), ax.get_ylabel()),
        "limits": (ax.get_xlim(), ax.get_ylim()),
        "legend": [t.get_text() for t in ax.get_legend().get_texts()],
        "images": len(ax.images),
        "points": sum(len(c.get_offsets()) for c in ax.collections),
        "ticks": len(ax.get_xticks()) > 2 and len(ax.get_yticks()) > 2,
    }


def test_a_scatter_looks_the_same_in_training_and_from_unigen_sample(runs, registry, monkeypatch, tmp_path):
    figures = capture(monkeypatch)
    model = open_run(runs["gan"], registry=registry).model
    samples_mod.save_samples(tmp_path / "s.png", model.generate(2500, "x"), model, "gan-ring  step_00000002")
    plots.sample_run(runs["gan"], None, tmp_path / "u.png", registry=registry)  # -n left out: as many as in training
    training, command = (_look(f) for f in figures)
    assert training == command
    assert training["points"] == 2500 and training["images"] == 1  # the true density under the points
    assert training["labels"] == ("coordinate 1", "coordinate 2") and training["ticks"]
    assert training["legend"] == ["true log-density", "true modes (3 sigma)", "samples"]
    assert figures[0].axes[0].get_title().startswith("gan-ring  step 2  (2500 samples")


# --------------------------------------------------------------------- traversals


def test_traversal_columns_carry_their_values(runs, registry, monkeypatch, tmp_path):
    figures = capture(monkeypatch)
    plots.sample_run(runs["vae"], 32, tmp_path / "t.png", traverse="z:1", registry=registry)
    (ax,) = figures[-1].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-2.5", "-1.79", "-1.07", "-0.357", "0.357", "1.07", "1.79", "2.5"]
    assert ax.get_xlabel() == "the value of `z[1]`"
    w = 8  # each tick under the middle of its column of 8x8 digits
    assert list(ax.get_xticks()) == pytest.approx([1 + c * (w + 1) + (w - 1) / 2 for c in range(8)])
    plots.sample_run(runs["vae"], 32, tmp_path / "i.png", interpolate="z", registry=registry)
    labels = [t.get_text() for t in figures[-1].axes[0].get_xticklabels()]
    assert labels[0] == "0" and labels[-1] == "1" and len(labels) == 8


def test_traversals_of_points_name_each_value(runs, registry, monkeypatch, tmp_path):
    figures = capture(monkeypatch)
    plots.sample_run(runs["infogan"], 64, tmp_path / "c.png", traverse="c", registry=registry)
    legend = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
    assert [f"c={k}" for k in range(8)] == [t for t in legend if t.startswith("c=")]  # a colour a value of the code
    plots.sample_run(runs["infogan"], 64, tmp_path / "z.png", traverse="z:0", registry=registry)
    (note,) = figures[-1].texts
    values = note.get_text().replace("\n", " ").split(": ", 1)[1].split(", ")
    assert values[0] == "-2.5" and values[-1] == "2.5" and len(values) == 8
    assert math.isclose(float(values[3]), -2.5 + 3 * 5 / 7, abs_tol=1e-2)
