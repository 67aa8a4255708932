"""The run's random streams: one seed for training, and fixed offsets from it for what must
not disturb training (sample pictures, health checks, metrics), each drawn in a forked stream."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Streams forked from `train.seed`: every picture of a run draws the same noise, and so do the
# health checks and every metric, whatever else ran before them.
SAMPLES_SEED_OFFSET = 777
HEALTH_SEED_OFFSET = 4242
METRICS_SEED_OFFSET = 12345


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, torch and (if present) numpy; returns the generator of the data order."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for training
        pass
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@contextmanager
def fork_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Run a block with its own seeded random streams, leaving the caller's (CPU and, on a GPU,
    the device's) exactly as they were: evaluation and samples change no result."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
