"""The README's families table (between `<!-- families:begin -->` and `<!-- families:end -->`)
stays in step with the registry: one row per registered family, each row's spec in specs/
names that family, each row's metric is registered and reported for that spec."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT

from unigen.run import compile_file
from unigen.trainer import Trainer

README = (ROOT / "README.md").read_text()
BEGIN, END = "<!-- families:begin -->", "<!-- families:end -->"
HEADER = "| family | spec | metric (summary.json) | literature value, same protocol |"
ROW = re.compile(r"^\| `([\w.-]+)` \| `([\w.-]+)` \| `(\w+)`[^|]*\| [^|]+ \|$")


def table_rows(text: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The rows (family, spec, metric) of the table in `text`, and what is malformed."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        return [], [f"README.md must hold `{BEGIN}` once, then `{END}` once"]
    lines = [ln for ln in text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip().splitlines()]
    problems = [] if lines[:2] == [HEADER, "|---|---|---|---|"] else [f"the table must start with the header `{HEADER}` and `|---|---|---|---|`"]
    rows = []
    for line in lines[2:]:
        m = ROW.match(line)
        if m is None:
            problems.append(f"malformed row (expected | `family` | `spec` | `metric`: what | literature |): {line}")
        else:
            rows.append(m.groups())
    return rows, problems


def table_problems(text: str, registry) -> list[str]:
    """Every way the table disagrees with the registry and specs/, one message each."""
    rows, problems = table_rows(text)
    registered = {e.name: e for e in registry.all("families")}
    listed = [family for family, _, _ in rows]
    for name in sorted(set(registered) - set(listed)):
        problems.append(f"missing row: family `{name}` (registered by plugin `{registered[name].plugin}`) has no row; add | `{name}` | `SPEC` | `METRIC`: ... | ... |")
    for family, spec, metric in rows:
        if family not in registered:
            problems.append(f"extra row: `{family}` | `{spec}` | `{metric}` names a family no plugin registers (registered: {', '.join(sorted(registered))})")
    for name in sorted({f for f in listed if listed.count(f) > 1}):
        problems.append(f"duplicate rows for family `{name}`")
    if [r[0] for r in rows] != sorted(listed):
        problems.append("rows must be sorted by family: " + ", ".join(listed))
    for family, spec, metric in rows:
        path = ROOT / "specs" / f"{spec}.yaml"
        if not path.exists():
            problems.append(f"row `{family}`: spec `{spec}` does not exist (no specs/{spec}.yaml)")
            continue
        named = (yaml.safe_load(path.read_text()) or {}).get("family")
        if named != family:
            problems.append(f"row `{family}`: specs/{spec}.yaml names family `{named}`, not `{family}`; write `family: {family}` in it")
        if not registry.has("metrics", metric):
            problems.append(f"row `{family}`: metric `{metric}` is not registered (registered: {', '.join(registry.names('metrics'))})")
    return problems


def test_families_table_matches_registry_and_specs(registry):
    problems = table_problems(README, registry)
    assert not problems, "README families table:\n" + "\n".join(problems)


def test_families_table_metrics_are_reported_for_their_specs(registry):
    """A row's metric is one the spec's run reports: listed under `metrics:` in the spec, or
    (with no list) a registered metric that applies to the built model."""
    rows, _ = table_rows(README)
    assert rows
    for family, spec, metric in rows:
        program = compile_file(ROOT / "specs" / f"{spec}.yaml", [], registry).program
        wanted = program.spec.metrics
        if wanted is not None:
            assert metric in wanted, f"row `{family}`: specs/{spec}.yaml lists metrics {wanted}, not `{metric}`"
        else:
            model = Trainer(program, registry).model
            assert registry.get("metrics", metric).applies(model), f"row `{family}`: metric `{metric}` does not apply to specs/{spec}.yaml"


def test_families_table_check_names_the_missing_and_extra_rows(registry):
    rows, _ = table_rows(README)
    vae_row = next(line for line in README.splitlines() if line.startswith("| `vae` |"))
    without_vae = README.replace(vae_row + "\n", "")
    assert table_problems(without_vae, registry) == ["missing row: family `vae` (registered by plugin `vae`) has no row; add | `vae` | `SPEC` | `METRIC`: ... | ... |"]

    extra = README.replace(vae_row, vae_row + "\n| `zzz` | `vae-digits` | `elbo`: x | — |")
    problems = table_problems(extra, registry)
    assert problems[0].startswith("extra row: `zzz` | `vae-digits` | `elbo` names a family no plugin registers")
    assert "row `zzz`: specs/vae-digits.yaml names family `vae`, not `zzz`; write `family: zzz` in it" in problems

    wrong = README.replace(vae_row, vae_row.replace("`vae-digits`", "`gan-ring`").replace("`elbo`", "`elbow`"))
    assert table_problems(wrong, registry) == [
        "row `vae`: specs/gan-ring.yaml names family `gan`, not `vae`; write `family: vae` in it",
        f"row `vae`: metric `elbow` is not registered (registered: {', '.join(registry.names('metrics'))})",
    ]
    gone = README.replace(vae_row, vae_row.replace("`vae-digits`", "`vae-nowhere`"))
    assert table_problems(gone, registry) == ["row `vae`: spec `vae-nowhere` does not exist (no specs/vae-nowhere.yaml)"]
    unmarked = table_problems(README.replace(END, ""), registry)
    assert unmarked[0] == f"README.md must hold `{BEGIN}` once, then `{END}` once"
    assert len(unmarked) == 1 + len(registry.names("families"))  # and every family is then missing
    assert len(rows) == len(registry.names("families"))
