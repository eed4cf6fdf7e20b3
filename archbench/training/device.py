"""Device selection, seeding and the environment record stored with every run."""

from __future__ import annotations

import contextlib
import random

import torch

from archbench.data.seeds import derive_seed  # noqa: F401  (re-exported: seeds live in one module)
from archbench.errors import SpecError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:<index>", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(preference: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA if present, else MPS, else CPU. An explicit device that is not available
    raises :class:`SpecError` rather than silently falling back."""
    if isinstance(preference, torch.device):
        preference = str(preference)
    pref = preference.strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(pref)
    except RuntimeError:
        raise SpecError(
            f"unknown device {preference!r}; allowed: {', '.join(DEVICE_CHOICES)}"
        ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError(f"device {preference!r} requested but CUDA is not available")
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise SpecError(
                f"device {preference!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise SpecError(f"device {preference!r} requested but MPS is not available")
        return device
    raise SpecError(f"unsupported device {preference!r}; allowed: {', '.join(DEVICE_CHOICES)}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (if installed) and torch (CPU and every CUDA device).

    Build the net right after this so one seed fixes its initialisation.
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency, but not of this function
        pass
    torch.manual_seed(seed)


def fork_rng(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """A scope whose draws from torch's CPU stream and ``device``'s stream are undone on exit."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index], device_type="cuda")
    if device.type == "mps":
        return torch.random.fork_rng(device_type="mps")
    return torch.random.fork_rng(devices=[])


# The environment record moved to its own module; these names stay importable from here.
from archbench.training.provenance import environment_info, git_commit  # noqa: E402, F401
