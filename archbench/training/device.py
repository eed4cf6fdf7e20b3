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


def parse_gpus(text: str | None) -> tuple[int, ...] | None:
    """``--gpus 0,3`` as device indices (no repeats), or ``None`` when not given."""
    if text is None or str(text).strip() == "":
        return None
    indices: list[int] = []
    for part in str(text).split(","):
        word = part.strip()
        if not word.isdigit():
            raise SpecError(
                f"--gpus {text!r}: {word!r} is not a device index; give indices like 0,3"
            )
        if int(word) in indices:
            raise SpecError(f"--gpus {text!r}: device {word} is listed twice")
        indices.append(int(word))
    return tuple(indices)


def place_workers(
    workers: int, preference: str = "auto", gpus: tuple[int, ...] | None = None
) -> list[str]:
    """The device each of ``workers`` local worker processes trains on.

    With CUDA (``auto`` on a machine with GPUs, or ``cuda`` without an index) worker k goes
    to the k-th of the chosen devices, modulo their number (``gpus``: indices, default all
    visible ones), so several workers may share one device. Any other preference (``cpu``,
    ``mps``, ``cuda:1``) is given to every worker unchanged; ``gpus`` with such a preference,
    or naming an absent device, is a :class:`SpecError`.
    """
    pref = preference.strip().lower()
    spreads = pref == "cuda" or (pref == "auto" and torch.cuda.is_available())
    if gpus is not None and not spreads:
        raise SpecError(
            f"--gpus needs CUDA devices (--device auto or cuda), got --device {preference!r}"
            + ("" if torch.cuda.is_available() else " on a machine without CUDA")
        )
    if not spreads:
        return [preference] * workers
    if not torch.cuda.is_available():
        raise SpecError(f"device {preference!r} requested but CUDA is not available")
    count = torch.cuda.device_count()
    chosen = gpus if gpus is not None else tuple(range(count))
    absent = [i for i in chosen if i >= count]
    if absent or not chosen:
        raise SpecError(
            f"--gpus {','.join(map(str, chosen))}: only {count} CUDA device(s) visible "
            f"(indices 0..{count - 1})"
        )
    return [f"cuda:{chosen[k % len(chosen)]}" for k in range(workers)]


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
