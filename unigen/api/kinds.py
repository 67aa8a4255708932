"""What plugins register: small base classes, each a protocol with defaults.

A plugin subclasses these (or passes any object with the same attributes) to
`register(name, obj)` in the matching `unigen_register_*` hook.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from unigen.api.contexts import EdgeInfo, GraphView, ModelView, RegistryView, StepContext
from unigen.errors import Diagnostic


class Options(BaseModel):
    """Base for a kind's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TermError(Exception):
    """Raised by `Term.bind` when the graph lacks what the term needs (reported as G014)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class Site:
    """Where a term is used: the graph, its target edge (if it takes one) and its options."""

    graph: GraphView
    edge: EdgeInfo | None
    options: Any
    registry: RegistryView


@dataclass(frozen=True)
class Bound:
    """A term bound to a graph: a loss to minimise and what it touches."""

    loss: Callable[[StepContext], torch.Tensor]
    formula: str  # printed in the program, e.g. "-E_q[log p(x|z)] + KL(q(z|x) || p(z))"
    traces: frozenset[str] = frozenset()  # "p" and/or "q"
    reaches: frozenset[str] = frozenset()  # networks its gradient can reach
    # Training health: given the term's last value (a detached scalar tensor) at a logged step,
    # a warning (what is wrong; what was expected. Hint: ...) or None. The trainer reports a
    # warning once it has been returned at several logged steps in a row.
    health: Callable[[torch.Tensor], str | None] | None = None
    # Training health of the model the term trains: given the model (in evaluation mode, without
    # gradients, in a random stream of its own) at a logged step, a (symptom key, warning) or
    # None; reported as `health` is (symptoms of several terms under one key count once).
    monitor: Callable[[ModelView], tuple[str, str] | None] | None = None


class Term(ABC):
    target: str | None = None  # edge kind the term attaches to: generative, inference, adversarial
    Options: type[BaseModel] | None = None
    doc = ""

    @abstractmethod
    def bind(self, site: Site) -> Bound:
        """Check the graph has what the term needs (else raise TermError) and return its loss."""


class Delta(torch.distributions.Distribution):
    """A point mass: a deterministic edge. Sampling returns the value, with its gradient."""

    arg_constraints: dict[str, Any] = {}
    has_rsample = True

    def __init__(self, value: torch.Tensor, event_dims: int) -> None:
        self.value = value
        super().__init__(value.shape[: value.dim() - event_dims], value.shape[value.dim() - event_dims :], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.value

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.value.expand(sample_shape + self.value.shape) if len(sample_shape) else self.value

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.rsample(sample_shape).detach()


class Dist(ABC):
    n_params = 1  # network outputs per event element (normal: mean and log-variance)
    has_density = True
    reparam = True  # rsample carries gradients to the network
    can_be_prior = False
    can_be_edge = True
    constant_prior = True  # the prior has no parameters that change: it is built once per batch size
    enumerable = False  # discrete with a support that can be listed: a partially observed variable can be summed out
    # A density its network evaluates on the variable's own value (an autoregressive density, a
    # flow): the network of its edge is called as `net(value, *parents)`, so it takes the child's
    # shape as its first input, and the distribution comes from `density`, not `make`.
    evaluates = False
    # What the network of an `evaluates` density must declare: "causal" (autoregressive: each
    # output element sees only the elements before it) or "invertible" (a flow); "" for nothing.
    needs = ""
    Options: type[BaseModel] | None = None
    doc = ""

    def n_params_for(self, options: Any) -> int:
        """Network outputs per event element under the edge's options; `n_params` by default.

        What sizes the edge's network. `options` are the checked options, or None where they did
        not validate; a kind whose options change the count (normal's `variance: fixed`: the mean
        only) says so here."""
        return self.n_params

    @abstractmethod
    def make(self, out: torch.Tensor, event_dims: int, options: Any) -> torch.distributions.Distribution:
        """The distribution given a network's output of shape (batch, n_params_for(options) * C, ...)."""

    def density(self, net: Callable[..., Any], module: nn.Module, parents: list[torch.Tensor], shape: tuple[int, ...], n: int, options: Any) -> torch.distributions.Distribution:
        """For an `evaluates` kind: the child's distribution given its parents' values (n rows of
        `shape`). `net` is the network as the phase runs it (compiled, wrapped for several
        processes: use it for the one pass that scores a value, `net(value, *parents)`); `module`
        is the plain network, for what else its architecture offers (an inverse, a sampling pass)."""
        raise TypeError(f"{type(self).__name__} does not evaluate its own value (evaluates is False)")

    def prior(self, shape: tuple[int, ...], n: int, device: torch.device) -> torch.distributions.Distribution:
        raise TypeError(f"{type(self).__name__} cannot be a prior (can_be_prior is False)")

    def check(self, shape: tuple[int, ...]) -> list[str]:
        return []


