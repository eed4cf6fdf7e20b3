"""Shortcut paths for residual blocks.

The dimension-changing options of the ResNet paper (Sec. 3.3):

* ``A``: parameter-free. Subsample by the stride and zero-pad the extra channels.
* ``B``: identity where the shape is unchanged, a 1x1 projection (conv + BN) where it changes.
* ``C``: a 1x1 projection on every block.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from archbench.blocks.base import conv1x1
from archbench.errors import SpecError

ShortcutOption = Literal["A", "B", "C"]


class ZeroPadShortcut(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` with ``w_out - w_in`` zero channels appended."""

    def __init__(self, w_in: int, w_out: int, stride: int) -> None:
        super().__init__()
        if w_out < w_in:
            raise SpecError(
                f"shortcut option 'A' (zero-padding) cannot reduce channels {w_in} -> {w_out}; "
                "use option 'B' or 'C'"
            )
        self.extra, self.stride = w_out - w_in, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra}"


def projection(w_in: int, w_out: int, stride: int) -> nn.Sequential:
    """1x1 conv + BN (torchvision's ``downsample``)."""
    return nn.Sequential(conv1x1(w_in, w_out, stride), nn.BatchNorm2d(w_out))


def make_shortcut(option: ShortcutOption, w_in: int, w_out: int, stride: int) -> nn.Module | None:
    """The shortcut module for ``option``, or ``None`` for a pure identity."""
    same_shape = w_in == w_out and stride == 1
    if option == "C" or (option == "B" and not same_shape):
        return projection(w_in, w_out, stride)
    if same_shape:
        return None
    return ZeroPadShortcut(w_in, w_out, stride)
