"""Coupled networks: several ports over one parameter set, and the pair agreement of coupled
generators.

`shared` is CoGAN's weight sharing (Liu & Tuzel 2016): the generators of two domains share
their first layers (the high-level structure of an image) and the discriminators their last
ones, so that one z gives a corresponding pair though the data pairs no images. An edge names
a port (`net: g.a`); the ports form one module whose parameters the optimizer sees once.
`tied` is one weight matrix read both ways (W and W^T), as in an RBM.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .metrics import PairAgreement
from .nets import SharedArch, TiedArch


@hookimpl
def unigen_register_networks(register: Any) -> None:
    register("shared", SharedArch())
    register("tied", TiedArch())


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("pair_agreement", PairAgreement())
