"""benchmarks/adversarial.py: runs configurations over seeds in parallel processes and writes a table."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import ROOT


def test_adversarial_benchmark_runs_configurations_in_parallel_and_writes_the_table(tmp_path):
    out = tmp_path / "adversarial.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "adversarial.py"), "--sets", "dann", "--seeds", "0", "--steps", "3", "--jobs", "2", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for label in ("source-only-digits", "dann-digits"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} | 0 |"))
        assert re.search(r"target_accuracy = 0?\.[0-9]+; source_accuracy = 0?\.[0-9]+ \| [0-9]+ \|$", row), row
    assert "2 run(s) at a time" in text and "train.steps=3 (smoke test)" in text
    assert done.stdout.count("seed 0: {'target_accuracy'") == 2
    check = subprocess.run([*cmd[:2], "--check", "--jobs", "2", "--out", str(out)], capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert check.returncode == 0, check.stderr
    assert "4 values of" in check.stdout and "reproduced within tolerance" in check.stdout
    store = json.loads(out.with_suffix(".json").read_text())
    key = "dann-digits, seed 0: target_accuracy"
    store["values"][key] += 0.05
    out.with_suffix(".json").write_text(json.dumps(store))
    moved = subprocess.run([*cmd[:2], "--check", "--jobs", "2", "--out", str(out)], capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert moved.returncode == 1
    assert "B002 1 of 4 values" in moved.stderr and f"| {key} |" in moved.stderr
