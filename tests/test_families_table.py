"""The README's models table (between `<!-- families:begin -->` and `<!-- families:end -->`)
stays in step with `specs/` and the registry: every shipped spec has a row of its own or stands
in a row's MNIST column, each row's family is the one its spec names (or — for a spec that names
none), every registered family has a spec that names it, and each metric a row names (its own, and
its MNIST spec's) is registered and reported for that spec."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.training.trainer import Trainer

README = (ROOT / "README.md").read_text()
BEGIN, END = "<!-- families:begin -->", "<!-- families:end -->"
HEADER = "| model | spec | family | metric: measured | on MNIST: spec, metric: measured | literature, comparable data |"
RULE = "|---|---|---|---|---|---|"
ROW = re.compile(r"^\| ([^|`]+) \| `([\w.-]+)` \| (?:`([\w.-]+)`|—) \| `(\w+)`: [^|]+ \| (?:—|`([\w.-]+)`, `(\w+)`: [^|]+) \| [^|]+ \|$")
SHAPE = "| model | `spec` | `family` or — | `metric`: measured | — or `mnist-spec`, `metric`: measured | literature |"


def table_rows(text: str) -> tuple[list[tuple[str, str, str | None, str, str | None, str | None]], list[str]]:
    """The rows (model, spec, family or None, metric, MNIST spec or None, its metric) of the table
    in `text`, and what is malformed."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        return [], [f"README.md must hold `{BEGIN}` once, then `{END}` once"]
    lines = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip().splitlines()
    problems = [] if lines[:2] == [HEADER, RULE] else [f"the table must start with the header `{HEADER}` and `{RULE}`"]
    rows = []
    for line in lines[2:]:
        m = ROW.match(line)
        if m is None:
            problems.append(f"malformed row (expected {SHAPE}): {line}")
        else:
            model, spec, family, metric, mnist, mnist_metric = m.groups()
            rows.append((model.strip(), spec, family, metric, mnist, mnist_metric))
    return rows, problems


def table_problems(text: str, registry) -> list[str]:
    """Every way the table disagrees with specs/ and the registry, one message each."""
    rows, problems = table_rows(text)
    specs = sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))
    listed = [spec for _, spec, _, _, _, _ in rows] + [mnist for *_, mnist, _ in rows if mnist]
    for spec in specs:
        if spec not in listed:
            problems.append(f"missing row: specs/{spec}.yaml has no row; add {SHAPE.replace('`spec`', f'`{spec}`')}, or name it in a row's MNIST column")
    for spec in sorted({s for s in listed if listed.count(s) > 1}):
        problems.append(f"duplicate rows for spec `{spec}`")
    registered = {e.name: e for e in registry.all("families")}
    named = {}
    for model, spec, family, metric, mnist, mnist_metric in rows:
        if mnist and not (ROOT / "specs" / f"{mnist}.yaml").exists():
            problems.append(f"row `{model}`: its MNIST spec `{mnist}` does not exist (no specs/{mnist}.yaml)")
        if mnist_metric and not registry.has("metrics", mnist_metric):
            problems.append(f"row `{model}`: metric `{mnist_metric}` of its MNIST column is not registered")
        path = ROOT / "specs" / f"{spec}.yaml"
        if not path.exists():
            problems.append(f"row `{model}`: spec `{spec}` does not exist (no specs/{spec}.yaml)")
            continue
        named[spec] = (yaml.safe_load(path.read_text()) or {}).get("family")
        if named[spec] != family:
            problems.append(f"row `{model}`: specs/{spec}.yaml names family `{named[spec]}`, the row says `{family}`")
        if family is not None and family not in registered:
            problems.append(f"row `{model}`: family `{family}` is not registered (registered: {', '.join(sorted(registered))})")
        if not registry.has("metrics", metric):
            problems.append(f"row `{model}`: metric `{metric}` is not registered (registered: {', '.join(registry.names('metrics'))})")
    for name in sorted(set(registered) - set(named.values())):
        problems.append(f"family `{name}` (registered by plugin `{registered[name].plugin}`) has no row: ship a spec that names it and add its row")
    return problems


