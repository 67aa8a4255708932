"""`--check` of the benchmark scripts (benchmarks/common.py): the stored table's runs again, a
value moved beyond its tolerance named with exit 1 (B002), nothing to check against exit 2
(B001), and the stored files left as they were. Tiny runs: a few steps each."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doctor(store, name: str, by: float) -> dict:
    record = json.loads(store.read_text())
    record["values"][name] += by
    store.write_text(json.dumps(record))
    return record


def test_bench_check_mixtures_names_the_value_that_moved(tmp_path, capsys):
    mixtures = script("mixtures")
    out = tmp_path / "mixtures.md"
    assert mixtures.main(["--only", "nonsaturating + R1 (the spec)", "--data", "ring", "--seeds", "0", "--steps-ring", "5", "--out", str(out)]) == 0
    store = out.with_suffix(".json")
    name = "nonsaturating + R1 (the spec), ring, seed 0: hq_fraction"
    stored = json.loads(store.read_text())
    assert set(stored["values"]) == {name, name.replace("hq_fraction", "modes_captured"), name.replace("hq_fraction", "hq_spread")}
    assert stored["options"]["steps_ring"] == 5 and "| nonsaturating + R1 (the spec) |" in out.read_text()
    capsys.readouterr()

    assert mixtures.main(["--check", "--out", str(out)]) == 0
    assert f"3 values of {store} reproduced within tolerance." in capsys.readouterr().out

    was = stored["values"][name]
    record = doctor(store, name, 0.01)  # one percentage point: beyond the stated 0.5
    table = out.read_text()
    assert mixtures.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"B002 1 of 3 values of {store} moved beyond their tolerance" in err
    assert "| value | stored | now | tolerance |" in err and f"| {name} | {was + 0.01:.6g} | {was:.6g} | ± 0.005 |" in err
    assert "modes_captured |" not in err  # only what moved
    assert "python benchmarks/mixtures.py --only 'nonsaturating + R1 (the spec)'" in err  # the command that writes it again
    assert out.read_text() == table and json.loads(store.read_text()) == record  # --check writes nothing
    assert "another kind of machine" not in err and set(record["machine"]) == {"cpu", "capability", "torch"}

    record["machine"]["capability"] = "NOT-" + record["machine"]["capability"]  # as if made on another instruction set
    store.write_text(json.dumps(record))
    assert mixtures.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "another kind of machine (capability 'NOT-" in err and "bit-deterministic on one kind of CPU only" in err


def test_bench_check_nll_within_and_beyond_tolerance(tmp_path, capsys):
    autoregressive = script("autoregressive")
    out = tmp_path / "ar.md"
    assert autoregressive.main(["--specs", "made-digits", "--steps", "5", "--out", str(out)]) == 0
    store = out.with_suffix(".json")
    name = "made-digits, seed 0: best"
    assert name in json.loads(store.read_text())["values"] and "| made-digits |" in out.read_text()

    doctor(store, name, 0.015)  # inside ± 0.02 nats
    assert autoregressive.main(["--check", "--out", str(out)]) == 0
    doctor(store, name, 0.05)  # now 0.065 from the run
    capsys.readouterr()
    assert autoregressive.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"| {name} |" in err and "| ± 0.02 |" in err and "B002 1 of 6 values" in err


def test_bench_check_specs_keeps_other_rows_and_checks_the_named_spec(tmp_path, capsys):
    specs = script("specs")
    out = tmp_path / "specs.md"
    for name in ("made-digits", "ae-digits"):
        assert specs.main([name, "--steps", "3", "--threads", "1", "--out", str(out)]) == 0
    rows = [line.split(" | ")[0] for line in out.read_text().splitlines() if line.startswith("| ") and "-digits" in line]
    assert rows == ["| made-digits", "| ae-digits"]  # the second command kept the first's row
    store = out.with_suffix(".json")
    doctor(store, "made-digits, seed 0: test_nelbo", 1.0)
    capsys.readouterr()
    assert specs.main(["ae-digits", "--check", "--out", str(out)]) == 0  # only ae-digits run and compared
    assert specs.main(["made-digits", "--check", "--out", str(out)]) == 1
    assert "| made-digits, seed 0: test_nelbo |" in capsys.readouterr().err
    assert specs.main(["cgan-digits", "--check", "--out", str(out)]) == 2  # nothing stored of it
    assert "B001" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, "{not json", '{"script": "benchmarks/specs.py", "options": {}, "values": {}}'])
def test_bench_check_without_stored_values_is_b001(tmp_path, content):
    out = tmp_path / "mixtures.md"
    if content is not None:
        out.with_suffix(".json").write_text(content)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mixtures.py"), "--check", "--out", str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert "B001" in done.stderr and str(out.with_suffix(".json")) in done.stderr and "Traceback" not in done.stderr
    assert ("without --check first" in done.stderr) if content != '{"script": "benchmarks/specs.py", "options": {}, "values": {}}' else ("not benchmarks/mixtures.py" in done.stderr)
    assert not out.exists()
