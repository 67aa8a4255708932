"""`unigen new --family NAME`: a commented starter spec written out from a family's defaults."""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

import yaml
from pydantic import BaseModel

from unigen.api.registry import Registry
from unigen.errors import UnigenError
from unigen.spec.models import SPEC_NAME, Train
from unigen.spec.schema import MODELINE

SECTIONS: dict[str, str] = {
    "data": "Where observed variables get their values: a registered dataset (`unigen plugins` lists them); its options sit beside `source`.",
    "variables": "Random variables. `observed: true` binds one to a data field in the q-trace; a latent root needs a `prior`.",
    "networks": "Networks by name: a registered architecture and its options; input and output sizes come from the edges.",
    "edges": "generative `z -> x`: a factor of p(x, z) (the p-trace); inference `x -> z`: a factor of q(z | x) (the q-trace);\n"
    "adversarial `x`: a discriminator tells the real side (default q.x) from the fake side (default p.x).",
    "phases": "Alternating updates, in order, every training step: each sums its terms and updates only the networks it names.",
    "train": "Training settings, with their defaults. Override one on the command line: `train.steps=200`.",
}


def _flow(value: Any) -> str:
    """One YAML line in flow style, e.g. `{generative: z -> x, net: decoder}`."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("...").strip()


def _comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}" for line in text.splitlines()]


def _train_lines(model: type[BaseModel]) -> list[str]:
    out = []
    defaults = model().model_dump(mode="json")
    for name, info in model.model_fields.items():
        value = defaults[name]
        text = " ".join((info.description or "").split())
        if len(text) > 80:  # a long description goes on the lines above its key
            out += _comment(textwrap.fill(text, 96), "  ")
            out.append(f"  {name}: {_flow(value)}")
        else:
            out.append(f"  {name}: {_flow(value)}" + (f"  # {text}" if text else ""))
    return out


def _modeline(schema: str | None) -> list[str]:
    if schema is None:
        return []
    return [
        "# Editors with yaml-language-server (VS Code's YAML extension) check and complete this file",
        "# against unigen's JSON Schema, named on the next line (`unigen schema -o FILE` writes it).",
        MODELINE + schema,
    ]


def starter_spec(family: str, registry: Registry, name: str | None = None, schema: str | None = None) -> str:
    """The text of a starter spec: the family's defaults, written out in full and commented;
    with `schema` (the path of unigen's JSON Schema from the spec's folder, or a URL), the
    modeline that points editors at it closes the header."""
    if not registry.has("families", family):
        raise UnigenError([registry.unknown("families", family, ("--family",))])
    name = name or f"my-{family}"
    if not re.match(SPEC_NAME, name):
        raise UnigenError.one("S002", f"spec name `{name}` is not valid; expected letters, digits, `_`, `.` and `-`.", ("--name",), "choose another `--name` (or output file name).")
    fam = registry.get("families", family)
    doc = fam.complete({"unigen": 1, "name": name, "family": family})
    about = (getattr(fam, "doc", "") or "").strip()
    lines = [
        f"# A starter spec of the `{family}` family" + (f": {about}" if about else "."),
        "# Every section below is the family's default, written out so that you can edit it; a key",
        f"# you remove is filled in again from the family (`family: {family}`).",
        "#   unigen validate FILE             checks it",
        "#   unigen draw FILE -o model.svg    draws the graphical model",
        "#   unigen compile FILE              prints the training program",
        "#   unigen compile-and-train FILE    trains it (`--dry-run`: one batch of every phase)",
        *_modeline(schema),
        "unigen: 1  # spec format version",
        f"name: {name}",
        f"family: {family}",
    ]
    if doc.get("description"):
        lines.append(f"description: {json.dumps(doc['description'])}")
    for key in ("data", "variables", "networks", "edges", "phases"):
        if key not in doc:
            continue
        lines.append("")
        lines += _comment(SECTIONS[key])
        value = doc[key]
        if isinstance(value, dict) and key != "data":
            lines.append(f"{key}:")
            lines += [f"  {k}: {_flow(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {_flow(v)}" for v in value]
        else:
            lines.append(f"{key}: {_flow(value)}")
    extra = [k for k in doc if k not in ("unigen", "name", "family", "description", "data", "variables", "networks", "edges", "phases", "train")]
    for key in extra:
        lines += ["", f"{key}: {_flow(doc[key])}"]
    lines.append("")
    lines += _comment(SECTIONS["train"])
    lines.append("train:")
    given = doc.get("train") or {}
    if given:
        lines += [f"  {k}: {_flow(v)}" for k, v in given.items()]
        lines.append("  # ... and every other key of `train` at its default; see `unigen show-config FILE`.")
    else:
        lines += _train_lines(Train)
    return "\n".join(lines) + "\n"
