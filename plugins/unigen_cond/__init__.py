"""Conditional generation: how well a generator's samples carry the label they were drawn for.

A conditional model (cGAN, conditional VAE) reads an observed label y from the data in its
p-trace (`z, y -> x`). The `cond_accuracy` metric draws x for the test split's labels and
classifies them with a nearest-neighbour classifier fit on the training split.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .metrics import CondAccuracy


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("cond_accuracy", CondAccuracy())
