"""`unigen schema`: the JSON Schema of spec files, for editors' completion and checking.

The schema is draft-07, the draft redhat's yaml-language-server (and so VS Code's YAML
extension) ships with. Beyond the spec models it knows the kinds registered in this
installation:

- a field that names a kind (`arch`, `dist`, `source`, a phase's `terms`, ...) offers the
  registered names, each with its description, and takes any other name too: a plugin installed
  after the schema was written is no mistake. A name a slip of the keyboard away from a
  registered one (`mpl`, `elbbo`, `Normal`) is taken for a misspelling and marked, as is a
  registered name in a place that refuses it (a prior-only distribution on an edge);
- each kind's options, where its `Options` model declares them, are checked (types, bounds,
  choices, required keys, unknown keys when the model forbids them) and completed with their
  defaults, beside the kind's name (`{arch: mlp, hidden: [64]}`) or under `options`.

No completion offers `null`: a default of None is left out, and a field that may be null takes
null by a schema the server draws no completion from.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unigen.api.registry import KIND_NOUN
from unigen.spec.models import Spec

if TYPE_CHECKING:
    from unigen.api.registry import Entry, Registry


# Draft-07: the draft editors' YAML support (redhat's yaml-language-server, VS Code's YAML
# extension) validates and completes with; its shared definitions live under `definitions`.
SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"

# The file `unigen schema -o` is told to write and `unigen new` points new specs at.
SCHEMA_FILE = "unigen.schema.json"

MODELINE = "# yaml-language-server: $schema="

# Null, said without `type: null` (which the language server completes as `null`).
NULL_ONLY: dict[str, Any] = {"not": {"type": ["string", "number", "boolean", "object", "array"]}}


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


BESIDE = "<beside>"  # the kind's options are the other keys of the mapping that names it


@dataclass(frozen=True)
class Site:
    """A field that names a registered kind: in definition `model` (`Spec`: the file itself),
    property `field`; its options under property `options`, or BESIDE the name, or none ("")."""

    model: str
    field: str
    kind: str
    options: str = ""
    fits: str = ""  # an attribute the kind's object must have true to be named here


SITES: tuple[Site, ...] = (
    Site("Spec", "family", "families"),
    Site("Data", "source", "datasets", BESIDE),
    Site("Variable", "prior", "distributions", fits="can_be_prior"),
    Site("Network", "arch", "networks", BESIDE),
    Site("Edge", "dist", "distributions", "options", fits="can_be_edge"),
    Site("Edge", "objective", "objectives", "options"),
    Site("TermRef", "term", "terms", "options"),
    Site("MetricRef", "metric", "metrics", "options"),
    Site("Optim", "kind", "optimizers", BESIDE),
    Site("Prior", "dist", "distributions", "options", fits="evaluates"),
    Site("SamplerSpec", "kind", "samplers", BESIDE),
)


def spec_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The schema of spec files; with a registry, its kinds' names and options as well."""
    schema = json_schema()
    if registry is not None:
        names = _NameSchemas(registry)
        for site in SITES:
            _apply_site(schema, site, names)
        _string_forms(schema, names)
    return draft07(schema)


# ---------------------------------------------------------------------- kind names


