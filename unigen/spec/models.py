"""The spec language: the pydantic models at the YAML boundary (`Spec` and its parts)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    pass


def _no_boolean(value: Any) -> Any:
    """Refuse `true`/`false` where a number is expected: pydantic would read them as 1 and 0
    (`steps: true` as one step)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        message = f"invalid value `{text}`, a boolean; expected a number."
        raise PydanticCustomError("boolean_number", "{message}", {"message": message, "hint": "write a number, e.g. `1`; `true` and `false` are no numbers in a spec."})
    return value


NotBoolean = BeforeValidator(_no_boolean)


# A whole number and a number that are not booleans; a positive whole number.
Int = Annotated[int, NotBoolean]
Float = Annotated[float, NotBoolean]
PositiveInt = Annotated[int, Field(gt=0), NotBoolean]  # the constraint first: it stays the JSON Schema's


# A size or count a tensor dimension holds: torch indexes most kernels with 32 bits.
Size = Annotated[int, Field(gt=0, lt=2**31), NotBoolean]


# The elements of one sample of a variable (the product of its shape): a batch of 128 samples
# of this many float32 elements already takes 8 GiB.
MAX_ELEMENTS = 2**24


def _elements(shape: list[int]) -> list[int]:
    """Refuse a shape whose samples hold more than MAX_ELEMENTS elements (its product)."""
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        message = f"shape {shape} gives each sample {n} elements ({_bytes(4 * n)} as float32); expected at most {MAX_ELEMENTS} (2^24) elements per sample."
        hint = "make the shape smaller: a variable's shape is one sample's event, e.g. [64] or [3, 32, 32]."
        raise PydanticCustomError("too_many_elements", "{message}", {"message": message, "hint": hint})
    return shape


def _bytes(n: int) -> str:
    size, unit = float(n), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            break
        size /= 1024
    return f"{n} bytes" if unit == "bytes" else f"{size:.3g} {unit}"


NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


EDGE_KINDS = ("generative", "inference", "adversarial", "undirected")


SPEC_NAME = r"^[A-Za-z0-9_.-]+$"


def _nonfinite(value: Any, at: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], float]]:
    """Every NaN or infinite float in `value`, with its path below it (into mappings and lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield at, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nonfinite(item, at + (key,))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _nonfinite(item, at + (i,))


def _finite(value: Any) -> Any:
    """Refuse `.inf`, `-.inf` and `.nan` anywhere in an option's value, each at its own path
    (pydantic prefixes the path of the option); the typed fields refuse them by `allow_inf_nan`."""
    found = list(_nonfinite(value))
    if found:
        raise ValidationError.from_exception_data("option", [InitErrorDetails(type="finite_number", loc=at, input=number) for at, number in found])
    return value


# The value of an open option (an edge's or a term's `options`, the extra keys of a kind):
# anything YAML gives, but no number that is not finite.
Finite = Annotated[Any, AfterValidator(_finite)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Open(BaseModel):
    """A registered kind plus its own options, checked later against the kind's model."""

    # `additionalProperties: true`, as an untyped open model gives, keeps the JSON Schema as it was.
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False, json_schema_extra={"additionalProperties": True})

    __pydantic_extra__: dict[str, Finite] = Field(init=False)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Data(_Open):
    source: str = Field(description="a registered dataset (`unigen plugins` lists them); its options sit beside it")


class Prior(_Strict):
    dist: str = Field(description="a registered distribution that its network evaluates on the variable's own value, e.g. `autoregressive` or `flow`")
    net: str = Field(description="the network that computes the density (called on the variable's value)")
    options: dict[str, Finite] = Field(default_factory=dict, description="options of the distribution")


class Variable(_Strict):
    observed: bool = Field(False, description="bound to a data field in the q-trace")
    shape: Annotated[list[Size], AfterValidator(_elements)] = Field(min_length=1, description="event shape, e.g. [64] or [1, 8, 8]")
    prior: str | Prior | None = Field(
        None,
        description="registered distribution used as p(v) for a root, e.g. `normal`, `categorical`; or a learned density of the root, "
        "`{dist: autoregressive, net: made}`, whose network evaluates the value (an observed root may have one: p(x) itself)",
    )
    data: str | None = Field(None, description="data field for an observed variable; defaults to the variable's name")
    mask: str | None = Field(None, description="data field that marks the rows observing this variable (1) and those hiding it (0): a partially observed variable, e.g. labels given for some rows only")

    complete: bool = Field(
        False,
        description="also in the q-trace where no inference edge gives it (trace completion): a root drawn from its prior there (noise that an inference network reads, as in AVB's encoder), "
        "a child computed through its generative edge from the q-trace's values",
    )

    @property
    def prior_name(self) -> str | None:
        """The name of a fixed prior (`prior: normal`); None for none and for a learned density."""
        return self.prior if isinstance(self.prior, str) else None


