"""Normalising flows: the `flow` distribution (an exact density by change of variables through
an invertible network), the `realnvp` architecture (Dinh et al. 2017) and the rule (G021) that
a flow's network inverts and gives its log-determinant."""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .dist import FlowDist
from .realnvp import RealNVPArch
from .rules import InvertibleRule


@hookimpl
def unigen_register_networks(register: Any) -> None:
    register("realnvp", RealNVPArch())


@hookimpl
def unigen_register_distributions(register: Any) -> None:
    register("flow", FlowDist())


@hookimpl
def unigen_register_rules(register: Any) -> None:
    register("invertible", InvertibleRule())
