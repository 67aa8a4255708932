"""The spec language: pydantic models at the YAML boundary, plus loading and overrides."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from .errors import Diagnostic, Path, UnigenError, did_you_mean, dotted
from .source import SourceMap, load_yaml

if TYPE_CHECKING:
    from .registry import Registry

# A size or count a tensor dimension holds: torch indexes most kernels with 32 bits.
Size = Annotated[int, Field(gt=0, lt=2**31)]

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SPEC_NAME = r"^[A-Za-z0-9_.-]+$"


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
    shape: list[Size] = Field(min_length=1, description="event shape, e.g. [64] or [1, 8, 8]")
    prior: str | None = Field(None, description="registered distribution used as p(v) for a root, e.g. `normal`, `categorical`")
    data: str | None = Field(None, description="data field for an observed variable; defaults to the variable's name")
    mask: str | None = Field(None, description="data field that marks the rows observing this variable (1) and those hiding it (0): a partially observed variable, e.g. labels given for some rows only")


class Network(_Open):
    arch: str = Field(description="registered architecture, e.g. `mlp`; its options sit beside it")
    trainable: bool = Field(True, description="false: a fixed network that no phase updates")
    ema: float | None = Field(None, gt=0, lt=1, description="decay of an exponential moving average of the parameters, e.g. 0.999; the average draws samples and is evaluated")


class Edge(_Strict):
    generative: str | None = Field(None, description="`z -> x` or `z, y -> x`: a factor of p(x, z)")
    inference: str | None = Field(None, description="`x -> z`: a factor of q(z | x)")
    adversarial: str | list[str] | None = Field(None, description="variable or list of variables judged real (q-trace) vs fake (p-trace)")
    net: str = Field(description="network computing this edge")
    dist: str | None = Field(None, description="output distribution: bernoulli, normal, deterministic, categorical")
    objective: str | None = Field(None, description="adversarial objective (required on adversarial edges), e.g. `nonsaturating`, `minimax`, `hinge`")
    name: str | None = Field(None, pattern=NAME, description="name used by terms (`elbo@p_x`); defaults to p_<child>, q_<child>, adv_<vars>")
    real: list[str] | None = Field(None, description="adversarial real side as `trace.var` items (default `q.<var>` for each judged variable)")
    fake: list[str] | None = Field(None, description="adversarial fake side as `trace.var` items (default `p.<var>` for each judged variable)")
    identify: str | None = Field(None, pattern=NAME, description="adversarial links only: a categorical latent (k values) behind the fake side; the discriminator gives 1 + k logits and also tells which value produced each fake sample (MAD-GAN: which generator)")
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
        if kinds[0] != "adversarial" and self.identify is not None:
            raise ValueError("`identify` belongs to adversarial edges only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("generative", "inference", "adversarial") if getattr(self, k) is not None)


class TermRef(_Strict):
    term: str = Field(description="registered term, e.g. `elbo`, `adversarial.d`")
    on: str | None = Field(None, description="edge the term is attached to, when the graph has several candidates")
    weight: float = Field(1.0, description="the term's factor in the phase's loss")
    options: dict[str, Any] = Field(default_factory=dict, description="options of the term, checked against the term's own options")


class Optim(_Open):
    kind: str = Field("adam", description="registered optimizer: adam, adamw, sgd, rmsprop; torch options sit beside it")
    lr: float = Field(1e-3, gt=0, description="learning rate")


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


class Best(_Strict):
    metric: str = Field(description="a metric as metrics.csv and summary.json name it, e.g. `test_nelbo`")
    mode: Literal["min", "max"] = Field("min", description="whether lower (`min`) or higher (`max`) is better")


class Train(_Strict):
    steps: PositiveInt = Field(1000, description="training steps; each runs every phase due (times its `repeats`)")
    batch_size: Size = Field(128, description="samples per batch, of data and of the p-trace")
    seed: int = Field(0, ge=0, lt=2**63, description="seed of every random stream of the run (torch takes 64-bit seeds)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto`: CUDA when there is a GPU, else the CPU")
    log_every: PositiveInt = Field(100, description="steps between metric rows and log lines")
    sample_every: int = Field(0, ge=0, description="steps between sample pictures; 0: only at the end")
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0: only at the end")
    eval_every: int = Field(0, ge=0, description="steps between metric evaluations; 0: only at the end")
    eval_samples: Size = Field(2500, description="samples drawn for sample-based metrics")
    on_nonfinite: Literal["raise", "skip", "rollback"] = Field(
        "raise",
        description="a phase loss that is NaN or infinite: `raise` stops the run (R001, the last good state saved as a checkpoint); "
        "`skip` leaves that phase's update out and goes on; `rollback` restores the last good state and goes on",
    )
    optim: Optim = Field(default_factory=Optim, description="default optimizer of every phase")
    best: Best | None = Field(None, description="keep the checkpoint with the best value of a metric, among the evaluations (`eval_every` and the end), as `checkpoints/best`")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="arithmetic of the networks' forward passes: `bf16` autocasts to bfloat16 (CUDA and CPU); `fp16` autocasts to float16 with a gradient scaler per phase (CUDA only)",
    )
    compile: bool = Field(False, description="run every network through `torch.compile` (slow to warm up; pays off on long runs)")
    sync_batchnorm: bool = Field(False, description="under torch.distributed, turn batch-norm layers into SyncBatchNorm so that they normalise over the global batch")


class Spec(_Strict):
    unigen: Literal[1] = Field(description="spec format version")
    name: str = Field(pattern=SPEC_NAME)
    family: str | None = Field(None, description="registered family whose defaults fill what the spec leaves out")
    description: str = Field("", description="one line about the model")
    data: Data
    variables: dict[str, Variable]
    networks: dict[str, Network]
    edges: list[Edge]
    phases: list[Phase] = Field(description="alternating training phases")
    metrics: list[str] | None = Field(None, description="metrics to report; default: every registered metric that applies")
    train: Train = Field(default_factory=Train, description="training settings")

    @field_validator("variables", "networks")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [f"`{key}`" for key in value if not re.match(NAME, str(key))]
        if bad:
            raise ValueError(f"{', '.join(bad)} {'is not a valid name' if len(bad) == 1 else 'are not valid names'}; expected letters, digits and `_`, not starting with a digit")
        return value


# --------------------------------------------------------------------------- loading


def load_spec(path: str | FsPath, overrides: list[str] | None = None, registry: "Registry | None" = None) -> tuple[Spec, SourceMap, dict[str, Any]]:
    """Read a spec file, apply overrides and family defaults, validate it.

    Returns the spec, the source map for later diagnostics, and the raw document as given.
    """
    file = str(path)
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UnigenError([Diagnostic("Y004", f"cannot read the spec: it is not UTF-8 text ({exc.reason} at byte {exc.start}); expected a YAML text file.", hint="save the file as UTF-8.", file=file)]) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UnigenError([Diagnostic("Y004", f"cannot read the spec: {reason}; expected a readable YAML file.", hint="check the path.", file=file)]) from None
    return parse_spec(text, file, overrides, registry)


def parse_spec(text: str, file: str = "<spec>", overrides: list[str] | None = None, registry: "Registry | None" = None) -> tuple[Spec, SourceMap, dict[str, Any]]:
    raw, smap = load_yaml(text, file)
    if not isinstance(raw, dict):
        raise smap.error([Diagnostic("S002", f"the spec is {_kind_of(raw)}; expected a mapping of keys such as `unigen: 1` and `name: ...`.", hint="start the file with `unigen: 1` and `name: ...` lines, without a leading `-`.")])
    given = copy.deepcopy(raw)
    overrides = overrides or []
    late: list[str] = []
    if registry is not None and isinstance(apply_overrides(raw, [o for o in overrides if o.partition("=")[0].strip() == "family"], smap).get("family"), str):
        # An override may address what only the family fills in (`phases.elbo.repeats=2` on a
        # spec that names `family: vae` and no phases): such ones apply after the family.
        late = [o for o in overrides if not _applies(raw, o)]
    doc = apply_overrides(raw, [o for o in overrides if o not in late], smap)
    if registry is not None and isinstance(doc.get("family"), str):
        doc = registry.complete_family(doc, smap)
    doc = apply_overrides(doc, late, smap)
    return validate_document(doc, smap), smap, given


def _applies(doc: dict[str, Any], override: str) -> bool:
    try:
        apply_overrides(doc, [override])
    except UnigenError:
        return False
    return True


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


def _kind_of(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


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
        err, hint = _set_path(doc, parts, value)
        if err:
            errors.append(Diagnostic("S004", f"override `{item}`: {err}", hint=hint or "see `unigen show-config SPEC` for the keys a spec has."))
    if errors:
        raise UnigenError(errors)
    return doc


def _override_loader() -> type:
    from .source import _Loader

    return _Loader


def _set_path(doc: Any, parts: list[str], value: Any) -> tuple[str, str]:
    """Set `parts` in `doc`; on failure, (what is wrong; what was expected, hint)."""
    node = doc
    model: Any = Spec
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
                )
            if last:
                node[idx] = value
                return "", ""
            node = node[idx]
            model = _element_model(model)
            continue
        if not isinstance(node, dict):
            return f"`{here}` is {_kind_of(node)}, not a mapping, so it has no key `{part}`.", f"override `{here}` itself, e.g. `{here}=...`."
        fields = _fields(model)
        open_kind = model in (Data, Network, Optim) or model is None
        if part not in node and fields is not None and part not in fields and not open_kind:
            where = f"`{here}`" if here else "the spec"
            return f"unknown key `{part}` in {where}; expected one of its keys.", did_you_mean(part, list(fields))
        if last:
            node[part] = value
            return "", ""
        child = model[1] if isinstance(model, tuple) and model[0] == "dict" else _child_model(model, part)
        if part not in node and isinstance(child, tuple) and child[0] == "list":
            # `phases.gen.repeats=2` when the file has no `phases` (a family fills them in
            # later): there is no item to address yet.
            return f"`{dotted(parts[: i + 1])}` is not in the spec file, so its items cannot be addressed.", f"write `{part}:` in the file, or override the whole list: `{dotted(parts[: i + 1])}=[...]`."
        node = node.setdefault(part, {})
        model = child
    return "", ""


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
