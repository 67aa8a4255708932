"""Command-line overrides in Hydra's grammar: `dotted.key=value` sets a key (a mapping value merges
into the mapping already there), `+key=value` adds a key the spec does not have (a free-form
option; refused when it is there), `++key=value` sets it either way, `~key` deletes it (`~key=value`
only when it holds that value). List items are addressed by index or by `name`; unknown keys are
refused (S004) with a did-you-mean."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from unigen.errors import Diagnostic, Path, UnigenError, did_you_mean, dotted
from unigen.spec.models import Data, Network, Optim, Spec, _kind_of
from unigen.spec.source import SourceMap, ValueBoundError, load_value


def apply_overrides(doc: dict[str, Any], overrides: list[str], smap: SourceMap | None = None, numbering: list[str] | None = None) -> dict[str, Any]:
    """Apply `dotted.key=value` overrides. List items are addressed by index or by `name`.

    With `smap`, each path an override sets is recorded there, so that a problem with its value
    is located on the command line (as `override 2 ...`), numbered by its place in
    `numbering` (the whole command line's overrides; by default `overrides`)."""
    doc = copy.deepcopy(doc)
    errors: list[Diagnostic] = []
    numbering = overrides if numbering is None else numbering
    for item in overrides:
        number = numbering.index(item) + 1 if item in numbering else 0
        mode, body = _mode(item)
        key, sep, value_text = body.partition("=")
        if (not sep and mode != "delete") or not key.strip():
            errors.append(Diagnostic("S004", f"override `{shorten(item)}` is not `dotted.key=value`, `+key=value`, `++key=value` or `~key`.", hint="write e.g. `train.steps=200`."))
            continue
        try:
            value = load_value(value_text) if value_text.strip() else ("" if sep else _ANY)
        except ValueBoundError as exc:
            errors.append(Diagnostic("S004", f"override {number} `{shorten(item)}`: {exc}.", hint=exc.hint))
            continue
        parts = key.strip().split(".")
        err, hint, at = _set_path(doc, parts, value, mode)
        if err:
            errors.append(Diagnostic("S004", f"override `{shorten(item)}`: {err}", hint=hint or "see `unigen show-config SPEC` for the keys a spec has."))
        elif smap is not None and mode != "delete":
            smap.override(at, number, shorten(item))
    if errors:
        raise UnigenError(errors)
    return doc


_ANY = object()  # `~key` without `=value`: delete whatever the key holds


def _mode(item: str) -> tuple[str, str]:
    """The override's kind and the rest: `++` force, `+` add, `~` delete, else set."""
    if item.startswith("++"):
        return "force", item[2:]
    if item.startswith("+"):
        return "add", item[1:]
    if item.startswith("~"):
        return "delete", item[1:]
    return "set", item


def merged(old: Any, new: Any) -> Any:
    """`new` merged into `old`: mappings key by key (recursively); anything else replaces."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return copy.deepcopy(new)
    out = dict(old)
    for k, v in new.items():
        out[k] = merged(old[k], v) if k in old else copy.deepcopy(v)
    return out


def _finish(container: Any, key: Any, value: Any, mode: str, here: str) -> tuple[str, str]:
    """The last step of an override on `container[key]` (a mapping key or a list index)."""
    present = key in container if isinstance(container, dict) else True
    if mode == "delete":
        if not present:
            return f"`{here}` is not set, so there is nothing to delete.", "see `unigen show-config SPEC` for the keys a spec has."
        if value is not _ANY and container[key] != value:
            return f"`{here}` holds {container[key]!r}, not {value!r}, so it is not deleted.", f"write `~{here}` to delete it whatever it holds."
        del container[key]
        return "", ""
    if mode == "add" and present:
        return f"`{here}` is already set (to {container[key]!r}); `+` adds only a key that is not there.", f"set it with `{here}=...` (or `++{here}=...`)."
    container[key] = merged(container[key], value) if present and mode in ("set", "force") else value
    return "", ""


def shorten(item: str, limit: int = 80) -> str:
    """An override as messages show it: a long one cut to `limit` characters, ending in `...`;
    control characters escaped, so that it stays on its line."""
    text = item if item.isprintable() else repr(item)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _set_path(doc: Any, parts: list[str], value: Any, mode: str = "set") -> tuple[str, str, Path]:
    """Set (add, force or delete, as `mode` says) `parts` in `doc`; on failure, (what is wrong;
    what was expected, hint). The third item is the path set, list items by index
    (`phases.gen` is `phases.1`)."""
    node = doc
    model: Any = Spec
    at: list[str | int] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = dotted(parts[:i])
        if isinstance(node, list):
            idx = _list_index(node, part)
            if idx is None:
                names = [str(x.get("name")) for x in node if isinstance(x, dict) and "name" in x]
                return (
                    f"no item `{part}` in `{here}`; expected an index below {len(node)}" + (" or an item's `name`." if names else "."),
                    did_you_mean(part, names) if names else f"use an index from 0 to {len(node) - 1}." if node else f"`{here}` is empty.",
                    (),
                )
            at.append(idx)
            if last:
                if mode == "add":
                    return f"`{dotted(parts)}` is an item of a list, which `+` cannot add.", f"override the whole list: `{here}=[...]`.", ()
                err, hint = _finish(node, idx, value, mode, dotted(parts))
                return err, hint, tuple(at) if not err else ()
            node = node[idx]
            model = _element_model(model)
            continue
        if not isinstance(node, dict):
            return f"`{here}` is {_kind_of(node)}, not a mapping, so it has no key `{part}`.", f"override `{here}` itself, e.g. `{here}=...`.", ()
        fields = _fields(model)
        open_kind = model in (Data, Network, Optim) or model is None or mode in ("add", "force")
        if part not in node and fields is not None and part not in fields and not open_kind:
            where = f"`{here}`" if here else "the spec"
            return f"unknown key `{part}` in {where}; expected one of its keys.", did_you_mean(part, list(fields)), ()
        at.append(part)
        if last:
            err, hint = _finish(node, part, value, mode, dotted(parts))
            return err, hint, tuple(at) if not err else ()
        if mode == "delete" and part not in node:
            return f"`{dotted(parts[: i + 1])}` is not set, so there is nothing to delete.", "see `unigen show-config SPEC` for the keys a spec has.", ()
        child = model[1] if isinstance(model, tuple) and model[0] == "dict" else _child_model(model, part)
        if part not in node and isinstance(child, tuple) and child[0] == "list":
            # `phases.gen.repeats=2` when the file has no `phases` (a family fills them in
            # later): there is no item to address yet.
            return f"`{dotted(parts[: i + 1])}` is not in the spec file, so its items cannot be addressed.", f"write `{part}:` in the file, or override the whole list: `{dotted(parts[: i + 1])}=[...]`.", ()
        node = node.setdefault(part, {})
        model = child
    return "", "", tuple(at)


def _list_index(items: list[Any], part: str) -> int | None:
    if part.isdigit():
        return int(part) if int(part) < len(items) else None
    for idx, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return idx
    return None


def _fields(model: Any) -> dict[str, Any] | None:
    return dict(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else None


def _child_model(model: Any, part: str) -> Any:
    import typing

    fields = _fields(model)
    if fields is None:
        return None
    if part not in fields:
        return None
    ann = fields[part].annotation
    for _ in range(3):
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if typing.get_origin(ann) is dict:
            return ("dict", args[-1])
        if not args:
            return None
        ann = args[-1] if typing.get_origin(ann) is not list else ("list", args[0])
        if isinstance(ann, tuple):
            return ann
    return None


def _element_model(model: Any) -> Any:
    if isinstance(model, tuple):
        inner = model[1]
        import typing

        models = [a for a in (typing.get_args(inner) or (inner,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else None
    return None