class Arch(ABC):
    Options: type[BaseModel] | None = None
    doc = ""
    # Built modules whose output at each element of the child (in the order of its flattened
    # index) depends only on the input elements before it: a network an autoregressive density
    # can evaluate in one teacher-forced pass. The validator checks the built module's order.
    causal = False
    # Built modules that map the child's value x to (u, log|det du/dx|) with `module(x, *parents)`
    # and back with `module.inverse(u, *parents)`: a network a flow density can evaluate.
    invertible = False

    @abstractmethod
    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: Any) -> nn.Module:
        """A module called as `net(*parents)` returning a tensor of shape (batch, *output)."""

    def ports(self, options: Any) -> tuple[str, ...]:
        """The entry points of a network with several (`net: g.a` on an edge): one module and
        one parameter set, called as `module(*parents, port="a")`. None by default: the network
        is called as `module(*parents)`."""
        return ()

    def check_ports(self, signatures: dict[str, tuple[list[tuple[int, ...]], tuple[int, ...]]], options: Any) -> list[str]:
        """What is wrong with the ports' shapes together (the validator reports each as G012):
        a shared trunk needs its ports to take the same inputs, say. Nothing by default."""
        return []

    def build_ports(self, signatures: dict[str, tuple[list[tuple[int, ...]], tuple[int, ...]]], options: Any) -> nn.Module:
        """For an architecture with ports: one module for the (input shapes, output shape) of
        each port that the spec's edges use (a port no edge uses is absent)."""
        raise TypeError(f"{type(self).__name__} has no ports")

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: Any) -> list[str]:
        return []

    def init_from_data(self, module: nn.Module, inputs: list[torch.Tensor | None], options: Any) -> None:
        """Set parameters from the training data, once, when a run starts afresh (an RBM's
        visible biases at the data's log-odds, say): `inputs` holds, for each input of the edge
        the network computes first, the training split's values of an observed variable, or
        None. Nothing by default."""
        return None

    def feature_layers(self, options: Any) -> list[tuple[int, ...]]:
        """The shapes of the hidden layers the built module exposes (none by default).

        Layer k (1, 2, ...) is read as `module.features(*inputs, layer=k)`; terms that compare
        values in a network's feature space (VAE/GAN's reconstruction) use them."""
        return []


@dataclass
class Dataset:
    """What a dataset kind's `load(options)` returns: a train and a test split, each a mapping of
    field name to a tensor of rows, and `info`, which the core passes through unread to the
    dataset's own pictures and to metrics (`model.dataset.info`: a mixture's modes and sigma,
    an image's shape, whatever its plugin's metrics need)."""

    train: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)  # read by the dataset's plugin and by metrics, never by the core


class DatasetKind(ABC):
    Options: type[BaseModel] | None = None
    doc = ""
    # How many samples a picture drawn during training shows (`samples/step_*.png`).
    picture_samples = 64

    @abstractmethod
    def fields(self, options: Any) -> dict[str, tuple[int, ...]]:
        """Field name -> shape, known without loading (validation uses it)."""

    @abstractmethod
    def load(self, options: Any) -> Dataset:
        """The train and test tensors, from embedded data or local files only."""

    def fresh_fields(self, options: Any) -> tuple[str, ...]:
        """The training fields drawn afresh for every batch by `per_batch` (dynamic binarisation:
        a new Bernoulli draw of each image's pixels); none by default."""
        return ()

    def per_batch(self, field: str, rows: torch.Tensor, options: Any) -> torch.Tensor:
        """A batch's rows of one of `fresh_fields`, as training sees them (drawn in the run's own
        random stream, so a resumed run draws the same)."""
        return rows

    def draw_samples(self, ax: Any, samples: torch.Tensor, info: dict[str, Any], rows: int, cols: int, row_labels: list[str] | None = None, paths: bool = False) -> None:
        """Draw generated samples on the matplotlib axes `ax` (it may resize the figure).

        `samples` holds `rows * cols` values in row order, a row sharing one setting (a class,
        one draw of the fixed latents); `row_labels` names the rows, and `paths` says that each
        row is a path through the latent space, drawn in order. `info` is the loaded dataset's.
        By default: the first two coordinates as points (a single one on a line), one colour a
        row when the rows are named or are paths."""
        pts = samples.detach().float().cpu().reshape(len(samples), -1)[:, :2]
        if pts.shape[1] < 2:
            pts = torch.cat([pts, torch.zeros(len(pts), 2 - pts.shape[1])], 1)
        if paths or row_labels:
            for r in range(rows):
                seg = pts[r * cols : (r + 1) * cols].numpy()
                label = row_labels[r] if row_labels and r < 10 else None
                ax.plot(seg[:, 0], seg[:, 1], "-o" if paths else "o", ms=3, lw=0.8, color=f"C{r % 10}", label=label)
        else:
            ax.scatter(pts[:, 0].numpy(), pts[:, 1].numpy(), s=3, alpha=0.5, color="tab:blue", label="samples", zorder=2)
        span = float(pts.abs().max()) * 1.1 + 0.1 if len(pts) else 1.0
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
        ax.set_aspect("equal")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])


