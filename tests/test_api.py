"""The public API at the package top (`unigen.compile`, `unigen.train`, `unigen.Run`, ...):
docs/api.md runs as written, `import unigen` stays cheap, and every public name resolves."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import unigen

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"
FUNCTIONS = ["load_spec", "validate", "compile", "train", "open_run"]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_python_blocks_are_found_in_order():
    assert python_blocks("a\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n```python\nprint(x)\n```\n") == ["x = 1\n", "print(x)\n"]


def test_the_api_page_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocks = python_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    (tmp_path / "specs").symlink_to(ROOT / "specs")  # the page's paths are the repository's
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its temporary run lands here
    namespace: dict[str, object] = {"__name__": "api_md"}
    printed: list[str] = []
    for i, code in enumerate(blocks):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)
        printed.append(out.getvalue())

    def output(marker: str) -> str:
        found = [text for code, text in zip(blocks, printed) if marker in code]
        assert len(found) == 1, f"one block of docs/api.md should contain {marker!r}"
        return found[0]

    assert output("print(program)").startswith("program vae-digits")
    assert output("unigen.load_spec(").split()[:2] == ["vae-digits", "500"]
    diagnostics = output("unigen.validate(")
    assert "override 1 `train.batch_size=0`: train.batch_size: S002" in diagnostics  # located where the value came from
    assert "S004" in diagnostics and "batch_size" in diagnostics  # the misspelt key, and the key it means
    assert output("except unigen.UnigenError").strip() == "['S002']"
    assert output("unigen.train(").startswith("vae ")
    assert "summary.json" in output("unigen.train(") and "checkpoints" in output("unigen.train(")
    assert output("unigen.open_run(").split() == ["(16,", "64)", "50"]
    nelbo = float(re.search(r"-ELBO (\S+) nats", output("run.evaluate(")).group(1))
    assert math.isfinite(nelbo) and nelbo > 0
    steps, same = output("run.metrics()").splitlines()
    assert re.fullmatch(r"\[\(10, [\d.]+\), \(20, .*\(50, [\d.]+\)\]", steps) and same == "True"
    driven = output("for _ in range(5)").splitlines()
    assert driven[0].startswith("5 {'elbo/elbo': ") and driven[1] == "['test_kl', 'test_nelbo', 'test_recon']"
    assert output("load_registry(").startswith("SGD {'elbo/elbo': ")
    assert Path(str(namespace["out"])).is_relative_to(tmp_path)  # nothing trained outside the test's directory


def test_import_unigen_does_not_import_torch():
    code = "import sys, unigen; from unigen import hookimpl; print('torch' in sys.modules, 'unigen.training.trainer' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_every_public_name_resolves_and_is_listed():
    code = "import unigen; print(all(getattr(unigen, n) is not None for n in unigen.__all__), set(unigen.__all__) <= set(dir(unigen)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.split() == ["True", "True"]
    from unigen.api.registry import default_registry
    from unigen.runs.handle import Run
    from unigen.training.model import Model
    from unigen.training.trainer import Trainer

    assert (unigen.Run, unigen.Trainer, unigen.Model, unigen.default_registry) == (Run, Trainer, Model, default_registry)
    with pytest.raises(AttributeError):
        unigen.no_such_name  # noqa: B018


def test_compile_and_train_are_plain_functions():
    import unigen.compiler.compiler  # the packages have other names: importing them changes nothing
    import unigen.training.trainer  # noqa: F401

    assert inspect.isfunction(unigen.compile) and inspect.isfunction(unigen.train)
    assert list(inspect.signature(unigen.train).parameters) == ["path", "overrides", "out", "steps", "device", "quiet", "resume", "registry"]
    assert list(inspect.signature(unigen.compile).parameters) == ["path", "overrides", "registry"]
    assert "Returns" in (unigen.train.__doc__ or "")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_documents_its_arguments(name: str):
    function = getattr(unigen, name)
    doc = inspect.getdoc(function) or ""
    for parameter in inspect.signature(function).parameters:
        assert f"{parameter}:" in doc, f"unigen.{name}'s docstring does not document `{parameter}`"
    assert "Returns" in doc


def test_open_run_refuses_what_is_not_a_run(tmp_path: Path):
    with pytest.raises(unigen.UnigenError) as info:
        unigen.open_run(tmp_path / "missing")
    assert info.value.diagnostics[0].code == "E001"
    with pytest.raises(unigen.UnigenError, match="spec.resolved.yaml"):
        unigen.open_run(tmp_path)


def test_a_run_reads_its_summary_and_metrics_as_they_are_written(tmp_path: Path):
    (tmp_path / "spec.resolved.yaml").write_text("unigen: 1\n")
    run = unigen.open_run(tmp_path)
    assert run.path == tmp_path and run.summary is None and run.metrics() == []
    (tmp_path / "metrics.csv").write_text("step,time_s,d/loss,fid\n10,0.5,1.25,\n20,1.0,0.75,3.5\n30,1.5\n")  # a torn last line
    assert run.metrics() == [{"step": 10, "time_s": 0.5, "d/loss": 1.25}, {"step": 20, "time_s": 1.0, "d/loss": 0.75, "fid": 3.5}]
    (tmp_path / "summary.json").write_text(json.dumps({"steps": 30}))
    assert run.summary == {"steps": 30}
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(unigen.UnigenError, match="E001"):
        run.summary  # noqa: B018


def test_validate_reports_an_unreadable_file_instead_of_raising(tmp_path: Path):
    assert [d.code for d in unigen.validate(tmp_path / "missing.yaml")] == ["Y004"]


def test_evaluate_options_are_written_as_the_command_line_s():
    from unigen.runs.handle import option_items

    assert option_items({"iwae": {"k": 1000}, "quality": {"n": 10, "name": "x"}}) == ["iwae.k=1000", "quality.n=10", 'quality.name="x"']
    assert option_items(["iwae.k=5"]) == ["iwae.k=5"] and option_items(None) == []