class _NameSchemas:
    """The schema of a field naming a kind: the registered names that fit the field (completed,
    each with its description), or any other name that is no slip away from a registered one."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def entries(self, kind: str, fits: str = "") -> list[Entry]:
        return [e for e in self.registry.all(kind) if not fits or getattr(e.obj, fits, False)]

    def alternatives(self, kind: str, fits: str = "", suffix: str = "$") -> list[dict[str, Any]]:
        """[the registered names, any other name]; empty when nothing fits (any text then)."""
        entries = self.entries(kind, fits)
        if not entries:
            return []
        noun = KIND_NOUN[kind]
        listed = ", ".join(e.name for e in entries)
        known = {
            "type": "string",
            "enum": [e.name for e in entries],
            "enumDescriptions": [_plain(e) for e in entries],
            "markdownEnumDescriptions": [_markdown(kind, e) for e in entries],
            "errorMessage": f"expected a {noun} installed when this schema was written that fits here: {listed}. A name a keystroke away "
            "from one of them reads as a misspelling; for a plugin installed since, run `unigen schema -o FILE` again.",
        }
        exact = "|".join(_literal(e.name) for e in entries)
        near = "|".join(sorted({n for e in self.registry.all(kind) for n in _near(e.name)}))
        other = {"type": "string", "pattern": rf"^\s*(?:(?:{exact}){suffix}|(?!(?:{near}){suffix}))"}
        return [known, other]


def _plain(entry: Entry) -> str:
    doc = " ".join(str(getattr(entry.obj, "doc", "") or "").split())
    return doc or f"from plugin `{entry.plugin}`"


def _markdown(kind: str, entry: Entry) -> str:
    model = getattr(entry.obj, "Options", None)
    fields = list(getattr(model, "model_fields", {}) or {})
    options = "options: " + ", ".join(f"`{f}`" for f in fields) if fields else "takes no options"
    return f"{_plain(entry)}\n\n*{KIND_NOUN[kind]} `{entry.name}`, plugin `{entry.plugin}`; {options}*"


_SYNTAX = set("\\^$.|?*+()[]{}/")


def _literal(text: str) -> str:
    """`text` as a regular expression matching it alone, in the syntax JSON Schema's patterns
    share (ECMA-262, unicode mode: only syntax characters may be escaped)."""
    return "".join("\\" + c if c in _SYNTAX else c for c in text)


def _near(name: str) -> set[str]:
    """Patterns of the names a slip of the keyboard away from `name`: itself in any letter case;
    two neighbours swapped (three characters or more); one character left out, added or changed
    (four or more: `rae` beside `vae` may well be a plugin's family, `mpl` beside `mlp` is not)."""
    cased = "".join(f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else _literal(c) for c in name)
    out = {cased}
    lit = [_literal(c) for c in name]
    for i in range(len(name) + 1):
        head, tail = "".join(lit[:i]), lit[i:]
        if len(name) >= 3 and len(tail) > 1 and tail[0] != tail[1]:
            out.add(head + tail[1] + tail[0] + "".join(tail[2:]))  # two swapped
        if len(name) >= 4:
            out.add(head + "." + "".join(tail))  # one added
            if tail:
                out.add(head + "".join(tail[1:]))  # one left out
                out.add(head + "." + "".join(tail[1:]))  # one changed
    return out


def _definition(schema: dict[str, Any], model: str) -> dict[str, Any] | None:
    return schema if model == "Spec" else schema["definitions"].get(model)


def _replace_string(node: dict[str, Any], alternatives: list[dict[str, Any]]) -> None:
    """Put `alternatives` where `node` (a property's schema) takes a string."""
    if node.get("type") == "string":
        for key in ("type", "pattern", "examples"):
            node.pop(key, None)
        node["anyOf"] = alternatives
    elif "anyOf" in node:
        i = next((i for i, a in enumerate(node["anyOf"]) if a == {"type": "string"}), None)
        if i is not None:
            node["anyOf"][i : i + 1] = alternatives


def _string_forms(schema: dict[str, Any], names: _NameSchemas) -> None:
    """A phase's terms as `name` or `name@edge`, the spec's metrics as `name`."""
    phase = schema["definitions"].get("Phase", {}).get("properties", {}).get("terms", {})
    if "items" in phase and names.alternatives("terms"):
        _replace_string(phase["items"], names.alternatives("terms", suffix=r"\s*(?:@|$)"))
    metrics = next((a for a in schema.get("properties", {}).get("metrics", {}).get("anyOf", []) if a.get("type") == "array"), None)
    if metrics is not None and names.alternatives("metrics"):
        _replace_string(metrics["items"], names.alternatives("metrics"))


# ---------------------------------------------------------------------- kind options


def _apply_site(schema: dict[str, Any], site: Site, names: _NameSchemas) -> None:
    """The site's field takes the kind's names; each registered kind's options are checked."""
    node = _definition(schema, site.model)
    field = (node or {}).get("properties", {}).get(site.field)
    alternatives = names.alternatives(site.kind, site.fits)
    if node is None or field is None or not alternatives:
        return
    _replace_string(field, alternatives)
    if not site.options:
        return
    branches = node.setdefault("allOf", [])
    for entry in names.entries(site.kind, site.fits):
        options = _options_schema(schema["definitions"], site.kind, entry)
        if options is None:
            continue
        # `type: object`: a value not yet written (null) takes no kind's options, nor offers them all.
        condition: dict[str, Any] = {"type": "object", "properties": {site.field: {"const": entry.name}}}
        if field.get("default") != entry.name:  # the default kind is the one meant when the field is left out
            condition["required"] = [site.field]
        branches.append({"if": condition, "then": _then(node, site, options)})
    if not branches:
        node.pop("allOf")


def _then(node: dict[str, Any], site: Site, options: dict[str, Any]) -> dict[str, Any]:
    """What a mapping naming the kind must be: its options under `site.options`, or beside the
    name, where the mapping's own keys stay allowed (and completed from the mapping's schema)."""
    if site.options != BESIDE:
        return {"properties": {site.options: options}}
    own = set(node.get("properties", {}))
    then: dict[str, Any] = {"properties": {k: {"doNotSuggest": True} for k in sorted(own)}}
    then["properties"].update({k: v for k, v in options.get("properties", {}).items() if k not in own})
    required = [k for k in options.get("required", []) if k not in own]
    if required:
        then["required"] = required
    if options.get("additionalProperties") is False:
        then["additionalProperties"] = False
    return then


def _options_schema(definitions: dict[str, Any], kind: str, entry: Entry) -> dict[str, Any] | None:
    """The JSON Schema of a kind's options: its `Options` model's (the models it nests go into
    `definitions` under names of their own), none for a kind without options; None when the
    model cannot say (a type JSON Schema has no word for): the options are then left open."""
    what = f"options of {KIND_NOUN[kind]} `{entry.name}`"
    model = getattr(entry.obj, "Options", None)
    if model is None:
        return {"type": "object", "description": f"{KIND_NOUN[kind]} `{entry.name}` takes no options", "properties": {}, "additionalProperties": False}
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{kind}.{entry.name}.")
    try:
        options = model.model_json_schema(ref_template="#/definitions/" + prefix + "{model}")
    except Exception:  # noqa: BLE001 - a plugin's model that pydantic cannot write out
        return None
    for name, sub in options.pop("$defs", {}).items():
        definitions[prefix + name] = sub
    options.pop("title", None)
    options["description"] = what
    if model.model_config.get("extra") != "forbid":  # unknown keys pass the options model
        options.pop("additionalProperties", None)
    return options


# ---------------------------------------------------------------------- draft-07 and completions


_VALUES = ("default", "const", "enum", "examples")  # keywords that hold values of the spec, not schemas
_NAMED = ("properties", "definitions", "patternProperties")  # keywords that hold schemas by name


def draft07(node: Any) -> Any:
    """The schema in draft-07 terms and without `null` completions: pydantic's 2020-12
    `prefixItems` as draft-07's `items` list, no `default: null`, and null taken by NULL_ONLY."""
    if isinstance(node, list):
        return [draft07(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _VALUES:
            if not (key == "default" and value is None):
                out[key] = value
        elif key in _NAMED and isinstance(value, dict):
            out[key] = {name: draft07(sub) for name, sub in value.items()}
        else:
            out[key] = draft07(value)
    if "prefixItems" in out:
        tail = out.pop("items", None)
        out["items"] = out.pop("prefixItems")
        if tail is not None:
            out["additionalItems"] = tail
    if out.get("type") == "null" and len(out) == 1:
        return copy.deepcopy(NULL_ONLY)
    return out


# ---------------------------------------------------------------------- modelines


def schema_reference(schema_file: Path, spec_dir: Path) -> str:
    """What a spec in `spec_dir` writes after `$schema=` to name `schema_file`: the path from the
    spec's folder (the language server resolves it against the spec), or a file URL where there
    is no relative path (another drive)."""
    try:
        return Path(os.path.relpath(schema_file.resolve(), spec_dir.resolve())).as_posix()
    except ValueError:
        return schema_file.resolve().as_uri()


def find_schema(spec_dir: Path, cwd: Path | None = None) -> Path:
    """The schema file a spec in `spec_dir` should name: the nearest SCHEMA_FILE in that folder
    or above it; else SCHEMA_FILE in the working directory, where `unigen schema -o` puts it."""
    for folder in (spec_dir.resolve(), *spec_dir.resolve().parents):
        if (folder / SCHEMA_FILE).is_file():
            return folder / SCHEMA_FILE
    return (cwd or Path.cwd()) / SCHEMA_FILE


def modeline(schema_file: Path, spec_dir: Path) -> str:
    """The first line that points editors of a spec in `spec_dir` at `schema_file`."""
    return MODELINE + schema_reference(schema_file, spec_dir)


def written_hint(output: Path, cwd: Path | None = None) -> str:
    """What `unigen schema -o FILE` says: the modeline a spec writes, whose path is taken from the
    spec's own folder (shown for the specs in `specs/` when there is that folder)."""
    cwd = cwd or Path.cwd()
    target = output if output.is_absolute() else cwd / output
    folder = cwd / "specs" if (cwd / "specs").is_dir() else cwd
    where = "a spec in `specs/`" if folder != cwd else "a spec in this folder"
    return (f"wrote {output}; point editors at it with a first line in each spec that names it by its path from the spec's folder; "
            f"for {where}: `{modeline(target, folder)}` (`unigen new -o FILE` writes that line)")
