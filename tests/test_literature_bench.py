"""benchmarks/literature.py: the MNIST rows beside the literature, on generated IDX files and a
few steps: the table with its numbers, the raw values beside it, `--check` naming a value that
moved (B002), and a smoke run refused where it would overwrite the real table."""

from __future__ import annotations

import json
import re

from test_bench_check import doctor, script
from test_mnist import write_idx

FAST = ["--override", "rbm-mnist:samplers.m.sample_steps=10", "--override", "rbm-mnist:metrics=[]"]  # seconds each: the pictures' 1000 Gibbs steps, exact_nll at the end of training as well as after it


def table_rows(text: str) -> dict[str, list[str]]:
    return {cells[0].strip("`"): cells for line in text.splitlines() if line.startswith("| `") for cells in [[c.strip() for c in line.strip("|").split(" | ")]]}


def test_literature_smoke_run_writes_rows_and_check_names_the_moved_value(tmp_path, monkeypatch, capsys):
    literature = script("literature")
    data = tmp_path / "mnist"
    write_idx(data, n_train=64, n_test=16)
    monkeypatch.setenv("UNIGEN_DATA_DIR", str(tmp_path / "elsewhere"))  # --data-dir must set it (restored after the test)
    out = tmp_path / "lit" / "literature.md"
    args = ["--only", "vae-mnist", "rbm-mnist", "--steps", "3", *FAST, "--out", str(out), "--data-dir", str(data)]
    assert literature.main(args) == 0

    text = out.read_text()
    rows = table_rows(text)
    assert list(rows) == ["rbm-mnist", "vae-mnist"]  # the script's order, not the command's
    assert re.fullmatch(r"\d+\.\d\d nats", rows["rbm-mnist"][2]) and re.fullmatch(r"\d+\.\d\d nats \(IWAE-100 \d+\.\d\d on the first 500\)", rows["vae-mnist"][2])
    assert rows["rbm-mnist"][3].startswith("149.05 (uncentred)") and re.fullmatch(r"\d+ s", rows["vae-mnist"][5])
    assert "Smoke runs" in text and "`rbm-mnist` 3 steps, `samplers.m.sample_steps=10`" in text and "python benchmarks/literature.py` regenerates" in text.replace("\n", " ")

    store = out.with_suffix(".json")
    record = json.loads(store.read_text())
    assert record["script"] == "benchmarks/literature.py"
    assert set(record["values"]) == {"rbm-mnist, seed 0: test_nll_exact", "vae-mnist, seed 0: test_nelbo", "vae-mnist, seed 0: iwae_nll"}
    nll = record["values"]["rbm-mnist, seed 0: test_nll_exact"]
    assert f"{nll:.2f} nats" == rows["rbm-mnist"][2] and nll > 0
    assert record["options"]["runs"]["rbm-mnist"] == {"seeds": [0], "steps": 3, "overrides": ["samplers.m.sample_steps=10", "metrics=[]"], "threads": 1}
    assert record["options"]["runs"]["vae-mnist"]["overrides"] == []  # the NAME: override is rbm-mnist's alone
    assert record["made"]["vae-mnist"]["cpu_seconds"][0] > 0

    name = "vae-mnist, seed 0: test_nelbo"
    doctor(store, name, 0.5)  # beyond ± 0.02 nats
    capsys.readouterr()
    assert literature.main(["--check", "--out", str(out), "--data-dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert f"B002 1 of 3 values of {store} moved beyond their tolerance" in err and f"| {name} |" in err and "| ± 0.02 |" in err
    assert "iwae_nll |" not in err and "test_nll_exact |" not in err  # the others reproduced
    assert out.read_text() == text  # --check writes nothing


def test_literature_smoke_run_without_out_is_refused(tmp_path, monkeypatch, capsys):
    literature = script("literature")
    monkeypatch.setenv("UNIGEN_DATA_DIR", str(tmp_path))  # what --data-dir sets, restored after the test
    real = literature.DEFAULT_OUT
    before = real.read_bytes() if real.exists() else None
    store_before = real.with_suffix(".json").read_bytes() if real.with_suffix(".json").exists() else None
    for args in (["--only", "vae-mnist", "--steps", "3"], ["--override", "train.batch_size=16", "--out", str(real)]):
        assert literature.main([*args, "--data-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "S005" in err and "benchmarks/results/literature.md" in err and "--out" in err
    assert (real.read_bytes() if real.exists() else None) == before
    assert (real.with_suffix(".json").read_bytes() if real.with_suffix(".json").exists() else None) == store_before
