"""The wake-sleep family (Hinton et al. 1995): the Helmholtz machine's two phases as terms.

In the unifying view, wake fits the generative model to the q-trace (data through the
recognition network, sampled without reparameterisation), and sleep fits the recognition
network to the p-trace (dreams from the generative model): each phase is a maximum
likelihood fit of one joint to samples of the other, and only one side learns in each.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .terms import HelmholtzFamily, Sleep, Wake


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("wake", Wake())
    register("sleep", Sleep())


@hookimpl
def unigen_register_families(register: Any) -> None:
    register("helmholtz", HelmholtzFamily())
