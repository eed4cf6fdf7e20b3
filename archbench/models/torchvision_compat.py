"""Load torchvision ResNet / ResNeXt / wide ResNet weights into archbench's ImageNet presets.

Block internals already carry torchvision's names (``conv1``, ``bn1``, ..., ``downsample.0``),
so only the top-level prefixes differ::

    conv1.  -> stem.conv.        layerN. -> stages.{N-1}.
    bn1.    -> stem.bn.          fc.     -> head.fc.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from archbench.errors import SpecError

_PREFIXES = (("conv1.", "stem.conv."), ("bn1.", "stem.bn."), ("fc.", "head.fc."))
_LAYER = re.compile(r"layer([1-9]\d*)\.")
_MAX_LISTED = 10  # keys shown per category in an error message


def torchvision_state_dict_to_archbench(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ResNet-style state dict to archbench's module names.

    Raises :class:`SpecError` naming every key that is not under ``conv1``, ``bn1``,
    ``layer<N>`` or ``fc`` (not a torchvision ResNet, or wrapped: strip ``module.`` first).
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        new = _rename(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise SpecError(
            f"not a torchvision ResNet state dict: {len(unknown)} key(s) outside conv1/bn1/"
            f"layer<N>/fc: {_listing(unknown)}"
        )
    return out


def _rename(key: str) -> str | None:
    for old, new in _PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    match = _LAYER.match(key)
    if match:
        return f"stages.{int(match.group(1)) - 1}." + key[match.end() :]
    return None


def load_torchvision_weights(
    net: nn.Module, tv_model_or_state_dict: nn.Module | Mapping[str, torch.Tensor]
) -> nn.Module:
    """Copy a torchvision model's (or state dict's) weights into ``net``, strictly.

    Every tensor must have a counterpart of the same shape and vice versa; otherwise a
    :class:`SpecError` lists the missing, unexpected and mis-shaped keys (in archbench's
    names) and ``net`` is left unchanged. A net built with ``device="meta"`` gets copies of the
    tensors (on their device), which skips archbench's own initialisation. Returns ``net``.
    """
    if isinstance(tv_model_or_state_dict, nn.Module):
        source: Mapping[str, torch.Tensor] = tv_model_or_state_dict.state_dict()
    else:
        source = tv_model_or_state_dict
    renamed = torchvision_state_dict_to_archbench(source)
    target = net.state_dict()
    # In module order, so the first keys listed are where the architectures part ways.
    missing = [k for k in target if k not in renamed]
    unexpected = [k for k in renamed if k not in target]
    mis_shaped = [
        f"{k} (torchvision {tuple(renamed[k].shape)}, archbench {tuple(target[k].shape)})"
        for k in target
        if k in renamed and renamed[k].shape != target[k].shape
    ]
    problems = [
        f"{label} ({len(keys)}): {_listing(keys)}"
        for label, keys in (
            ("missing in the torchvision weights", missing),
            ("not in the archbench net", unexpected),
            ("shape mismatch", mis_shaped),
        )
        if keys
    ]
    if problems:
        name = getattr(getattr(net, "spec", None), "name", "") or type(net).__name__
        raise SpecError(
            f"torchvision weights do not fit {name!r} (is it the same architecture?); "
            + "; ".join(problems)
        )
    if any(t.is_meta for t in target.values()):
        # A net built on the meta device (no memory, no init) takes copies of the tensors.
        renamed = {k: v.detach().clone() for k, v in renamed.items()}
        net.load_state_dict(renamed, strict=True, assign=True)
    else:
        net.load_state_dict(renamed, strict=True)
    return net


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")
