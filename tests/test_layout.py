"""The core's layout: imports go one way along the pipeline, the core names no family, no
objective and no dataset, and its functions and classes stay small enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "unigen"

# The pipeline, upstream first: a module may import from its own layer and those before it.
LAYERS = ("errors", "api", "spec", "graph", "compiler", "training", "runs", "tools", "cli", "unigen")

MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 250


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    """`unigen.training.model` -> the index of `train`; the package itself (its public API) is last."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return LAYERS.index("unigen")
    return LAYERS.index(parts[1])


def imports(path: Path, name: str) -> set[str]:
    """Every unigen module `path` imports, at any level (functions, `TYPE_CHECKING` blocks)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "unigen"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "unigen":
                continue
            # `from unigen.training import distributed` imports the module `unigen.training.distributed`.
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if (CORE.parent / (sub.replace(".", "/") + ".py")).exists() else target)
    return out


def import_graph(root: Path = CORE) -> nx.DiGraph:
    g = nx.DiGraph()
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        g.add_node(name)
        for target in imports(path, name):
            if target != name:
                g.add_edge(name, target)
    return g


def layout_problems(g: nx.DiGraph) -> list[str]:
    problems = []
    for a, b in sorted(g.edges):
        # A package's own __init__ may gather its submodules (the package's face); a submodule
        # importing its package's __init__ would be an upward import.
        if b.startswith(a + "."):
            continue
        if layer(b) > layer(a):
            problems.append(f"{a} imports {b}, against the pipeline ({LAYERS[layer(a)]} comes before {LAYERS[layer(b)]})")
    for i, cycle in enumerate(nx.simple_cycles(g)):
        if i == 5:  # one wrong import can close many cycles: the first few name it
            problems.append("import cycle: and more")
            break
        problems.append("import cycle: " + " -> ".join(cycle + cycle[:1]))
    return problems


def test_imports_go_one_way_along_the_pipeline():
    problems = layout_problems(import_graph())
    assert not problems, "\n".join(problems)


def test_the_layout_check_names_a_wrong_import_and_a_cycle(tmp_path: Path):
    fake = tmp_path / "unigen"
    for rel, text in {
        "__init__.py": "",
        "api/__init__.py": "",
        "api/kinds.py": "def f():\n    from unigen.training.model import Model  # upward, inside a function\n",
        "training/__init__.py": "",
        "training/model.py": "from unigen.training import trainer\n",
        "training/trainer.py": "from unigen.training.model import x\n",
    }.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    problems = layout_problems(import_graph(fake))
    assert "unigen.api.kinds imports unigen.training.model, against the pipeline (api comes before training)" in problems
    assert any(p.startswith("import cycle: ") and "unigen.training.model" in p and "unigen.training.trainer" in p for p in problems)


# ------------------------------------------------------------ no family in the core

# Names of families, objectives, datasets and their options that belong to plugins. A word
# is matched whole, in code and in strings (comments and docstrings are prose: they may cite
# a family to explain a general mechanism). The formalism's own roles (a discriminator, a
# generator) are the core's words.
PLUGIN_WORDS = (
    "vae", "gan", "wgan", "madgan", "aae", "infogan", "ali", "bigan", "cyclegan", "dann", "vaegan",
    "nonsaturating", "minimax", "hinge", "wasserstein", "r1", "pack", "identify",
    "digits", "ring2d", "grid2d", "mnist", "modes", "image_shape", "elbo",
)


def code_words(source: str) -> list[tuple[int, str]]:
    """(line, word) of every identifier and string word in code, docstrings left out."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            out.append((node.lineno, node.attr))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            # A string that is a name (`info["modes"]`), or a name quoted in a message (`digits`);
            # the English words of a message ("letters, digits and `_`") are not names.
            out += [(node.lineno, w) for w in [node.value.strip(), *re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", node.value)]]
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.arg)):
            out.append((node.lineno, getattr(node, "name", None) or getattr(node, "arg", "")))
    return out


def family_names(root: Path = CORE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, word in sorted(set(code_words(path.read_text(encoding="utf-8")))):
            if word.lower() in PLUGIN_WORDS:
                found.append(f"{path.relative_to(root.parent)}:{line}: `{word}`")
    return found


def test_the_core_names_no_family_objective_or_dataset():
    found = family_names()
    assert not found, "the core knows a plugin's names (move the knowledge into the plugin):\n" + "\n".join(found)


def test_the_family_check_finds_a_name_in_code_but_not_in_prose(tmp_path: Path):
    fake = tmp_path / "unigen"
    fake.mkdir()
    (fake / "trainer.py").write_text('"""Runs phases, e.g. a GAN\'s discriminator, then its generator."""\n\n# the VAE case needs nothing\nif "modes" in info:\n    n = 2500\nhint = "letters, digits and `_`; try `elbo`"\n')
    assert family_names(fake) == ["unigen/trainer.py:4: `modes`", "unigen/trainer.py:6: `elbo`"]


# --------------------------------------------------------------------- sizes


def oversized(root: Path = CORE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = MAX_FUNCTION_LINES
            elif isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            else:
                continue
            n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            if n > limit:
                out.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.name} has {n} lines (at most {limit})")
    return out


def test_no_core_function_or_class_is_too_long_to_read():
    found = oversized()
    assert not found, "\n".join(found)


@pytest.mark.parametrize("lines, expected", [(60, []), (61, ["unigen/m.py:1: f has 61 lines (at most 60)"])])
def test_the_size_check_counts_a_function_s_lines(tmp_path: Path, lines: int, expected: list[str]):
    (tmp_path / "unigen").mkdir()
    (tmp_path / "unigen" / "m.py").write_text("def f():\n" + "    x = 1\n" * (lines - 1))
    assert oversized(tmp_path / "unigen") == expected


def test_readme_design_names_every_module():
    """The README's Design section gives each module of the core its job, in a table row."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    design = readme[readme.index("## Design"):readme.index("## Dependencies")]
    cells = [line.split("|")[1] for line in design.splitlines() if line.startswith("| `")]
    listed = {m for cell in cells for m in re.findall(r"`([a-z_]+(?:/[a-z_]+)?\.py)`", cell)}
    modules = {str(p.relative_to(CORE)) for p in CORE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")} | {"__init__.py"}
    assert modules - listed == set(), f"modules the README's Design section does not name: {sorted(modules - listed)}"
    assert listed - modules == set(), f"the Design section names modules that do not exist: {sorted(listed - modules)}"
