"""The spec language: pydantic models at the YAML boundary, plus loading and overrides."""

from __future__ import annotations

import copy
import re
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from .errors import Diagnostic, Path, UnigenError, did_you_mean, dotted
from .source import SourceMap, load_yaml

if TYPE_CHECKING:
    from .registry import Registry

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Open(BaseModel):
    """A registered kind plus its own options, checked later against the kind's model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Data(_Open):
    source: str = Field(description="registered dataset, e.g. `digits`, `ring2d`, `grid2d`; its options sit beside it")


class Variable(_Strict):
    observed: bool = Field(False, description="bound to a data field in the q-trace")
    shape: list[PositiveInt] = Field(description="event shape, e.g. [64] or [1, 8, 8]")
    prior: str | None = Field(None, description="registered distribution used as p(v) for a root, e.g. `normal`, `categorical`")
    data: str | None = Field(None, description="data field for an observed variable; defaults to the variable's name")


class Network(_Open):
    arch: str = Field(description="registered architecture, e.g. `mlp`; its options sit beside it")
    trainable: bool = True


class Edge(_Strict):
    generative: str | None = Field(None, description="`z -> x` or `z, y -> x`: a factor of p(x, z)")
    inference: str | None = Field(None, description="`x -> z`: a factor of q(z | x)")
    adversarial: str | list[str] | None = Field(None, description="variable or list of variables judged real (q-trace) vs fake (p-trace)")
    net: str = Field(description="network computing this edge")
    dist: str | None = Field(None, description="output distribution: bernoulli, normal, deterministic, categorical")
    objective: str | None = Field(None, description="adversarial objective, e.g. `nonsaturating`, `minimax`")
    name: str | None = Field(None, pattern=NAME, description="name used by terms (`elbo@p_x`); defaults to p_<child>, q_<child>, adv_<vars>")
    real: list[str] | None = Field(None, description="adversarial real side as `trace.var` items (default `q.<var>` for each judged variable)")
    fake: list[str] | None = Field(None, description="adversarial fake side as `trace.var` items (default `p.<var>` for each judged variable)")
    options: dict[str, Any] = Field(default_factory=dict, description="options of the distribution or the objective")

    @model_validator(mode="after")
    def _one_kind(self) -> "Edge":
        kinds = [k for k in ("generative", "inference", "adversarial") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("an edge has exactly one of `generative`, `inference`, `adversarial`" + (f"; found {', '.join(kinds)}" if kinds else ""))
        if kinds[0] != "adversarial" and self.objective is not None:
            raise ValueError("`objective` belongs to adversarial edges only")
        if kinds[0] == "adversarial" and self.dist is not None:
            raise ValueError("`dist` belongs to generative and inference edges only")
        if kinds[0] != "adversarial" and (self.real is not None or self.fake is not None):
            raise ValueError("`real` and `fake` belong to adversarial edges only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("generative", "inference", "adversarial") if getattr(self, k) is not None)


class TermRef(_Strict):
    term: str = Field(description="registered term, e.g. `elbo`, `adversarial.d`")
    on: str | None = Field(None, description="edge the term is attached to, when the graph has several candidates")
    weight: float = 1.0
    options: dict[str, Any] = Field(default_factory=dict)


class Optim(_Open):
    kind: str = Field("adam", description="registered optimizer: adam, adamw, sgd, rmsprop; torch options sit beside it")
    lr: float = Field(1e-3, gt=0)


class Phase(_Strict):
    name: str = Field(pattern=NAME)
    update: list[str] = Field(description="networks whose parameters this phase changes; all others are frozen")
    terms: list[str | TermRef] = Field(description="terms summed into the phase's loss; `name` or `name@edge` or a mapping")
    optim: Optim | None = Field(None, description="defaults to `train.optim`")
    repeats: PositiveInt = Field(1, description="updates per training step (e.g. critic steps)")
    every: PositiveInt = Field(1, description="run on every k-th training step only")

    def term_refs(self) -> list[TermRef]:
        out = []
        for t in self.terms:
            if isinstance(t, str):
                name, _, on = t.partition("@")
                out.append(TermRef(term=name.strip(), on=on.strip() or None))
            else:
                out.append(t)
        return out


class Train(_Strict):
    steps: PositiveInt = 1000
    batch_size: PositiveInt = 128
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: PositiveInt = Field(100, description="steps between metric rows and log lines")
    sample_every: int = Field(0, ge=0, description="steps between sample pictures; 0: only at the end")
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0: only at the end")
    eval_every: int = Field(0, ge=0, description="steps between metric evaluations; 0: only at the end")
    eval_samples: PositiveInt = Field(2500, description="samples drawn for sample-based metrics")
    optim: Optim = Field(default_factory=Optim, description="default optimizer of every phase")


class Spec(_Strict):
    unigen: Literal[1] = Field(description="spec format version")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    family: str | None = Field(None, description="registered family whose defaults fill what the spec leaves out")
    description: str = ""
    data: Data
    variables: dict[str, Variable]
    networks: dict[str, Network]
    edges: list[Edge]
    phases: list[Phase] = Field(description="alternating training phases")
    metrics: list[str] | None = Field(None, description="metrics to report; default: every registered metric that applies")
    train: Train = Field(default_factory=Train)

    @field_validator("variables", "networks")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not re.match(NAME, key):
                raise ValueError(f"`{key}` is not a valid name; use letters, digits and `_`, not starting with a digit")
        return value


# --------------------------------------------------------------------------- loading


def load_spec(path: str | FsPath, overrides: list[str] | None = None, registry: "Registry | None" = None) -> tuple[Spec, SourceMap, dict[str, Any]]:
    """Read a spec file, apply overrides and family defaults, validate it.

    Returns the spec, the source map for later diagnostics, and the raw document as given.
    """
    file = str(path)
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnigenError([Diagnostic("Y004", f"cannot read the spec: {exc}.", hint="check the path.", file=file)]) from None
    return parse_spec(text, file, overrides, registry)


def parse_spec(text: str, file: str = "<spec>", overrides: list[str] | None = None, registry: "Registry | None" = None) -> tuple[Spec, SourceMap, dict[str, Any]]:
    raw, smap = load_yaml(text, file)
    if not isinstance(raw, dict):
        raise smap.error([Diagnostic("S002", f"the spec must be a mapping, not {type(raw).__name__}.", hint="start the file with `unigen: 1` and `name: ...`.")])
    given = copy.deepcopy(raw)
    doc = apply_overrides(raw, overrides or [], smap)
    if registry is not None and isinstance(doc.get("family"), str):
        doc = registry.complete_family(doc, smap)
    return validate_document(doc, smap), smap, given


def validate_document(doc: dict[str, Any], smap: SourceMap) -> Spec:
    try:
        return Spec.model_validate(doc)
    except ValidationError as exc:
        raise smap.error(pydantic_diagnostics(exc, doc)) from None


def pydantic_diagnostics(exc: ValidationError, doc: Any, prefix: Path = ()) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: set[tuple[Path, str]] = set()
    for err in exc.errors():
        loc = _clean_loc(err["loc"])
        key = (loc, err["type"])
        if key in seen:
            continue
        seen.add(key)
        path = prefix + loc
        kind = err["type"]
        if kind == "extra_forbidden":
            parent_model = _model_at(Spec, loc[:-1], doc) if not prefix else None
            choices = list(parent_model.model_fields) if parent_model else []
            hint = did_you_mean(str(loc[-1]), choices) if choices else "remove it."
            out.append(Diagnostic("S001", f"unknown key `{loc[-1]}`.", path, hint))
        elif kind == "missing":
            out.append(Diagnostic("S003", f"missing required key `{loc[-1]}`.", path, f"add `{loc[-1]}: ...` here."))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
            out.append(Diagnostic("S002", f"{msg}{shown}.", path, _hint_for(kind)))
    return out


def _clean_loc(loc: tuple[Any, ...]) -> Path:
    # pydantic adds union-branch labels such as `str` or `TermRef`; they are not paths.
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (part in {"str", "TermRef", "list[str]", "int", "float", "none"} or part.startswith(("function-", "literal["))):
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
        "greater_than": "use a positive number.",
        "greater_than_equal": "use a number that is not negative.",
        "literal_error": "use one of the listed values.",
        "string_pattern_mismatch": "use letters, digits and `_`.",
        "list_type": "write a list in brackets, e.g. `[64]`.",
        "dict_type": "write a mapping of `key: value` lines.",
        "model_type": "write a mapping of `key: value` lines.",
    }.get(kind, "")


# ------------------------------------------------------------------------- overrides


def apply_overrides(doc: dict[str, Any], overrides: list[str], smap: SourceMap | None = None) -> dict[str, Any]:
    """Apply `dotted.key=value` overrides. List items are addressed by index or by `name`."""
    doc = copy.deepcopy(doc)
    errors: list[Diagnostic] = []
    for item in overrides:
        key, sep, value_text = item.partition("=")
        if not sep or not key.strip():
            errors.append(Diagnostic("S004", f"override `{item}` is not `dotted.key=value`.", hint="write e.g. `train.steps=200`."))
            continue
        try:
            value = yaml.load(value_text, Loader=_override_loader()) if value_text.strip() else ""
        except yaml.YAMLError:
            value = value_text
        parts = key.strip().split(".")
        err = _set_path(doc, parts, value)
        if err:
            errors.append(Diagnostic("S004", f"override `{item}`: {err}", hint="see `unigen show-config SPEC` for the keys a spec has."))
    if errors:
        raise UnigenError(errors)
    return doc


def _override_loader() -> type:
    from .source import _Loader

    return _Loader


def _set_path(doc: Any, parts: list[str], value: Any) -> str:
    node = doc
    model: Any = Spec
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part)
            if idx is None:
                names = [str(x.get("name")) for x in node if isinstance(x, dict) and "name" in x]
                return f"no item `{part}` in `{dotted(parts[:i])}`; " + (did_you_mean(part, names) if names else f"use an index below {len(node)}.")
            if last:
                node[idx] = value
                return ""
            node = node[idx]
            model = _element_model(model)
            continue
        if not isinstance(node, dict):
            return f"`{dotted(parts[:i])}` is not a mapping."
        fields = _fields(model)
        open_kind = model in (Data, Network, Optim) or model is None
        if part not in node and fields is not None and part not in fields and not open_kind:
            return f"unknown key `{part}` in `{dotted(parts[:i]) or 'the spec'}`; " + did_you_mean(part, list(fields))
        if last:
            node[part] = value
            return ""
        node = node.setdefault(part, {})
        model = model[1] if isinstance(model, tuple) and model[0] == "dict" else _child_model(model, part)
    return ""


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


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema()
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["title"] = "unigen spec"
    return schema
