"""Wide ResNet block (Zagoruyko & Komodakis 2016): pre-activation basic block with dropout.

BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3, added to the shortcut with no activation after the
addition: the full pre-activation ``preact_basic`` block with dropout between the convs. The
width factor ``k`` is not a block param: the ``wrn`` family multiplies the stage widths
(16k, 32k, 64k).

Shortcuts as in the reference code (``wide-residual-networks``, ``pytorch/resnet.py``): where
the shape changes, the first BN-ReLU is shared by the branch and the projection, which is a
bare 1x1 conv (the reference's ``convdim``, no BN); elsewhere the identity.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.preact import PreActBasicBlock
from archbench.models.blocks.shortcuts import ShortcutOption
from archbench.registry import register_block


@dataclasses.dataclass(frozen=True)
class WideParams:
    dropout: float = 0.0  # between the two convs (WRN paper, Sec. 2.4); 0.3 in its best runs
    shortcut: ShortcutOption = "B"  # B: 1x1 conv where the shape changes (the paper's choice)

    def validate(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"param 'dropout' must be in [0, 1), got {self.dropout}")


@register_block("wide", family="wide")
class WideBlock(PreActBasicBlock):
    """Wide ResNet block: pre-activation BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 (WRN 2016)."""

    Params = WideParams

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.dropout = nn.Dropout(self.params.dropout) if self.params.dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = self._shortcut(x, pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return self.add(shortcut, out)
