from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest

from unigen.api import registry as registry_mod
from unigen.api.registry import Registry, default_registry
from unigen.cli.commands import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

os.environ.setdefault("MPLBACKEND", "Agg")


def own_entry_points() -> list:
    """unigen's own plugins, whatever else is installed beside it."""
    from importlib import metadata

    return [ep for ep in metadata.entry_points(group=registry_mod.GROUP) if ep.dist is not None and ep.dist.name == "unigen"]


def foreign_plugins() -> list[str]:
    """The names of the installed plugins of other distributions (a user's, the example's)."""
    from importlib import metadata

    own = {ep.name for ep in own_entry_points()}
    return sorted({ep.name for ep in metadata.entry_points(group=registry_mod.GROUP) if ep.name not in own and (ep.dist is None or ep.dist.name != "unigen")})


# The tests see unigen's own plugins only: a third-party plugin installed beside it must not
# change what they find. In this process the registry reads unigen's entry points alone (tests
# that add plugins add them to these); commands they start as subprocesses block the others by
# name (UNIGEN_BLOCK_PLUGINS; a test that installs a plugin on purpose clears it).
registry_mod._entry_points = own_entry_points
if foreign_plugins():
    os.environ["UNIGEN_BLOCK_PLUGINS"] = ",".join(n for n in [*os.environ.get("UNIGEN_BLOCK_PLUGINS", "").split(","), *foreign_plugins()] if n.strip())
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


@pytest.fixture
def one_thread():
    """torch on one thread for the test (a module opts in with `pytestmark`): small models run
    faster so, and two workers do not oversubscribe a 2-core machine."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def assert_equal(a, b, where: str = "state") -> None:  # noqa: ANN001
    """Recursively equal (checkpoints, states); tensors with torch.equal, bit for bit."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{where}.{i}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
