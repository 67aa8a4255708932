"""benchmarks/run.py: trains, evaluates and writes the suite table with published values."""

from __future__ import annotations

import importlib.util

import torch
from conftest import ROOT


def test_suite_writes_a_table_with_published_values(tmp_path):
    spec = importlib.util.spec_from_file_location("unigen_suite", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    threads = torch.get_num_threads()
    try:
        assert suite.main(["--quick", "--quick-steps", "4", "--specs", "gan-ring", "vae-digits", "--seeds", "0", "1", "--no-overhead", "--out", str(tmp_path / "suite.md"),
                           "--option", "decoder_ais.chains=2", "--option", "decoder_ais.betas=20", "--option", "decoder_ais.examples=10"]) == 0  # AIS at its defaults takes minutes
    finally:
        torch.set_num_threads(threads)
    text = (tmp_path / "suite.md").read_text()
    assert "quick mode" in text and "`python benchmarks/run.py --quick --seeds 0 1 --jobs 1`" in text
    ring = next(line for line in text.splitlines() if line.startswith("| gan-ring | 4 |"))
    assert "modes_captured" in ring and "GAN 1; VEEGAN 8" in ring
    assert "| | | | | hq_fraction |" in text and "median | range" in text  # two seeds: median and range
    vae = next(line for line in text.splitlines() if line.startswith("| vae-digits | 4 |"))
    assert "test_nelbo" in vae and "iwae_nll" in vae and "fid" in vae
    assert "| | | | | fid_floor" not in text and "| | | | | fid |" in text  # floors sit beside their metric
