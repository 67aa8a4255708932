"""A run whose spec names no `metrics` still ends with a measurement: when no quick metric
applies (a GAN on images), the slow `fallback` metrics that apply run once after the last step."""

from __future__ import annotations

import csv

from conftest import ROOT

import unigen


def test_a_gan_on_the_digits_without_metrics_ends_with_its_sample_quality(tmp_path):
    run = unigen.train(ROOT / "specs" / "dcgan-digits.yaml", ["~metrics", "train.log_every=2"], out=tmp_path / "run", steps=4, device="cpu")
    metrics = run.summary["metrics"]
    assert {"fid", "fid_floor", "precision", "recall"} <= set(metrics)
    assert metrics["fid"] > metrics["fid_floor"] > 0  # 4 steps of training are far from the data
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert rows[-1]["step"] == "4" and float(rows[-1]["fid"]) == metrics["fid"]
    assert all(not row.get("fid") for row in rows[:-1])  # once, at the end: not at the logged steps


def test_the_fallback_waits_when_a_quick_metric_applies(tmp_path):
    run = unigen.train(ROOT / "specs" / "vae-digits.yaml", [], out=tmp_path / "run", steps=4, device="cpu")
    metrics = run.summary["metrics"]
    assert "test_nelbo" in metrics and "fid" not in metrics


def test_a_spec_that_names_its_metrics_gets_those_alone(tmp_path):
    run = unigen.train(ROOT / "specs" / "dcgan-digits.yaml", ["metrics=[]"], out=tmp_path / "run", steps=2, device="cpu")
    assert run.summary["metrics"] == {}
