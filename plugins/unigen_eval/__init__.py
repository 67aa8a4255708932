"""Offline evaluation metrics: image statistics in a locally trained classifier's feature
space (FID, KID, precision/recall, density/coverage, classifier score, class entropy, each
beside its real-vs-real floor) and the code-to-class accuracy of an InfoGAN code.

They are slow next to a training step, so training computes them only when a spec names them
under `metrics`; `unigen evaluate` computes every one that applies.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .metrics import CodeAccuracy, SampleQuality


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("quality", SampleQuality())
    register("code_accuracy", CodeAccuracy())
