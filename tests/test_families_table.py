"""The README's models table (between `<!-- families:begin -->` and `<!-- families:end -->`)
stays in step with `specs/` and the registry: one row per shipped spec, each row's family is
the one its spec names (or — for a spec that names none), every registered family has a spec
that names it, and each row's metric is registered and reported for that spec."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT

from unigen.compiler.compiler import compile_file
from unigen.training.trainer import Trainer

README = (ROOT / "README.md").read_text()
BEGIN, END = "<!-- families:begin -->", "<!-- families:end -->"
HEADER = "| model | spec | family | metric: measured | literature, comparable data |"
ROW = re.compile(r"^\| ([^|`]+) \| `([\w.-]+)` \| (?:`([\w.-]+)`|—) \| `(\w+)`: [^|]+ \| [^|]+ \|$")


def table_rows(text: str) -> tuple[list[tuple[str, str, str | None, str]], list[str]]:
    """The rows (model, spec, family or None, metric) of the table in `text`, and what is malformed."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        return [], [f"README.md must hold `{BEGIN}` once, then `{END}` once"]
    lines = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip().splitlines()
    problems = [] if lines[:2] == [HEADER, "|---|---|---|---|---|"] else [f"the table must start with the header `{HEADER}` and `|---|---|---|---|---|`"]
    rows = []
    for line in lines[2:]:
        m = ROW.match(line)
        if m is None:
            problems.append(f"malformed row (expected | model | `spec` | `family` or — | `metric`: measured | literature |): {line}")
        else:
            model, spec, family, metric = m.groups()
            rows.append((model.strip(), spec, family, metric))
    return rows, problems


def table_problems(text: str, registry) -> list[str]:
    """Every way the table disagrees with specs/ and the registry, one message each."""
    rows, problems = table_rows(text)
    specs = sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))
    listed = [spec for _, spec, _, _ in rows]
    for spec in specs:
        if spec not in listed:
            problems.append(f"missing row: specs/{spec}.yaml has no row; add | MODEL | `{spec}` | FAMILY | `METRIC`: measured | literature |")
    for spec in sorted({s for s in listed if listed.count(s) > 1}):
        problems.append(f"duplicate rows for spec `{spec}`")
    registered = {e.name: e for e in registry.all("families")}
    named = {}
    for model, spec, family, metric in rows:
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
    for model, spec, _, metric in rows:
        program = compile_file(ROOT / "specs" / f"{spec}.yaml", [], registry).program
        wanted = program.metric_names
        if wanted is not None:
            assert metric in wanted, f"row `{model}`: specs/{spec}.yaml lists metrics {wanted}, not `{metric}`"
        elif spec != "dcgan-mnist":  # its data are local files: building the model would need them
            assert registry.get("metrics", metric).applies(Trainer(program).model), f"row `{model}`: metric `{metric}` does not apply to specs/{spec}.yaml"


def test_families_table_check_names_the_missing_and_wrong_rows(registry):
    vae_row = next(line for line in README.splitlines() if "| `vae-digits` |" in line)
    without_vae = README.replace(vae_row + "\n", "")
    assert table_problems(without_vae, registry) == [
        "missing row: specs/vae-digits.yaml has no row; add | MODEL | `vae-digits` | FAMILY | `METRIC`: measured | literature |",
        "family `vae` (registered by plugin `vae`) has no row: ship a spec that names it and add its row",
    ]
    twice = README.replace(vae_row, vae_row + "\n" + vae_row)
    assert table_problems(twice, registry) == ["duplicate rows for spec `vae-digits`"]
    wrong = README.replace(vae_row, vae_row.replace("| `vae` |", "| `gan` |").replace("`elbo`:", "`elbow`:"))
    assert table_problems(wrong, registry) == [
        "row `VAE`: specs/vae-digits.yaml names family `vae`, the row says `gan`",
        f"row `VAE`: metric `elbow` is not registered (registered: {', '.join(registry.names('metrics'))})",
    ]
    gone = README.replace(vae_row, vae_row.replace("`vae-digits`", "`vae-nowhere`"))
    problems = table_problems(gone, registry)
    assert "row `VAE`: spec `vae-nowhere` does not exist (no specs/vae-nowhere.yaml)" in problems
    assert problems[0].startswith("missing row: specs/vae-digits.yaml")
    assert table_problems(README.replace(END, ""), registry)[0] == f"README.md must hold `{BEGIN}` once, then `{END}` once"
    assert table_problems(README.replace(vae_row, "| broken |"), registry)[0] == "malformed row (expected | model | `spec` | `family` or — | `metric`: measured | literature |): | broken |"
