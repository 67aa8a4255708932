"""`unigen evaluate`, `sample` and `plot` on short runs; `train.best`; the feature cache."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.runs.best import BestKeeper
from unigen.runs.driver import train_run
from unigen.training.model import Model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two cores shared by several jobs: one thread is faster than oversubscribing them.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(one_thread, tmp_path_factory, registry) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    quick = ["train.log_every=10", "train.eval_samples=300", "data.n_train=2000", "data.n_test=500"]
    out = {
        "vae": train_run(ROOT / "specs" / "vae-digits.yaml", ["train.log_every=10", "train.eval_every=20", "train.best.metric=test_nelbo"], out=str(root / "vae"), steps=60, device="cpu", registry=registry, quiet=True),
        "gan": train_run(ROOT / "specs" / "gan-ring.yaml", quick, out=str(root / "gan"), steps=20, device="cpu", registry=registry, quiet=True),
        "cgan": train_run(ROOT / "specs" / "cgan-digits.yaml", ["train.log_every=10"], out=str(root / "cgan"), steps=10, device="cpu", registry=registry, quiet=True),
        "infogan": train_run(ROOT / "specs" / "infogan-ring.yaml", quick, out=str(root / "infogan"), steps=10, device="cpu", registry=registry, quiet=True),
    }
    return out


def evaluate_json(cli, *args) -> dict:
    code, out, err = cli("evaluate", *args, "--json")
    assert code == 0, err
    return json.loads(out)


# Every metric that applies runs, decoder AIS included, but on a few short chains: the test reads
# the other metrics, and AIS at its defaults (16 chains x 500 steps) takes minutes here.
QUICK_AIS = ("--option", "decoder_ais.chains=2", "--option", "decoder_ais.betas=20", "--option", "decoder_ais.examples=10")


def test_evaluate_vae_reports_likelihood_bounds_and_image_metrics_with_floors(cli, runs):
    result = evaluate_json(cli, runs["vae"], *QUICK_AIS)
    m = result["metrics"]
    assert result["step"] == 60 and result["checkpoint"].endswith("step_00000060.pt")
    assert m["iwae_k"] == 100 and m["iwae_nll"] <= m["iwae_nelbo"]  # the bound is at least the ELBO
    assert math.isfinite(m["test_nll_decoder_ais"]) and m["decoder_ais_examples"] == 10  # the slow offline metrics run too, with the options given
    assert 10 < m["iwae_nll"] < 64 * math.log(2) + 1
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "class_score", "class_entropy"):
        assert math.isfinite(m[key]) and math.isfinite(m[key + "_floor"]), key
    for key in ("precision", "recall", "coverage"):
        assert 0 <= m[key] <= 1 and 0 <= m[key + "_floor"] <= 1
    assert m["fid"] > m["fid_floor"] >= 0  # 60 steps of training are far from the data
    assert m["feature_classifier_accuracy"] > 0.8  # the feature classifier reads real test digits
    assert m["class_entropy_floor"] == pytest.approx(math.log(10), abs=0.1)  # the test split is balanced
    code, table, _ = cli("evaluate", runs["vae"], *QUICK_AIS)
    assert code == 0 and "real-vs-real floor" in table
    fid_line = next(line for line in table.splitlines() if line.startswith("fid "))
    assert f"{m['fid']:.5g}" in fid_line and f"{m['fid_floor']:.5g}" in fid_line


def test_evaluate_gan_ring_reports_modes_and_reverse_kl(cli, runs):
    m = evaluate_json(cli, runs["gan"])["metrics"]
    assert m["modes_total"] == 8 and 0 <= m["modes_captured"] <= 8
    assert 0 <= m["mode_kl"] <= math.log(8) + 1e-6
    assert "fid" not in m and "iwae_nll" not in m


def test_evaluate_metric_selection_and_options(cli, runs):
    m = evaluate_json(cli, runs["vae"], "--metric", "iwae", "--option", "iwae.k=5", "--option", "iwae.examples=50")["metrics"]
    assert set(m) == {"iwae_nll", "iwae_nelbo", "iwae_k", "iwae_examples"} and m["iwae_k"] == 5 and m["iwae_examples"] == 50
    code, _, err = cli("evaluate", runs["vae"], "--metric", "iwea")
    assert code == 2 and "E003" in err and "did you mean `iwae`?" in err
    code, _, err = cli("evaluate", runs["vae"], "--option", "iwae.k=0")
    assert code == 2 and "E003" in err and "`k`" in err
    code, _, err = cli("evaluate", runs["vae"], "--option", "elbo.k=3")
    assert code == 2 and "E003" in err and "takes no options" in err


def test_evaluate_errors_for_missing_or_corrupt_runs(cli, runs, tmp_path):
    code, _, err = cli("evaluate", tmp_path / "nope")
    assert code == 2 and "E001" in err and "no such directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("evaluate", tmp_path / "empty")
    assert code == 2 and "E001" in err and "spec.resolved.yaml" in err
    code, _, err = cli("evaluate", runs["gan"], "--checkpoint", "best")
    assert code == 2 and "E002" in err and "train.best" in err
    broken = tmp_path / "broken"
    shutil.copytree(runs["gan"], broken)
    last = broken / "checkpoints" / (broken / "checkpoints" / "last").read_text().strip()
    last.write_bytes(b"not a checkpoint")
    code, _, err = cli("evaluate", broken, "--checkpoint", last)
    assert code == 1 and "C001" in err and "cannot be loaded safely" in err
    (broken / "spec.resolved.yaml").write_text("name: [unclosed")
    code, _, err = cli("evaluate", broken)
    assert code == 2 and "E001" in err and "cannot be read" in err


def test_best_checkpoint_is_the_lowest_evaluated_metric(cli, runs):
    run = runs["vae"]
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("test_nelbo")]
    assert [int(r["step"]) for r in rows] == [20, 40, 60]
    best_row = min(rows, key=lambda r: float(r["test_nelbo"]))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["value"] == pytest.approx(float(best_row["test_nelbo"]))
    assert (run / "checkpoints" / "best").read_text().strip() == f"step_{int(best_row['step']):08d}.pt"
    assert evaluate_json(cli, run, "--checkpoint", "best", "--metric", "elbo")["step"] == int(best_row["step"])


def test_offline_metrics_run_in_training_only_when_named(runs, registry, tmp_path):
    assert not {"iwae_nll", "fid"} & set(json.loads((runs["vae"] / "summary.json").read_text())["metrics"])
    run = train_run(ROOT / "specs" / "vae-digits.yaml", ["metrics=[iwae]", "train.log_every=2"], out=str(tmp_path / "named"), steps=2, device="cpu", registry=registry, quiet=True)
    assert set(json.loads((run / "summary.json").read_text())["metrics"]) == {"iwae_nll", "iwae_nelbo", "iwae_k", "iwae_examples"}


def test_metric_options_in_the_spec_apply_in_training_and_evaluate(cli, registry, tmp_path):
    run = train_run(ROOT / "specs" / "vae-digits.yaml", ["metrics=[{metric: iwae, options: {k: 3, examples: 40}}]", "train.log_every=2"], out=str(tmp_path / "opts"), steps=2, device="cpu", registry=registry, quiet=True)
    trained = json.loads((run / "summary.json").read_text())["metrics"]
    assert (trained["iwae_k"], trained["iwae_examples"]) == (3, 40)
    m = evaluate_json(cli, run, "--metric", "iwae")["metrics"]
    assert (m["iwae_k"], m["iwae_examples"]) == (3, 40) and m["iwae_nll"] == pytest.approx(trained["iwae_nll"], abs=1e-4)
    m = evaluate_json(cli, run, "--metric", "iwae", "--option", "iwae.k=4")["metrics"]
    assert (m["iwae_k"], m["iwae_examples"]) == (4, 40)  # the command line wins, key by key


def test_best_keeper_min_max_and_missing_metric():
    warnings: list[str] = []
    low = BestKeeper("loss", "min", warnings.append)
    assert [low.improves(s, {"loss": v}) for s, v in ((1, 3.0), (2, 4.0), (3, 2.0), (4, float("nan")))] == [True, False, True, False]
    high = BestKeeper("acc", "max", warnings.append, state={"metric": "acc", "mode": "max", "value": 0.5, "step": 7})
    assert [high.improves(s, {"acc": v}) for s, v in ((8, 0.4), (9, 0.6))] == [False, True] and high.step == 9
    assert not high.improves(10, {"other": 1.0}) and not high.improves(11, {"other": 1.0})
    assert len(warnings) == 1 and "E006" in warnings[0] and "`other`" in warnings[0]


def test_sample_pictures(cli, runs, tmp_path):
    for name, extra in (("vae", []), ("gan", ["-n", "500"]), ("cgan", []), ("vae", ["--traverse", "z:1"]), ("vae", ["--traverse", "z"]), ("vae", ["--interpolate", "z"]), ("infogan", ["--traverse", "c"]), ("gan", ["--interpolate", "z"])):
        out = tmp_path / f"{name}-{len(extra)}-{extra[-1] if extra else ''}.png".replace(":", "_")
        code, stdout, err = cli("sample", runs[name], "-o", out, "--seed", "3", *extra)
        assert code == 0, err
        assert out.read_bytes()[:8] == PNG and str(out) in stdout
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cli("sample", runs["vae"], "-o", a, "--seed", "1")
    cli("sample", runs["vae"], "-o", b, "--seed", "1")
    assert a.read_bytes() == b.read_bytes()  # a seed gives the same picture


def test_sample_errors(cli, runs, tmp_path):
    code, _, err = cli("sample", runs["vae"], "-o", tmp_path / "x.png", "--traverse", "x")
    assert code == 2 and "E004" in err and "not a latent root" in err and "`z`" in err
    code, _, err = cli("sample", runs["vae"], "-o", tmp_path / "x.png", "--traverse", "z:99")
    assert code == 2 and "E004" in err and "has 8" in err
    code, _, err = cli("sample", runs["vae"], "-o", tmp_path / "x.png", "-n", "0")
    assert code == 2 and "E004" in err


def test_plot_draws_loss_and_metric_curves(cli, runs, tmp_path):
    code, out, err = cli("plot", runs["vae"], "-o", tmp_path / "plots")
    assert code == 0, err
    for name in ("losses.png", "metrics.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG and name in out
    code, _, err = cli("plot", tmp_path / "plots")
    assert code == 2 and "E005" in err and "metrics.csv" in err


def test_code_accuracy_of_a_qnet_that_reads_the_modes(registry):
    program = compile_file(ROOT / "specs" / "infogan-ring.yaml", ["train.device=cpu", "networks.qnet.hidden=[]", "data.n_train=500", "data.n_test=800"], registry).program
    model = Model(program, torch.device("cpu")).eval()
    modes = model.dataset.info["modes"]
    perm = torch.tensor([3, 0, 7, 5, 1, 2, 6, 4])
    layer = model.nets["qnet"].body[0]
    metric = registry.get("metrics", "code_accuracy")
    assert metric.applies(model)
    with torch.no_grad():
        layer.weight.copy_(modes[perm])  # logit of code j: the projection on mode perm[j]
        layer.bias.zero_()
        assert metric.compute(model)["code_accuracy"] == 1.0  # a permutation of the modes is matched back
        layer.weight.zero_()  # every x gets code 0: right on one mode in eight
        out = metric.compute(model)
    assert out["code_accuracy"] == pytest.approx(1 / 8, abs=0.03) and out["code_chance"] == 1 / 8
    assert 1 / 8 <= out["code_accuracy_gen"] <= 1


def test_feature_classifier_is_cached_keyed_and_rebuilt(registry, tmp_path, monkeypatch, capsys):
    from unigen_eval import features

    monkeypatch.setenv("UNIGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "_MEMO", {})
    program = compile_file(ROOT / "specs" / "vae-digits.yaml", ["train.device=cpu"], registry).program
    ds = Model(program, torch.device("cpu")).dataset
    options = program.data.options
    small = features.Settings(epochs=3)
    net, acc = features.feature_classifier("digits", options, "x", ds.train, ds.test, 10, small)
    files = list((tmp_path / "cache" / "features").glob("digits-*.pt"))
    assert len(files) == 1 and 0.1 < acc <= 1
    monkeypatch.setattr(features, "_MEMO", {})
    monkeypatch.setattr(features, "train_classifier", lambda *a: pytest.fail("retrained although cached"))
    again, acc2 = features.feature_classifier("digits", options, "x", ds.train, ds.test, 10, small)
    assert acc2 == acc and all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert features.cache_key("digits", options, "x", small) != features.cache_key("digits", options.model_copy(update={"binarize": False}), "x", small)
    assert features.cache_key("digits", options, "x", small) != features.cache_key("digits", options, "x", features.Settings(epochs=4))
    files[0].write_bytes(b"torn")
    monkeypatch.undo()
    monkeypatch.setenv("UNIGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "_MEMO", {})
    _, acc3 = features.feature_classifier("digits", options, "x", ds.train, ds.test, 10, small)
    assert acc3 == acc and "unreadable" in capsys.readouterr().err  # seeded: the same classifier again
    assert torch.load(files[0], weights_only=True)["test_accuracy"] == acc
