"""CycleGAN (Zhu et al. 2017) pieces: a consistency term between two trace values, and the
error of a learnt translation against the true one where the dataset knows it.

Two observed domains a and b, read from unpaired data; the p-trace translates each into the
other (`a -> ab` by G, `b -> ba` by F) and back (`ab -> aba` by F, `ba -> bab` by G, the same
networks on a second edge); two adversarial links judge the translations against each
domain's data; `consistency` terms pull aba towards a and bab towards b.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .terms import Consistency, TranslationError


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("consistency", Consistency())


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("translation_error", TranslationError())
