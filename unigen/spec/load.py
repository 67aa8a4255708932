"""Loading a spec: YAML text in, overrides and family defaults applied, the pydantic `Spec` out,
every problem located in the file (pydantic's errors turned into S-coded diagnostics)."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from unigen.errors import Diagnostic, Path, UnigenError, did_you_mean, dotted
from unigen.spec.models import NAME, SPEC_NAME, Spec, _kind_of
from unigen.spec.overrides import apply_overrides
from unigen.spec.source import SourceMap, load_yaml

if TYPE_CHECKING:
    from unigen.api.registry import Registry


def load_spec(path: str | FsPath, overrides: list[str] | None = None, registry: "Registry | None" = None) -> tuple[Spec, SourceMap, dict[str, Any]]:
    """Read a spec file, apply overrides and family defaults, validate it.

    Returns the spec, the source map for later diagnostics, and the raw document as given.
    """
    file = str(path)
    try:
        text = read_spec_text(FsPath(path), file)
    except UnicodeDecodeError as exc:
        raise UnigenError([Diagnostic("Y004", f"cannot read the spec: it is not UTF-8 text ({exc.reason} at byte {exc.start}); expected a YAML text file.", hint="save the file as UTF-8.", file=file)]) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UnigenError([Diagnostic("Y004", f"cannot read the spec: {reason}; expected a readable YAML file.", hint="check the path.", file=file)]) from None
    return parse_spec(text, file, overrides, registry)


# A spec describes a model in a few kB; anything past this is not one (and is not read whole).
MAX_SPEC_BYTES = 1 << 20


def read_spec_text(path: FsPath, file: str) -> str:
    """The spec file's text: a regular file of at most MAX_SPEC_BYTES (a fifo, a device such as
    `/dev/zero` or a directory is refused before anything is read from it)."""
    import stat

    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a fifo (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise UnigenError([Diagnostic("Y004", f"cannot read the spec: `{file}` is {what}; expected a YAML file.", hint="give the path of a spec file (e.g. specs/vae-digits.yaml).", file=file)])
    with path.open("rb") as f:
        data = f.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise UnigenError([Diagnostic("Y004", f"cannot read the spec: `{file}` is larger than {MAX_SPEC_BYTES // 1024} KiB; expected a spec of a few kB.", hint="a spec describes a model, not data: keep data in a dataset's files.", file=file)])
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as text mode reads


def parse_spec(text: str, file: str = "<spec>", overrides: list[str] | None = None, registry: "Registry | None" = None) -> tuple[Spec, SourceMap, dict[str, Any]]:
    raw, smap = load_yaml(text, file)
    if not isinstance(raw, dict):
        raise smap.error([Diagnostic("S002", f"the spec is {_kind_of(raw)}; expected a mapping of keys such as `unigen: 1` and `name: ...`.", hint="start the file with `unigen: 1` and `name: ...` lines, without a leading `-`.")])
    given = copy.deepcopy(raw)
    overrides = overrides or []
    late: list[str] = []
    if registry is not None and isinstance(apply_overrides(raw, [o for o in overrides if o.partition("=")[0].strip() == "family"], smap, overrides).get("family"), str):
        # An override may address what only the family fills in (`phases.elbo.repeats=2` on a
        # spec that names `family: vae` and no phases): such ones apply after the family.
        late = _late(raw, overrides)
    doc = apply_overrides(raw, [o for o in overrides if o not in late], smap, overrides)
    if registry is not None and isinstance(doc.get("family"), str):
        doc = registry.complete_family(doc, smap)
    doc = apply_overrides(doc, late, smap, overrides)
    return validate_document(doc, smap), smap, given


def _late(doc: dict[str, Any], overrides: list[str]) -> list[str]:
    """The overrides that do not apply to the file as the ones before them leave it (each tried
    in order, so that `~data +data={...}` adds what it has just deleted): they apply after the
    family has filled the spec in."""
    late = []
    for override in overrides:
        try:
            doc = apply_overrides(doc, [override])
        except UnigenError:
            late.append(override)
    return late


def validate_document(doc: dict[str, Any], smap: SourceMap) -> Spec:
    try:
        return Spec.model_validate(doc)
    except ValidationError as exc:
        raise smap.error(pydantic_diagnostics(exc, doc)) from None


def pydantic_diagnostics(exc: ValidationError, doc: Any, prefix: Path = ()) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: set[tuple[Path, str]] = set()
    missing: dict[Path, int] = {}  # S003 paths -> index in out
    unknown: list[tuple[Path, str]] = []  # S001: (parent path, close match of a known key)
    for err in _without_union_noise(exc.errors()):
        loc = _clean_loc(err["loc"])
        key = (loc, err["type"])
        if key in seen:
            continue
        seen.add(key)
        path = prefix + loc
        kind = err["type"]
        parent = _model_at(Spec, loc[:-1], doc) if loc and not prefix else None
        where = f" in `{dotted(path[:-1])}`" if path[:-1] else ""
        if kind == "extra_forbidden":
            choices = list(parent.model_fields) if parent else []
            hint = did_you_mean(str(loc[-1]), choices) if choices else "remove it."
            close = difflib.get_close_matches(str(loc[-1]), choices, n=1, cutoff=0.6)
            if close:
                unknown.append((path[:-1], close[0]))
            known = "one of its keys" if path[:-1] else "one of the spec's top-level keys"
            out.append(Diagnostic("S001", f"unknown key `{loc[-1]}`{where}; expected {known}.", path, hint))
        elif kind == "missing":
            info = parent.model_fields.get(str(loc[-1])) if parent else None
            about = f" ({info.description})" if info is not None and info.description else ""
            missing[path] = len(out)
            out.append(Diagnostic("S003", f"missing required key `{loc[-1]}`{where}{about}.", path, f"add `{loc[-1]}: ...` here."))
        elif {"message", "hint"} <= set(err.get("ctx") or {}):  # a validator's own message and hint (models.py)
            out.append(Diagnostic("S002", str(err["ctx"]["message"]), path, str(err["ctx"]["hint"])))
        else:
            out.append(Diagnostic("S002", _value_message(err), path, _hint_for(kind)))
    # `netwroks:` is one mistake: the unknown key's hint already names `networks`.
    drop = set()
    for parent_path, close in unknown:
        idx = missing.get(parent_path + (close,))
        if idx is not None:
            drop.add(idx)
    return [d for i, d in enumerate(out) if i not in drop]


# pydantic labels the branches of a union in `loc`; they are not part of the path.
_BRANCHES = {"str": "a string", "list[str]": "a list of strings", "TermRef": "a mapping with `term:`", "int": "a whole number", "float": "a number", "none": "nothing (null)"}


_MISMATCH = {"string_type", "list_type", "model_type", "dict_type", "int_type", "int_parsing", "float_type", "float_parsing", "none_required", "model_attributes_type"}


def _without_union_noise(errors: list[Any]) -> list[Any]:
    """One report per union value: the errors of the branch the user meant, or one mismatch.

    For `terms: [{term: elbo, wieght: 2}]` pydantic reports that the item is not a string
    *and* that `wieght` is unknown; only the second helps.
    """
    groups: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
    order: list[Any] = []
    for err in errors:
        loc = err["loc"]
        idx = next((i for i, part in enumerate(loc) if isinstance(part, str) and part in _BRANCHES), None)
        if idx is None:
            order.append(err)
            continue
        group = tuple(loc[:idx])
        if group not in groups:
            groups[group] = []
            order.append(group)
        groups[group].append((idx, err))
    out: list[Any] = []
    for item in order:
        if not isinstance(item, tuple):
            out.append(item)
            continue
        members = groups[item]
        deep = [err for idx, err in members if len(err["loc"]) > idx + 1 or err["type"] not in _MISMATCH]
        if deep:
            out.extend(deep)
            continue
        wanted = list(dict.fromkeys(_BRANCHES[err["loc"][idx]] for idx, err in members))
        first = members[0][1]
        out.append({"loc": item, "type": "union_type", "msg": "Input should be " + " or ".join(wanted), "input": first.get("input"), "ctx": {}})
    return out


def _value_message(err: Any) -> str:
    kind, msg, got = err["type"], str(err["msg"]), err.get("input")
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ").rstrip(".") + "."
    shown = "" if got is None else f" {_kind_of(got)}" if isinstance(got, (dict, list)) and len(repr(got)) > 40 else f" {got!r}"
    if kind in ("too_short", "too_long"):
        ctx = err.get("ctx") or {}
        n = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        bound = "at least" if kind == "too_short" else "at most"
        return f"invalid value{shown}; expected {bound} {n} item{'s' if n != 1 else ''}."
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        expected = {
            NAME: "a name of letters, digits and `_`, not starting with a digit",
            SPEC_NAME: "a name of letters, digits, `_`, `.` and `-`",
        }.get(pattern, f"text matching `{pattern}`")
        return f"invalid value{shown}; expected {expected}."
    expected = msg.removeprefix("Input should be ").split(", unable to")[0]
    if expected.startswith(("greater", "less")):
        expected = "a number " + expected
    elif expected.startswith("a valid dictionary"):
        expected = "a mapping of `key: value` lines"
    return f"invalid value{shown}; expected {expected}."


def _clean_loc(loc: tuple[Any, ...]) -> Path:
    # pydantic adds union-branch labels such as `str` or `TermRef`; they are not paths.
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (part in _BRANCHES or part.startswith(("function-", "literal["))):
            continue
        out.append(part)
    return tuple(out)


def _model_at(model: type[BaseModel], loc: Path, doc: Any) -> type[BaseModel] | None:
    import typing

    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field_info = current.model_fields.get(str(part))
            if field_info is None:
                return None
            current = field_info.annotation
        else:
            args = [a for a in typing.get_args(current) if a is not type(None)]
            # dict[str, X] / list[X] / X | None: step into the element type.
            current = args[-1] if args else None
        while typing.get_origin(current) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            current = models[0] if models else args[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    args = [a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
    return args[0] if args else None


def _hint_for(kind: str) -> str:
    return {
        "int_parsing": "write a whole number.",
        "float_parsing": "write a number such as `1e-3`.",
        "finite_number": "write a finite number such as `1e-3`; `.inf`, `-.inf` and `.nan` are not numbers a spec takes.",
        "greater_than": "use a positive number.",
        "greater_than_equal": "use a number that is not negative.",
        "less_than": "use a smaller number.",
        "less_than_equal": "use a smaller number.",
        "literal_error": "use one of the listed values.",
        "string_pattern_mismatch": "rename it.",
        "bool_parsing": "write `true` or `false`.",
        "bool_type": "write `true` or `false`.",
        "string_type": "write text, quoted if it looks like a number.",
        "union_type": "see `unigen schema` for what this key takes.",
        "list_type": "write a list in brackets, e.g. `[a, b]`.",
        "dict_type": "write a mapping of `key: value` lines.",
        "model_type": "write a mapping of `key: value` lines.",
        "too_short": "add the missing items, e.g. `shape: [2]`.",
        "too_long": "remove items.",
    }.get(kind, "")