def test_families_table_matches_specs_and_registry(registry):
    problems = table_problems(README, registry)
    assert not problems, "README models table:\n" + "\n".join(problems)


def test_families_table_metrics_are_reported_for_their_specs(registry):
    """A row's metric is one the spec's run reports: listed under `metrics:` in the spec, or
    (with no list) a registered metric that applies to the built model."""
    rows, _ = table_rows(README)
    assert len(rows) >= len(registry.names("families"))
    pairs = [(model, spec, metric) for model, spec, _, metric, _, _ in rows] + [(model, mnist, m) for model, _, _, _, mnist, m in rows if mnist]
    assert sum(1 for *_, mnist, _ in rows if mnist) >= 8  # the MNIST column is filled where a spec has an MNIST twin
    for model, spec, metric in pairs:
        program = compile_file(ROOT / "specs" / f"{spec}.yaml", [], registry).program
        wanted = program.metric_names
        if wanted is not None:
            assert metric in wanted, f"row `{model}`: specs/{spec}.yaml lists metrics {wanted}, not `{metric}`"
        elif program.data.source not in ("mnist", "stacked_mnist"):  # local files: building the model would need them
            assert registry.get("metrics", metric).applies(Trainer(program).model), f"row `{model}`: metric `{metric}` does not apply to specs/{spec}.yaml"


def test_families_table_check_names_the_missing_and_wrong_rows(registry):
    vae_row = next(line for line in README.splitlines() if "| `vae-digits` |" in line)
    without_vae = README.replace(vae_row + "\n", "")
    assert table_problems(without_vae, registry) == [
        "missing row: specs/vae-digits.yaml has no row; add | model | `vae-digits` | `family` or — | `metric`: measured | — or `mnist-spec`, `metric`: measured | literature |, or name it in a row's MNIST column",
        "missing row: specs/vae-mnist.yaml has no row; add | model | `vae-mnist` | `family` or — | `metric`: measured | — or `mnist-spec`, `metric`: measured | literature |, or name it in a row's MNIST column",
        "family `vae` (registered by plugin `vae`) has no row: ship a spec that names it and add its row",
    ]
    twice = README.replace(vae_row, vae_row + "\n" + vae_row)
    assert table_problems(twice, registry) == ["duplicate rows for spec `vae-digits`", "duplicate rows for spec `vae-mnist`"]
    wrong = README.replace(vae_row, vae_row.replace("| `vae` |", "| `gan` |").replace("`elbo`:", "`elbow`:"))
    assert table_problems(wrong, registry) == [
        "row `VAE`: metric `elbow` of its MNIST column is not registered",
        "row `VAE`: specs/vae-digits.yaml names family `vae`, the row says `gan`",
        f"row `VAE`: metric `elbow` is not registered (registered: {', '.join(registry.names('metrics'))})",
    ]
    gone = README.replace(vae_row, vae_row.replace("`vae-digits`", "`vae-nowhere`"))
    problems = table_problems(gone, registry)
    assert "row `VAE`: spec `vae-nowhere` does not exist (no specs/vae-nowhere.yaml)" in problems
    assert problems[0].startswith("missing row: specs/vae-digits.yaml")
    assert table_problems(README.replace(END, ""), registry)[0] == f"README.md must hold `{BEGIN}` once, then `{END}` once"
    assert table_problems(README.replace(vae_row, "| broken |"), registry)[0] == f"malformed row (expected {SHAPE}): | broken |"
    elsewhere = README.replace(vae_row, vae_row.replace("`vae-mnist`,", "`vae-mnust`,"))
    assert table_problems(elsewhere, registry) == [
        "missing row: specs/vae-mnist.yaml has no row; add | model | `vae-mnist` | `family` or — | `metric`: measured | — or `mnist-spec`, `metric`: measured | literature |, or name it in a row's MNIST column",
        "row `VAE`: its MNIST spec `vae-mnust` does not exist (no specs/vae-mnust.yaml)",
    ]
