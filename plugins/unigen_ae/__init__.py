"""The autoencoder family: reconstruction (plain, or denoising), a sparsity penalty on the
code, an `ae` family and the held-out reconstruction error.

In the unifying view an autoencoder is the wake phase without the KL: the q-trace (data
through the encoder, possibly deterministic) is scored by the decoder's conditional alone.
A sparse autoencoder adds a penalty on the q-trace's code; a denoising one encodes a
corrupted copy of the data and scores the clean one.
"""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from .terms import AEFamily, Recon, ReconError, Sparsity


@hookimpl
def unigen_register_terms(register: Any) -> None:
    register("recon", Recon())
    register("sparsity", Sparsity())


@hookimpl
def unigen_register_families(register: Any) -> None:
    register("ae", AEFamily())


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("recon_error", ReconError())
