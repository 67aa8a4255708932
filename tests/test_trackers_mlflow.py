"""The MLflow tracker (`--track mlflow`): a tiny run read back with MLflow's own client. Tests
that need mlflow (or mlflow-skinny) with sqlalchemy and alembic skip without them."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from unigen_std.trackers_mlflow import MAX_PARAM_TEXT, MlflowTracker, mlflow_name, spec_params

from unigen.runs.driver import train_run
from unigen.runs.trackers import RunStart

VAE = ROOT / "specs" / "vae-digits.yaml"
GAN = ROOT / "specs" / "gan-ring.yaml"
VAE_OPTS = ["train.log_every=5", "train.sample_every=10", "train.eval_every=10", "train.eval_samples=200"]
GAN_OPTS = ["data.n_train=256", "data.n_test=128", "train.batch_size=32", "train.eval_samples=100", "train.log_every=2", "train.sample_every=2", "train.checkpoint_every=2"]
NO_SERVER = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")


def needs_mlflow() -> None:
    pytest.importorskip("mlflow", reason="the MLflow tracker's tests need mlflow (or mlflow-skinny)")
    pytest.importorskip("sqlalchemy", reason="MLflow's SQLite store needs sqlalchemy")
    pytest.importorskip("alembic", reason="MLflow's SQLite store needs alembic")


def client_of(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def store(run):
    return client_of(f"sqlite:///{(run / 'mlflow' / 'mlflow.db').as_posix()}")


def history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory):
    """vae-digits for 20 steps with `--track mlflow`, started from an empty working directory."""
    needs_mlflow()
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        for name in NO_SERVER:
            mp.delenv(name, raising=False)
        mp.chdir(cwd)
        run = train_run(VAE, VAE_OPTS, out=str(tmp_path_factory.mktemp("ml") / "run"), steps=20, quiet=True, track=["mlflow"])
    client = store(run)
    run_id = json.loads((run / "mlflow" / "run.json").read_text())["run_id"]
    return run, client, client.get_run(run_id), cwd


def test_mlflow_run_lives_in_the_run_directory_and_finishes(ml_run):
    run, client, mlrun, cwd = ml_run
    assert json.loads((run / "summary.json").read_text())["trackers"] == {"mlflow": "ok"}
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == run.name
    assert client.get_experiment(mlrun.info.experiment_id).name == "vae-digits"
    assert mlrun.info.artifact_uri.startswith((run / "mlflow" / "artifacts").resolve().as_uri() + "/")
    assert mlrun.data.tags["unigen.spec"] == "vae-digits" and mlrun.data.tags["unigen.run_dir"] == str(run.resolve())
    assert list(cwd.iterdir()) == []  # no ./mlruns, no ./mlflow.db


def test_mlflow_params_are_the_flattened_resolved_spec(ml_run):
    run, _, mlrun, _ = ml_run
    params = mlrun.data.params
    resolved = yaml.safe_load((run / "spec.resolved.yaml").read_text())
    assert params == spec_params(resolved)
    assert params["name"] == "vae-digits" and params["data.source"] == "digits" and params["data.binarize"] == "true"
    assert params["train.steps"] == "20" and params["train.batch_size"] == "128" and params["train.optim.lr"] == "0.001"
    assert params["networks.encoder.hidden"] == "[256, 256]" and params["phases.elbo.terms"] == '["elbo"]'
    assert params["edges.0.generative"] == "z -> x" and params["train.best.metric"] == "test_nelbo"


def test_mlflow_metrics_are_logged_at_each_logged_step(ml_run):
    run, client, mlrun, _ = ml_run
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    summary = json.loads((run / "summary.json").read_text())
    metrics = {f"metric/{k}" for k in summary["metrics"]}
    assert "metric/test_nelbo" in metrics
    assert set(mlrun.data.metrics) == {"loss/elbo/elbo", "lr/elbo", "time/seconds", *metrics}
    run_id = mlrun.info.run_id
    loss = history(client, run_id, "loss/elbo/elbo")
    assert [s for s, _ in loss] == [int(r["step"]) for r in rows] == [5, 10, 15, 20]  # the last step once
    assert [v for _, v in loss] == pytest.approx([float(r["elbo/elbo"]) for r in rows], rel=1e-6)
    assert history(client, run_id, "lr/elbo") == [(5, pytest.approx(1e-3)), (10, pytest.approx(1e-3)), (15, pytest.approx(1e-3)), (20, pytest.approx(1e-3))]
    assert [s for s, _ in history(client, run_id, "time/seconds")] == [5, 10, 15, 20]
    nelbo = history(client, run_id, "metric/test_nelbo")
    assert [s for s, _ in nelbo] == [10, 20] and nelbo[-1][1] == pytest.approx(summary["metrics"]["test_nelbo"], rel=1e-9)


def test_mlflow_artefacts_are_the_pictures_the_spec_and_summary_json(ml_run, tmp_path):
    run, client, mlrun, _ = ml_run
    run_id = mlrun.info.run_id
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["reconstructions", "samples", "spec.resolved.yaml", "summary.json"]
    pictures = sorted(a.path for a in client.list_artifacts(run_id, "samples"))
    assert pictures == ["samples/step_00000010.png", "samples/step_00000020.png"]
    for path in pictures:
        assert Path(client.download_artifacts(run_id, path, str(tmp_path))).read_bytes() == (run / path).read_bytes()  # as written
    recons = sorted(a.path for a in client.list_artifacts(run_id, "reconstructions"))  # the VAE has an encoder
    assert recons == ["reconstructions/recon_step_00000010.png", "reconstructions/recon_step_00000020.png"]
    for path in recons:
        assert Path(client.download_artifacts(run_id, path, str(tmp_path))).read_bytes() == (run / "samples" / Path(path).name).read_bytes()
    got = client.download_artifacts(run_id, "summary.json", str(tmp_path))
    assert open(got).read() == (run / "summary.json").read_text()
    spec = client.download_artifacts(run_id, "spec.resolved.yaml", str(tmp_path))
    assert open(spec).read() == (run / "spec.resolved.yaml").read_text()


def test_mlflow_resumed_run_goes_on_in_the_same_run_without_a_step_twice(tmp_path, monkeypatch):
    """Step 6's checkpoint is unreadable, so the resumed run replays from step 4: step 6 is
    logged again by unigen but stays once in MLflow, and the run goes on to step 8."""
    needs_mlflow()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in NO_SERVER:
        monkeypatch.delenv(name, raising=False)
    run = train_run(GAN, GAN_OPTS, out=str(tmp_path / "run"), steps=6, quiet=True, track=["mlflow"])
    first = json.loads((run / "mlflow" / "run.json").read_text())["run_id"]
    (run / "checkpoints" / "step_00000006.pt").write_bytes(b"not a checkpoint")
    train_run(GAN, GAN_OPTS, out=str(run), steps=8, quiet=True, track=["mlflow"], resume="auto")
    assert json.loads((run / "summary.json").read_text())["resumed_from"]["step"] == 4
    assert json.loads((run / "mlflow" / "run.json").read_text())["run_id"] == first
    client = store(run)
    assert len(client.search_runs([client.get_experiment_by_name("gan-ring").experiment_id])) == 1
    mlrun = client.get_run(first)
    assert mlrun.info.status == "FINISHED"
    loss = "loss/discriminator/adversarial.d at adv_x"  # `@` is no character of MLflow's names
    assert loss in mlrun.data.metrics and "loss/generator/adversarial.g at adv_x" in mlrun.data.metrics
    assert [s for s, _ in history(client, first, loss)] == [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())] == [2, 4, 6, 8]
    assert [s for s, _ in history(client, first, "metric/modes_captured")] == [6, 8]
    assert mlrun.data.params["train.steps"] == "6"  # MLflow keeps a parameter's first value
    assert sorted(a.path for a in client.list_artifacts(first, "samples")) == [f"samples/step_{s:08d}.png" for s in (2, 4, 6, 8)]
    spec = client.download_artifacts(first, "spec.resolved.yaml", str(tmp_path))
    assert yaml.safe_load(open(spec).read())["train"]["steps"] == 8  # the resuming process's spec


def test_mlflow_tracker_on_its_own_with_a_store_named_in_the_environment(ml_run, tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME choose the store and experiment; a long
    value is cut to MLflow's limit; array pictures; a failed evaluation and a process that ends
    before training did are FAILED."""
    import shutil

    import numpy as np

    shutil.copy(ml_run[0] / "mlflow" / "mlflow.db", tmp_path / "shared.db")  # a store with its tables made (that takes a while)
    uri = f"sqlite:///{(tmp_path / 'shared.db').as_posix()}"
    monkeypatch.chdir(tmp_path)  # such a store keeps its artefacts in ./mlruns, as MLflow does
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "shared")
    resolved = {"name": "tiny", "phases": [{"name": "p"}], "train": {"steps": 3}, "long": list(range(3000)), "note": None, "odd key@x": 1.5}
    tracker = MlflowTracker()
    tracker.on_start(RunStart(tmp_path / "a", "tiny", resolved))
    tracker.on_metrics(1, {"step": 1, "time_s": 0.5, "p/term@edge": 2.0, "lr/p": 0.1, "score": float("nan"), "flag": True})
    tracker.on_image("picture", np.zeros((5, 7, 3), dtype=np.uint8), 1)
    tracker.on_image("picture", np.ones((3, 4, 6), dtype=np.float32), 2)  # CHW
    tracker.on_end({"steps": 3, "metrics": {}, "errors": ["metric `x` failed"]})
    client = client_of(uri)
    first = client.get_run(tracker.run_id)
    assert first.info.status == "FAILED" and client.get_experiment(first.info.experiment_id).name == "shared"
    params = first.data.params
    assert len(params["long"]) == MAX_PARAM_TEXT and params["long"].endswith("...") and params["long"].startswith("[0, 1, 2, ")
    assert params["note"] == "null" and params["odd key at x"] == "1.5"
    assert set(first.data.metrics) == {"time/seconds", "loss/p/term at edge", "lr/p", "metric/score"}  # `flag` is no number
    assert np.isnan(first.data.metrics["metric/score"])
    from PIL import Image

    sizes = []
    for a in sorted(client.list_artifacts(tracker.run_id, "picture"), key=lambda a: a.path):
        with Image.open(client.download_artifacts(tracker.run_id, a.path, str(tmp_path))) as picture:
            sizes.append((a.path, picture.size))
    assert sizes == [("picture/step_00000001.png", (7, 5)), ("picture/step_00000002.png", (6, 4))]

    other = MlflowTracker()
    other.on_start(RunStart(tmp_path / "b", "tiny", resolved))
    other.on_metrics(1, {"step": 1, "p/term@edge": 1.0})
    other.abandon()  # what runs at exit when training never finished
    assert client.get_run(other.run_id).info.status == "FAILED"
    assert len(client.search_runs([first.info.experiment_id])) == 2
    assert (tmp_path / "mlruns").is_dir()


