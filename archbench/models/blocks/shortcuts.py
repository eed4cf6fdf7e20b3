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

from archbench.errors import SpecError
from archbench.models.blocks.base import ResidualAdd, conv1x1

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


# -- pre-activation and Fig. 2 shortcut variants (He et al. 2016, "Identity Mappings") ---------


def make_preact_shortcut(
    option: ShortcutOption, w_in: int, w_out: int, stride: int
) -> nn.Module | None:
    """The shortcut of a full pre-activation block, or ``None`` for a pure identity.

    As :func:`make_shortcut`, except that a projection is a bare 1x1 conv: it reads the
    block's pre-activated input (BN-ReLU already applied), as in the authors' code and timm's
    ``ResNetV2``; the sum is normalised by the next block's first BN.
    """
    same_shape = w_in == w_out and stride == 1
    if option == "C" or (option == "B" and not same_shape):
        return conv1x1(w_in, w_out, stride)
    if same_shape:
        return None
    return ZeroPadShortcut(w_in, w_out, stride)


class ShortcutGate(nn.Module):
    """``g(x) = sigmoid(conv1x1(x) + b)``, one gate per output channel and position.

    ``bias_init`` is the initial ``b`` (the paper explores 0 down to -7): set on construction
    and again by ``reset_special()``, which ``Net.init_weights`` calls after the He init has
    zeroed every conv bias.
    """

    def __init__(self, w_in: int, w_out: int, stride: int, bias_init: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(w_in, w_out, 1, stride=stride, bias=True)
        self.bias_init = float(bias_init)
        self.reset_special()

    def reset_special(self) -> None:
        nn.init.constant_(self.conv.bias, self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))

    def extra_repr(self) -> str:
        return f"bias_init={self.bias_init}"


class GatedAdd(ResidualAdd):
    """Gated merge: ``(1 - g) * shortcut + g * branch`` (``exclusive``) or
    ``(1 - g) * shortcut + branch`` (shortcut-only gating).

    A :class:`ResidualAdd` whose forward takes ``(shortcut, branch, gate)``, so hooks written
    for residual merges still find the shortcut in ``inputs[0]`` and the branch in
    ``inputs[1]``; its constant scales stay 1 (the gate does the scaling).
    """

    def __init__(self, exclusive: bool) -> None:
        super().__init__()
        self.exclusive = exclusive

    def forward(  # type: ignore[override]
        self, shortcut: torch.Tensor, branch: torch.Tensor, gate: torch.Tensor
    ) -> torch.Tensor:
        out = (1.0 - gate) * shortcut
        return out + (gate * branch if self.exclusive else branch)

    def extra_repr(self) -> str:
        return f"exclusive={self.exclusive}"
