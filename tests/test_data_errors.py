"""Data that cannot be trained on is refused before training (D001), naming the dataset, the
split and the field: NaNs or infinities, an empty split, fields missing or of the wrong shape,
and a dataset plugin that fails. A test-only dataset plugin makes each case."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import pytest
import torch

from unigen import hookimpl
from unigen.api.kinds import Dataset, DatasetKind, Options
from unigen.api.registry import load_registry
from unigen.compiler.compiler import compile_file
from unigen.errors import UnigenError
from unigen.runs.driver import train_run
from unigen.training.trainer import Trainer


class BadOptions(Options):
    flaw: Literal["none", "nan", "inf", "nan_test", "empty_train", "empty_test", "no_test", "missing", "shape", "ragged", "raises"] = "none"


class Flawed(DatasetKind):
    """Points in the plane, with one chosen flaw."""

    Options = BadOptions

    def fields(self, o: BadOptions) -> dict[str, tuple[int, ...]]:
        return {"x": (2,)}

    def load(self, o: BadOptions) -> Dataset:
        gen = torch.Generator().manual_seed(0)
        train, test = torch.randn(200, 2, generator=gen), torch.randn(50, 2, generator=gen)
        if o.flaw == "raises":
            raise RuntimeError("the disk said no")
        if o.flaw == "nan":
            train[[3, 7, 7], [0, 0, 1]] = math.nan
        if o.flaw == "inf":
            train[5, 1] = math.inf
        if o.flaw == "nan_test":
            test[0, 0] = math.nan
        if o.flaw == "empty_train":
            train = train[:0]
        if o.flaw == "empty_test":
            test = test[:0]
        if o.flaw == "shape":
            train = torch.randn(200, 3, generator=gen)
        out = Dataset({"x": train}, {} if o.flaw == "no_test" else {"x": test})
        if o.flaw == "missing":
            out.train = {"points": train}
        if o.flaw == "ragged":
            out.train["extra"] = torch.zeros(199)
        return out


class FlawedPlugin:
    __name__ = "flawed_data_test"

    @hookimpl
    def unigen_register_datasets(self, register):
        register("flawed", Flawed())


@pytest.fixture(scope="module")
def reg():
    return load_registry(extra=[FlawedPlugin()])


SPEC = """\
unigen: 1
name: flawed-gan
data: {{source: flawed, flaw: {flaw}}}
variables:
  x: {{observed: true, shape: [2]}}
  z: {{prior: normal, shape: [2]}}
networks:
  generator: {{arch: mlp, hidden: [8]}}
  discriminator: {{arch: mlp, hidden: [8]}}
edges:
  - {{generative: z -> x, net: generator, dist: deterministic}}
  - {{adversarial: x, net: discriminator, objective: nonsaturating}}
phases:
  - {{name: discriminator, update: [discriminator], terms: [adversarial.d]}}
  - {{name: generator, update: [generator], terms: [adversarial.g]}}
train: {{steps: 2, batch_size: 16, device: cpu, eval_samples: 10}}
"""


def refusal(tmp_path: Path, reg, flaw: str) -> str:
    path = tmp_path / f"{flaw}.yaml"
    path.write_text(SPEC.format(flaw=flaw))
    program = compile_file(path, registry=reg).program  # the spec itself is fine
    with pytest.raises(UnigenError) as info:
        Trainer(program)
    assert {d.code for d in info.value.diagnostics} == {"D001"}, str(info.value)
    assert all(d.path == ("data",) for d in info.value.diagnostics)
    return str(info.value)


def test_data_the_flawless_dataset_trains(tmp_path: Path, reg):
    path = tmp_path / "ok.yaml"
    path.write_text(SPEC.format(flaw="none"))
    Trainer(compile_file(path, registry=reg).program).step()


def test_data_nan_is_d001_naming_dataset_split_field_and_rows(tmp_path: Path, reg):
    text = refusal(tmp_path, reg, "nan")
    assert "D001 dataset `flawed`: field `x` of its train split holds 3 NaN values (in 2 of 200 rows, the first row 3); expected finite numbers." in text
    assert "Hint: clean the data" in text


def test_data_infinity_and_nan_in_the_test_split_are_d001(tmp_path: Path, reg):
    assert "field `x` of its train split holds 1 infinite value (in 1 of 200 rows, the first row 5)" in refusal(tmp_path, reg, "inf")
    assert "field `x` of its test split holds 1 NaN value (in 1 of 50 rows, the first row 0)" in refusal(tmp_path, reg, "nan_test")


@pytest.mark.parametrize(("flaw", "message"), [
    ("empty_train", "dataset `flawed`: its train split is empty (field `x` has 0 rows)."),
    ("empty_test", "dataset `flawed`: its test split is empty (field `x` has 0 rows)."),
    ("no_test", "dataset `flawed`: its test split is empty (no fields)."),
])
def test_data_empty_split_is_d001(tmp_path: Path, reg, flaw: str, message: str):
    text = refusal(tmp_path, reg, flaw)
    assert message in text and "each split needs at least one row" in text


def test_data_missing_field_wrong_shape_and_ragged_fields_are_d001(tmp_path: Path, reg):
    assert "its train split has no field `x`, which the spec reads (it has: `points`)" in refusal(tmp_path, reg, "missing")
    assert "field `x` of its train split has rows of shape [3], but the dataset declares [2]" in refusal(tmp_path, reg, "shape")
    assert "the fields of its train split have different numbers of rows (`x` 200, `extra` 199)" in refusal(tmp_path, reg, "ragged")


def test_data_plugin_failure_is_d001_naming_the_dataset(tmp_path: Path, reg):
    text = refusal(tmp_path, reg, "raises")
    assert "D001 dataset `flawed` cannot be loaded: RuntimeError: the disk said no." in text


def test_data_error_stops_training_before_any_file_is_written(tmp_path: Path, reg):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(flaw="nan"))
    with pytest.raises(UnigenError) as info:
        train_run(path, out=str(tmp_path / "run"), registry=reg, quiet=True)
    assert info.value.diagnostics[0].code == "D001" and info.value.exit_code == 2
    assert not (tmp_path / "run").exists()