def test_mlflow_names_are_valid_and_readable():
    pytest.importorskip("mlflow", reason="MLflow's own check of names needs mlflow")
    from mlflow.utils.validation import _validate_metric_name

    for key, name in {
        "loss/discriminator/adversarial.d@adv_x": "loss/discriminator/adversarial.d at adv_x",
        "metric/fid[pool]": "metric/fid_pool_",
        "metric/a:b,c=d": "metric/a_b_c_d",
        "metric//x/../y/": "metric/x/_/y",
        "lr/généré": "lr/généré",
    }.items():
        assert mlflow_name(key) == name
        _validate_metric_name(name)  # MLflow's own check: raises on a name it refuses
    assert len(mlflow_name("metric/" + "x" * 400)) == 250
    tracker = MlflowTracker()
    tracker.phases = {"p"}
    assert [tracker.metric_name(k) for k in ("p/t@e", "p/t at e", "p/t@e", "step")] == ["loss/p/t at e", "loss/p/t at e_2", "loss/p/t at e", None]


def test_mlflow_is_a_named_tracker_of_the_std_plugin(registry):
    entry = registry.entries["trackers"]["mlflow"]
    assert entry.plugin == "std" and entry.obj is MlflowTracker and not MlflowTracker.always


def test_mlflow_missing_package_is_u004(cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    here: dict[str, object] = {"mlflow": None}  # a package's spec, or None where it is missing
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: here[name] if name in here else real(name, *a))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = cli("compile-and-train", GAN, "--out", tmp_path / "run", "--track", "mlflow")
    assert code == 2 and "U004" in err and "`--track mlflow` needs the `mlflow` package" in err and "pip install mlflow-skinny sqlalchemy alembic" in err
    assert not (tmp_path / "run").exists()
    here.update(mlflow=object(), sqlalchemy=object(), alembic=None)  # mlflow-skinny without what SQLite needs
    code, _, err = cli("compile-and-train", GAN, "--out", tmp_path / "run", "--track", "mlflow")
    assert code == 2 and "U004" in err and "which needs `alembic` beside mlflow-skinny (`pip install alembic`" in err
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # a server's store needs no SQLAlchemy here
    assert MlflowTracker.unavailable() == ""
