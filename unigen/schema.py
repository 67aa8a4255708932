"""`unigen schema`: the JSON Schema of spec files, for editors' completion and checking.

The schema is draft-07, the draft redhat's yaml-language-server (and so VS Code's YAML
extension) ships with. Fields that name a registered kind carry the names registered in this
installation as `examples`, which the language server offers as completions; they are not an
`enum`, so a spec that uses a plugin installed later is not marked wrong.
"""

from __future__ import annotations

from typing import Any

from .registry import Registry
from .spec import json_schema

# (definition, property) -> registry kind whose names it takes.
KIND_FIELDS: dict[tuple[str, str], str] = {
    ("Spec", "family"): "families",
    ("Data", "source"): "datasets",
    ("Variable", "prior"): "distributions",
    ("Network", "arch"): "networks",
    ("Edge", "dist"): "distributions",
    ("Edge", "objective"): "objectives",
    ("TermRef", "term"): "terms",
    ("Optim", "kind"): "optimizers",
}


def spec_schema(registry: Registry | None = None) -> dict[str, Any]:
    schema = json_schema()
    if registry is None:
        return schema
    for (model, prop), kind in KIND_FIELDS.items():
        names = registry.names(kind)
        node = schema if model == "Spec" else schema["definitions"].get(model)
        field = (node or {}).get("properties", {}).get(prop)
        if field is None or not names:
            continue
        field["examples"] = names
        field["description"] = (field.get("description", "") + f" (installed: {', '.join(names)})").strip()
    return schema
