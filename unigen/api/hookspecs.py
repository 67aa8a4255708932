"""Hook specifications. Each hook receives a `register(name, obj)` callback.

A plugin implements only the hooks it needs, with `@unigen.hookimpl`. `register` records
the calling plugin, so the registry can name both plugins when a kind is registered twice.
The protocols the registered objects follow live in `unigen.kinds`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("unigen")


hookimpl = pluggy.HookimplMarker("unigen")


Register = Callable[[str, Any], None]


# Bumped when a hook or a kind's protocol changes incompatibly. A plugin module may set
# `UNIGEN_PLUGIN_API = N`; a different N is refused with a clear error (P003).
PLUGIN_API = 1


@hookspec
def unigen_register_families(register: Register) -> None:
    """Families: objects with `complete(doc) -> doc` filling a spec's defaults (`kinds.Family`)."""


@hookspec
def unigen_register_terms(register: Register) -> None:
    """Loss terms a phase can sum (`kinds.Term`)."""


@hookspec
def unigen_register_objectives(register: Register) -> None:
    """Adversarial objectives selectable on an adversarial edge (`kinds.Objective`)."""


@hookspec
def unigen_register_networks(register: Register) -> None:
    """Network architectures, sized from the shapes of the edge they compute (`kinds.Arch`)."""


@hookspec
def unigen_register_distributions(register: Register) -> None:
    """Output distributions of edges, also usable as priors (`kinds.Dist`)."""


@hookspec
def unigen_register_datasets(register: Register) -> None:
    """Datasets a spec's `data.source` can name (`kinds.DatasetKind`)."""


@hookspec
def unigen_register_metrics(register: Register) -> None:
    """Metrics computed on a trained model where they apply (`kinds.Metric`)."""


@hookspec
def unigen_register_rules(register: Register) -> None:
    """Validation rules run on every spec's graph (`kinds.Rule`)."""


@hookspec
def unigen_register_optimizers(register: Register) -> None:
    """Optimizers a phase can name: callables `(params, **options) -> torch.optim.Optimizer`."""


@hookspec
def unigen_register_trackers(register: Register) -> None:
    """Experiment trackers a run reports to: factories of `trackers.Tracker` objects with
    `on_start`, `on_metrics` and `on_end` (`always = True`: every run; else named by `--track`)."""


@hookspec
def unigen_register_samplers(register: Register) -> None:
    """Samplers that fill the variables of undirected factors: the sampler trace `m` (a chain of
    the model, e.g. Gibbs) or the q-trace's hidden units (e.g. mean-field inference) (`kinds.Sampler`)."""
