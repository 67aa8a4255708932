from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest

from unigen.api.registry import Registry, default_registry
from unigen.cli.commands import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

os.environ.setdefault("MPLBACKEND", "Agg")
# The feature classifier of the image metrics is cached here, never in the user's cache.
os.environ["UNIGEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="unigen-test-cache-")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "venv: installs packages into a fresh virtual environment (deselect with -m 'not venv')")


@pytest.fixture(scope="session")
def registry() -> Registry:
    return default_registry()


@pytest.fixture
def write_spec(tmp_path: Path):
    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def cli(capsys):
    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
