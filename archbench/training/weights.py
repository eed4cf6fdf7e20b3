"""Kept weights: a trained net's final state dict in a file, and loading it back safely.

The file is ``torch.save`` of ``{"format", "spec_hash", "state_dict", "meta"}``, loaded with
``torch.load(..., weights_only=True)`` (tensors and plain values only: loading a file never
runs code). ``spec_hash`` is the :class:`~archbench.models.net.NetSpec` hash the weights
belong to, so they are never loaded into another architecture by mistake.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archbench.errors import ArchbenchError

FORMAT = "archbench.weights/1"


class WeightsError(ArchbenchError):
    """A weights file that is missing, unreadable or for another architecture."""


def save_weights(
    net: nn.Module, path: str | Path, *, spec_hash: str, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``net``'s state dict (on the CPU) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    payload = {
        "format": FORMAT,
        "spec_hash": spec_hash,
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_weights(net: nn.Module, path: str | Path, *, spec_hash: str | None = None) -> dict:
    """Load a kept state dict into ``net``; returns the file's ``meta``. Raises
    :class:`WeightsError` for a missing or foreign file, or one of another architecture."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise WeightsError(f"weights file {str(path)!r} cannot be read: {detail}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"weights file {str(path)!r} is not an archbench weights file")
    if spec_hash is not None and payload.get("spec_hash") != spec_hash:
        raise WeightsError(
            f"weights file {str(path)!r} belongs to variant {payload.get('spec_hash')}, "
            f"not {spec_hash}"
        )
    try:
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        detail = str(exc).strip().splitlines()[0][:200]
        raise WeightsError(f"weights file {str(path)!r} does not fit the net: {detail}") from None
    return dict(payload.get("meta") or {})