class Network(_Open):
    arch: str = Field(description="registered architecture, e.g. `mlp`; its options sit beside it")
    trainable: bool = Field(True, description="false: a fixed network that no phase updates")
    ema: Annotated[float | None, NotBoolean] = Field(None, gt=0, lt=1, description="decay of an exponential moving average of the parameters, e.g. 0.999; the average draws samples and is evaluated")


class Edge(_Strict):
    generative: str | None = Field(None, description="`z -> x` or `z, y -> x`: a factor of p(x, z)")
    inference: str | None = Field(None, description="`x -> z`: a factor of q(z | x)")
    adversarial: str | list[str] | None = Field(None, description="variable or list of variables judged real (q-trace) vs fake (p-trace)")
    undirected: str | list[str] | None = Field(None, description="`[v, h]`: an undirected factor between variables, whose network gives its energy (a restricted Boltzmann machine); the `samplers` fill its traces")
    net: str = Field(description="network computing this edge; `g.a` for port `a` of a network with several ports")
    dist: str | None = Field(None, description="output distribution: bernoulli, normal, deterministic, categorical")
    objective: str | None = Field(None, description="a registered adversarial objective (required on adversarial edges; `unigen plugins` lists them)")
    name: str | None = Field(None, pattern=NAME, description="name used by terms (`<term>@p_x`); defaults to p_<child>, q_<child>, adv_<vars>")
    real: list[str] | None = Field(None, description="adversarial real side as `trace.var` items (default `q.<var>` for each judged variable)")
    fake: list[str] | None = Field(None, description="adversarial fake side as `trace.var` items (default `p.<var>` for each judged variable)")
    options: dict[str, Finite] = Field(default_factory=dict, description="options of the distribution or the objective")

    @model_validator(mode="after")
    def _one_kind(self) -> "Edge":
        kinds = [k for k in EDGE_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("an edge has exactly one of `generative`, `inference`, `adversarial`, `undirected`" + (f"; found {', '.join(kinds)}" if kinds else ""))
        if kinds[0] != "adversarial" and self.objective is not None:
            raise ValueError("`objective` belongs to adversarial edges only")
        if kinds[0] in ("adversarial", "undirected") and self.dist is not None:
            raise ValueError("`dist` belongs to generative and inference edges only")
        if kinds[0] != "adversarial" and (self.real is not None or self.fake is not None):
            raise ValueError("`real` and `fake` belong to adversarial edges only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in EDGE_KINDS if getattr(self, k) is not None)


class TermRef(_Strict):
    term: str = Field(description="a registered term (`unigen plugins` lists them)")
    on: str | None = Field(None, description="edge the term is attached to, when the graph has several candidates")
    weight: Float = Field(1.0, description="the term's factor in the phase's loss")
    options: dict[str, Finite] = Field(default_factory=dict, description="options of the term, checked against the term's own options")


class MetricRef(_Strict):
    metric: str = Field(description="a registered metric (`unigen plugins` lists them)")
    options: dict[str, Finite] = Field(default_factory=dict, description="options of the metric, checked against the metric's own options (as `unigen evaluate --option` sets them)")


class Optim(_Open):
    kind: str = Field("adam", description="registered optimizer: adam, adamw, sgd, rmsprop; torch options sit beside it")
    lr: Float = Field(1e-3, gt=0, description="learning rate")


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


class SamplerSpec(_Open):
    kind: str = Field(description="a registered sampler (`unigen plugins` lists them), e.g. `gibbs` or `mean_field`; its options sit beside it")


class Best(_Strict):
    metric: str = Field(description="a metric as metrics.csv and summary.json name it, e.g. `test_nelbo`")
    mode: Literal["min", "max"] = Field("min", description="whether lower (`min`) or higher (`max`) is better")


class Train(_Strict):
    steps: PositiveInt = Field(1000, description="training steps; each runs every phase due (times its `repeats`)")
    batch_size: Size = Field(128, description="samples per batch, of data and of the p-trace")
    seed: Int = Field(0, ge=0, lt=2**63, description="seed of every random stream of the run (torch takes 64-bit seeds)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto`: CUDA when there is a GPU, else the CPU")
    log_every: PositiveInt = Field(100, description="steps between metric rows and log lines")
    sample_every: Int = Field(0, ge=0, description="steps between sample pictures; 0: only at the end")
    checkpoint_every: Int = Field(0, ge=0, description="steps between checkpoints; 0: only at the end")
    eval_every: Int = Field(0, ge=0, description="steps between metric evaluations; 0: only at the end")
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
    unigen: Annotated[Literal[1], NotBoolean] = Field(description="spec format version")
    name: str = Field(pattern=SPEC_NAME)
    family: str | None = Field(None, description="registered family whose defaults fill what the spec leaves out")
    description: str = Field("", description="one line about the model")
    data: Data
    variables: dict[str, Variable]
    networks: dict[str, Network]
    edges: list[Edge] = Field(default_factory=list, description="generative, inference, adversarial and undirected edges (a model of one learned prior needs none)")
    samplers: dict[Literal["m", "q"], SamplerSpec] | None = Field(
        None,
        description="what fills the variables of undirected factors: `m`, the sampler trace (the model's own chain, e.g. `{kind: gibbs, steps: 1}`); "
        "`q`, the hidden units of the q-trace given the observed ones (e.g. `{kind: mean_field}`)",
    )
    phases: list[Phase] = Field(description="alternating training phases")
    metrics: list[str | MetricRef] | None = Field(None, description="metrics to report, each a name or `{metric: name, options: {...}}`; default: every registered metric that applies")
    train: Train = Field(default_factory=Train, description="training settings")

    def metric_refs(self) -> list[MetricRef]:
        """The `metrics` entries as mappings (a bare name has no options)."""
        return [MetricRef(metric=m) if isinstance(m, str) else m for m in self.metrics or []]

    @field_validator("variables", "networks")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [_shown(key) for key in value if not re.fullmatch(NAME, str(key))]
        if bad:
            raise ValueError(f"{', '.join(bad)} {'is not a valid name' if len(bad) == 1 else 'are not valid names'}; expected letters, digits and `_`, not starting with a digit")
        return value

    @field_validator("networks")
    @classmethod
    def _network_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The networks live in an `nn.ModuleDict`, which cannot hold a module under the name of
        # one of its own attributes (`parameters`, `training`, `to`, ...) nor a private one.
        reserved = _module_attributes()
        bad = [str(key) for key in value if str(key).startswith("_") or str(key) in reserved]
        if bad:
            raise ValidationError.from_exception_data("networks", [InitErrorDetails(type=_reserved_network_name(name), loc=(name,), input=name) for name in bad])
        return value


@functools.cache
def _module_attributes() -> frozenset[str]:
    from torch import nn  # only when a spec names networks: the spec language itself needs no torch

    return frozenset(dir(nn.ModuleDict()))


def _reserved_network_name(name: str) -> PydanticCustomError:
    stem = name.strip("_")
    other = f"{stem}_net" if stem and not stem[0].isdigit() else f"net{name}"
    why = "starts with `_`, which torch keeps for a module's own state" if name.startswith("_") else "is an attribute of torch's `nn.ModuleDict`, which holds the networks"
    message = f"network name `{name}` {why}, so training could not store the network under it; expected a name that does not start with `_` and is no `nn.ModuleDict` attribute (such as `parameters`, `training`, `to`)."
    hint = f"rename the network, e.g. to `{other}`, and its uses in `net:` and `update:`."
    return PydanticCustomError("reserved_name", "{message}", {"message": message, "hint": hint})


def _shown(name: Any) -> str:
    """A name in backticks; one with whitespace or control characters as a quoted string with
    escapes (`'decoder\\n'`), so that the message shows what is wrong with it."""
    text = str(name)
    return f"`{text}`" if text.isprintable() and text.strip() == text else f"`{text!r}`"


def _kind_of(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)
