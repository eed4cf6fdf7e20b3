"""Every seed archbench derives, in one module: named streams and integer tuples.

Two schemes, both kept because stored results depend on their exact numbers (changing either
changes every run's data order, dropout masks or splits):

* :func:`derive_seed` (``seed``, ``"data"`` | ``"dropout"`` | ``"diagnostics"``): a 31-bit
  seed per named stream of the trainer, from SHA-256;
* :func:`mix_seed` / :func:`generator` (``seed, epoch, ...``): a 63-bit seed per integer
  tuple for the data layer (shuffles, augmentation, splits), from NumPy's ``SeedSequence``.

Both are pure functions of their arguments; neither touches a global generator.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, stream: str) -> int:
    """An independent 31-bit seed for a named random stream ("data", "dropout", ...)."""
    digest = hashlib.sha256(f"archbench:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**31 - 1)


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