class Objective(ABC):
    Options: type[BaseModel] | None = None
    doc = ""
    # What `d_loss` tends to as the discriminator wins outright (real and fake told apart
    # perfectly); a D-loss near it is a collapse. None: unbounded below, nothing to judge by.
    d_loss_min: float | None = 0.0

    @abstractmethod
    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, options: Any) -> torch.Tensor:
        """The discriminator's loss on logits of the real and the fake side."""

    @abstractmethod
    def g_loss(self, fake: torch.Tensor, options: Any, real: torch.Tensor | None = None) -> torch.Tensor:
        """The generator side's loss; `real` is given when something trainable stands behind it."""

    def prepare(self, net: nn.Module, options: Any) -> None:
        """Called before the discriminator is used on either side (e.g. WGAN's weight clipping)."""
        return None

    def d_penalty(self, net: nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor], options: Any) -> torch.Tensor | None:
        """A term added to the D-loss that needs the network and the inputs of both sides (e.g.
        WGAN-GP's gradient penalty), or None."""
        return None

    def network_shapes(self, inputs: list[tuple[int, ...]], options: Any, graph: GraphView) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
        """The discriminator's input shapes and output shape, given the judged variables' shapes.

        By default it takes the variables as they are and gives one logit; an objective may
        judge several samples at once (larger inputs) or give more logits than one."""
        return list(inputs), (1,)

    def note(self, options: Any) -> str:
        """What the discriminator does beyond telling real from fake; "" for nothing.

        The printed program adds it to the link's line, and `unigen draw` to the link's label."""
        return ""

    def shown_options(self, options: Any) -> Any:
        """The options the printed program shows in the objective's call (those not at defaults).

        All of them by default; one that `note` puts in words may be left out."""
        return options


class EnergyView(Protocol):
    """The undirected part of a model, as a sampler sees it: the variables its factors join
    and their total energy, each factor's network called as the phase runs it."""

    variables: dict[str, tuple[int, ...]]  # every variable some undirected factor joins -> its shape
    observed: tuple[str, ...]  # those of them the data gives
    device: torch.device  # where chains that start from noise are built
    dtype: torch.dtype

    def energy(self, values: dict[str, torch.Tensor]) -> torch.Tensor: ...  # (n,): the sum of the factors' energies
    def field(self, var: str, values: dict[str, torch.Tensor]) -> torch.Tensor: ...  # -dE/d var at `values` (detached): the logits of binary units


class Sampler(ABC):
    """Fills the variables of undirected factors in a trace: the sampler trace `m` (the model's
    own chain, e.g. Gibbs sampling) or the hidden units of the q-trace given the observed ones
    (e.g. mean-field inference)."""

    Options: type[BaseModel] | None = None
    doc = ""
    traces: frozenset[str] = frozenset({"m"})  # the traces it may fill: "m", "q"

    @abstractmethod
    def fill(self, energy: EnergyView, given: dict[str, torch.Tensor], data: dict[str, torch.Tensor], n: int, options: Any, state: dict[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
        """Values (n rows, detached) of every variable of `energy.variables` not in `given`.

        `given`: values held fixed (in the q-trace, the observed variables); `data`: the step's
        observed values (a chain may start there); `state`: the sampler's own tensors, kept between
        steps and in checkpoints (persistent chains); `mode`: "train" (a step of training) or
        "sample" (draws of the model itself, for pictures and metrics)."""


class Metric(ABC):
    doc = ""
    higher_is_better = True
    # False for a metric too slow for every evaluation of a training run: training computes it
    # only when the spec names it under `metrics`; `unigen evaluate` computes it when it applies.
    during_training = True
    # True for such a slow metric that is still worth computing once, after the last step, in
    # a run whose spec names no `metrics` and where no quick metric applies (a GAN on images
    # then ends with its sample quality rather than with nothing).
    fallback = False
    # Options a user may set from `unigen evaluate --option NAME.KEY=VALUE`; `compute` reads
    # `self.options` (None: the defaults).
    Options: type[BaseModel] | None = None
    options: Any = None

    def applies(self, model: ModelView) -> bool:
        return False

    @abstractmethod
    def compute(self, model: ModelView) -> dict[str, float]:
        """Metric name -> value, computed without gradients on the trained model."""


class Family:
    doc = ""

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Fill what the user's spec document leaves out; the user's keys win."""
        return doc


class Rule:
    code = ""
    doc = ""

    def check(self, graph: GraphView, registry: RegistryView) -> Iterable[Diagnostic]:
        return []


def merge_defaults(defaults: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge a family's defaults under a user's document: mappings merge, the user's
    scalars and lists win (a list of edges or phases is replaced whole, never spliced). A
    mapping that names another kind than the default (`arch` of a network, `source` of the
    data, `kind` of an optimizer) replaces the default whole: the default's options belong to
    the default's kind."""
    out = dict(defaults)
    for key, value in doc.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _other_kind(out[key], value):
            out[key] = merge_defaults(out[key], value)
        else:
            out[key] = value
    return out


def _other_kind(default: dict[str, Any], given: dict[str, Any]) -> bool:
    return any(k in given and k in default and given[k] != default[k] for k in ("arch", "source", "kind"))
