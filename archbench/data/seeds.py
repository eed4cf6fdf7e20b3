"""Derive independent generator seeds from tuples of integers (seed, epoch, stream, ...)."""

from __future__ import annotations

import numpy as np
import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part (``SeedSequence`` hashing: no collisions
    between e.g. (seed=1, epoch=0) and (seed=0, epoch=1))."""
    if any(p < 0 for p in parts):
        raise ValueError(f"seed parts must be >= 0, got {parts}")
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`mix_seed` of ``parts``."""
    return torch.Generator(device="cpu").manual_seed(mix_seed(*parts))
