"""benchmarks/mixtures.py: rows from different base specs (a GAN, MAD-GAN, several generators),
the table with the published values."""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys

from conftest import ROOT


def test_mixtures_benchmark_runs_rows_of_other_base_specs(tmp_path):
    out = tmp_path / "mixtures.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "mixtures.py"), "--only", "MAD-GAN", "k generators", "least", "--seeds", "0", "--steps-ring", "5", "--steps-grid", "5", "--jobs", "2", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for label in ("MAD-GAN: k generators, D also tells which (k = modes)", "k generators + R1 + EMA 0.999 + cosine lr (multigen specs)", "least_squares"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert len(cells) == 8 and all(re.fullmatch(r"[0-9.]+%?|—", c) for c in cells), row
    assert "- least_squares | grid seed 0: modes " in text.split("Every run:")[1]
    assert "ring 5 steps per run (the spec: 10,000)" in text and "| GDPP-GAN | 8 | 71.7% | 24.8 | 68.5% |" in text
    progress = [line for line in done.stdout.splitlines() if not line.startswith("- ")]  # as each run ends
    for data in ("ring", "grid"):
        assert sum(f"| {data} seed 0: modes" in line for line in progress) == 3


def test_mixtures_cell_leaves_out_runs_without_a_spread():
    spec = importlib.util.spec_from_file_location("mixtures", ROOT / "benchmarks" / "mixtures.py")
    mixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mixtures)
    assert mixtures.cell([math.nan, 1.73, 1.17], "{:.2f}") == "1.45 [1.17–1.73] (1 run(s) without one)"
    assert mixtures.cell([math.nan], "{:.2f}") == "—"
    assert mixtures.cell([93.8, 94.8, 92.7], "{:.1f}%") == "93.8% [92.7%–94.8%]"
