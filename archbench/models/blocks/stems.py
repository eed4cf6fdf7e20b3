"""Stems (the layers before the first stage) and heads (pooling + classifier)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import ConvBNAct, Head, Stem, conv3x3
from archbench.registry import HEADS, STEMS


@STEMS.register("cifar")
class CifarStem(Stem):
    """3x3 conv, BN, ReLU at full resolution (ResNet paper, CIFAR); ``pre_act``: conv only."""

    component_name = "cifar"

    @dataclasses.dataclass(frozen=True)
    class Params:
        # Pre-activation nets start with a bare conv: the first block normalises its input.
        pre_act: bool = False

    def __init__(self, in_channels: int, w_out: int, **params: object) -> None:
        super().__init__(in_channels, w_out, **params)
        self.conv = conv3x3(in_channels, w_out)
        if not self.params.pre_act:
            self.bn = nn.BatchNorm2d(w_out)
            self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if not self.params.pre_act:
            x = self.relu(self.bn(x))
        return x

    def output_size(self, size: int) -> int:
        return size


@STEMS.register("imagenet")
class ImageNetStem(Stem):
    """7x7/2 conv, BN, ReLU, 3x3/2 max-pool (ResNet paper, ImageNet); ``pre_act``: no BN-ReLU."""

    component_name = "imagenet"

    @dataclasses.dataclass(frozen=True)
    class Params:
        pre_act: bool = False

    def __init__(self, in_channels: int, w_out: int, **params: object) -> None:
        super().__init__(in_channels, w_out, **params)
        self.conv = nn.Conv2d(in_channels, w_out, 7, stride=2, padding=3, bias=False)
        if not self.params.pre_act:
            self.bn = nn.BatchNorm2d(w_out)
            self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if not self.params.pre_act:
            x = self.relu(self.bn(x))
        return self.pool(x)

    def output_size(self, size: int) -> int:
        return math.ceil(math.ceil(size / 2) / 2)


@HEADS.register("linear")
class LinearHead(Head):
    """[BN-ReLU if ``pre_act``] [1x1 conv-BN-ReLU if ``conv_width``] -> global average pool
    -> [dropout] -> fully connected."""

    component_name = "linear"

    @dataclasses.dataclass(frozen=True)
    class Params:
        pre_act: bool = False  # pre-activation nets end with BN-ReLU before pooling
        conv_width: int = 0  # 0: none; Inception-ResNet-v2 has a 1x1 conv to 1536
        dropout: float = 0.0

        def validate(self) -> None:
            if not 0.0 <= self.dropout < 1.0:
                raise SpecError(f"param 'dropout' must be in [0, 1), got {self.dropout}")
            if self.conv_width < 0:
                raise SpecError(f"param 'conv_width' must be >= 0, got {self.conv_width}")

    def __init__(self, w_in: int, num_classes: int, **params: object) -> None:
        super().__init__(w_in, num_classes, **params)
        p = self.params
        if p.pre_act:
            self.bn = nn.BatchNorm2d(w_in)
            self.relu = nn.ReLU(inplace=True)
        if p.conv_width:
            self.conv = ConvBNAct(w_in, p.conv_width, 1)
            w_in = p.conv_width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p.dropout) if p.dropout else nn.Identity()
        self.fc = nn.Linear(w_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.params.pre_act:
            x = self.relu(self.bn(x))
        if self.params.conv_width:
            x = self.conv(x)
        x = self.pool(x).flatten(1)
        return self.fc(self.dropout(x))
