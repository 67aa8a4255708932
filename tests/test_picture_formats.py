"""`unigen sample -o FILE`: the file's suffix chooses the format (PNG, JPEG, SVG, PDF); any other
is refused (U002) before the model loads, and nothing is written."""

from __future__ import annotations

import pytest
from conftest import ROOT, main

import unigen


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("formats") / "run"
    unigen.train(ROOT / "specs" / "gan-ring.yaml", ["train.batch_size=64"], out=out, steps=2, device="cpu")
    return out


@pytest.mark.parametrize(("name", "magic"), [("x.jpg", b"\xff\xd8\xff"), ("x.JPEG", b"\xff\xd8\xff"), ("x.png", b"\x89PNG"), ("x.pdf", b"%PDF"), ("x.svg", b"<?xml")])
def test_the_suffix_chooses_the_format(run, tmp_path, capsys, name, magic):
    out = tmp_path / name
    assert main(["sample", str(run), "-o", str(out)]) == 0
    assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["x.gif", "x"])
def test_another_suffix_is_refused_and_nothing_is_written(run, tmp_path, capsys, name):
    out = tmp_path / name
    assert main(["sample", str(run), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "U002" in err and f"`-o {out}`" in err and ".png, .jpg" in err
    assert not out.exists()
