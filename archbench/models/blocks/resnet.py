"""ResNet v1 blocks (He et al. 2015) and their plain (shortcut-free) twins.

Post-activation: conv-BN-ReLU ... conv-BN, add the shortcut, then ReLU. Module names follow
torchvision (``conv1``, ``bn1``, ..., ``downsample``), so its weights load by a prefix rename.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import Block, ResidualAdd, conv1x1, conv3x3
from archbench.models.blocks.shortcuts import ShortcutOption, make_shortcut
from archbench.registry import register_block


@dataclasses.dataclass(frozen=True)
class BasicParams:
    shortcut: ShortcutOption = "B"


@dataclasses.dataclass(frozen=True)
class BottleneckParams:
    shortcut: ShortcutOption = "B"
    expansion: int = 4  # w_out / bottleneck width (before groups/base_width scaling)
    groups: int = 1  # cardinality of the 3x3 conv (ResNeXt)
    base_width: int = 64  # width per group for a 64-wide bottleneck (torchvision convention)

    def validate(self) -> None:
        for name in ("expansion", "groups", "base_width"):
            if getattr(self, name) < 1:
                raise SpecError(f"param {name!r} must be >= 1, got {getattr(self, name)}")


def bottleneck_width(w_out: int, expansion: int, groups: int, base_width: int) -> int:
    """Width of the grouped 3x3 conv: torchvision's ``int(planes * base_width / 64) * groups``."""
    return int((w_out // expansion) * (base_width / 64.0)) * groups


@register_block("basic", family="resnet")
class BasicBlock(Block):
    """ResNet basic block: 3x3, 3x3, post-activation (ReLU after the addition)."""

    Params = BasicParams
    residual = True
    layout = "basic"

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.conv1 = conv3x3(w_in, w_out, stride)
        self.bn1 = nn.BatchNorm2d(w_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(w_out, w_out)
        self.bn2 = nn.BatchNorm2d(w_out)
        if self.residual:
            self.downsample = make_shortcut(self.params.shortcut, w_in, w_out, stride)
            self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            shortcut = x if self.downsample is None else self.downsample(x)
            out = self.add(shortcut, out)
        return self.relu(out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)


@register_block("bottleneck", family="resnet")
class BottleneckBlock(Block):
    """ResNet bottleneck: 1x1 reduce, 3x3 (stride here, as torchvision), 1x1 expand x4."""

    Params = BottleneckParams
    residual = True
    layout = "bottleneck"

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        p = self.params
        if w_out % p.expansion:
            raise self.fail(f"w_out {w_out} must be divisible by expansion {p.expansion}")
        mid = bottleneck_width(w_out, p.expansion, p.groups, p.base_width)
        if mid < p.groups:
            raise self.fail(
                f"bottleneck width {mid} (w_out {w_out}) is smaller than groups {p.groups}"
            )
        self.conv1 = conv1x1(w_in, mid)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = conv3x3(mid, mid, stride, groups=p.groups)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = conv1x1(mid, w_out)
        self.bn3 = nn.BatchNorm2d(w_out)
        self.relu = nn.ReLU(inplace=True)
        if self.residual:
            self.downsample = make_shortcut(p.shortcut, w_in, w_out, stride)
            self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            shortcut = x if self.downsample is None else self.downsample(x)
            out = self.add(shortcut, out)
        return self.relu(out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


@register_block("plain_basic", family="plain")
class PlainBasicBlock(BasicBlock):
    """Plain twin of ``basic``: the same two 3x3 conv-BN-ReLU layers, no shortcut."""

    residual = False
    zero_init_last = None  # no shortcut: a zeroed branch would cut the signal

    @dataclasses.dataclass(frozen=True)
    class Params:
        pass


@register_block("plain_bottleneck", family="plain")
class PlainBottleneckBlock(BottleneckBlock):
    """Plain twin of ``bottleneck``: the same 1x1, 3x3, 1x1 layers, no shortcut."""

    residual = False
    zero_init_last = None

    @dataclasses.dataclass(frozen=True)
    class Params:
        expansion: int = 4
        groups: int = 1
        base_width: int = 64
        validate = BottleneckParams.validate
