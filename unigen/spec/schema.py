"""`unigen schema`: the JSON Schema of spec files, for editors' completion and checking.

The schema is draft-07, the draft redhat's yaml-language-server (and so VS Code's YAML
extension) ships with. Fields that name a registered kind carry the names registered in this
installation as `examples`, which the language server offers as completions; they are not an
`enum`, so a spec that uses a plugin installed later is not marked wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unigen.spec.models import Spec

if TYPE_CHECKING:
    from unigen.api.registry import Registry


# Draft-07: the draft editors' YAML support (redhat's yaml-language-server, VS Code's YAML
# extension) validates and completes with; its shared definitions live under `definitions`.
SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"


def json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(ref_template="#/definitions/{model}")
    schema["definitions"] = schema.pop("$defs", {})
    schema["$schema"] = SCHEMA_DRAFT
    schema["title"] = "unigen spec"
    # A spec that names a `family` may leave out any part of the model: the family fills it in.
    always = [k for k in schema.get("required", []) if k in ("unigen", "name")]
    model = [k for k in schema.get("required", []) if k not in always]
    schema["required"] = always
    if model:
        schema["if"] = {"not": {"required": ["family"]}}
        schema["then"] = {"required": model}
    return schema


# (definition, property) -> registry kind whose names it takes.
KIND_FIELDS: dict[tuple[str, str], str] = {
    ("Spec", "family"): "families",
    ("Data", "source"): "datasets",
    ("Variable", "prior"): "distributions",
    ("Network", "arch"): "networks",
    ("Edge", "dist"): "distributions",
    ("Edge", "objective"): "objectives",
    ("TermRef", "term"): "terms",
    ("MetricRef", "metric"): "metrics",
    ("Optim", "kind"): "optimizers",
    ("Prior", "dist"): "distributions",
    ("SamplerSpec", "kind"): "samplers",
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
