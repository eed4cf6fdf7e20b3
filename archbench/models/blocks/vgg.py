"""VGG plain stacks (Simonyan & Zisserman 2015) with batch norm (torchvision ``vgg*_bn``).

A ``vgg`` block is one conv layer: ``[2x2 max-pool if stride 2] -> 3x3 conv -> BN -> ReLU``.
VGG halves the grid with a max-pool *between* its conv groups; here that pool opens the first
block of the next stage (``stride=2``), so a stage is one VGG conv group. The fifth pool, after
the last group, opens the ``vgg`` head. The first conv is the ``vgg`` stem (a stride-1 block).
Convs keep their bias by default (``bias=True``), as VGG and torchvision do even with BN, so
parameter counts equal torchvision's.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import Block, Head, Stem
from archbench.registry import HEADS, STEMS, register_block


@dataclasses.dataclass(frozen=True)
class VGGParams:
    bn: bool = True  # batch norm after each conv (torchvision vgg*_bn); False: original VGG
    bias: bool = True  # conv bias (VGG/torchvision keep it even before BN)


def vgg_layers(w_in: int, w_out: int, stride: int, p: VGGParams) -> OrderedDict[str, nn.Module]:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if stride == 2:
        layers["pool"] = nn.MaxPool2d(2, stride=2)
    layers["conv"] = nn.Conv2d(w_in, w_out, 3, padding=1, bias=p.bias)
    if p.bn:
        layers["bn"] = nn.BatchNorm2d(w_out)
    layers["relu"] = nn.ReLU(inplace=True)
    return layers


@register_block("vgg", family="vgg")
class VGGBlock(Block):
    """VGG layer: [2x2 max-pool if stride 2] -> 3x3 conv -> BN -> ReLU, no shortcut."""

    Params = VGGParams
    residual = False

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        for name, layer in vgg_layers(w_in, w_out, stride, self.params).items():
            self.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x

    def output_size(self, size: int) -> int:
        return size // self.stride  # max-pool 2x2/2 without padding floors, as torchvision


@STEMS.register("vgg")
class VGGStem(Stem):
    """VGG's first layer: 3x3 conv -> BN -> ReLU at full resolution (params as ``vgg``)."""

    component_name = "vgg"
    Params = VGGParams

    def __init__(self, in_channels: int, w_out: int, **params: object) -> None:
        super().__init__(in_channels, w_out, **params)
        for name, layer in vgg_layers(in_channels, w_out, 1, self.params).items():
            self.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x

    def output_size(self, size: int) -> int:
        return size


@HEADS.register("vgg")
class VGGHead(Head):
    """2x2 max-pool -> adaptive avg-pool to ``grid`` -> [2 x (fc ``hidden``, ReLU, dropout)] -> fc."""

    component_name = "vgg"

    @dataclasses.dataclass(frozen=True)
    class Params:
        hidden: int = 0  # 0: one fc (CIFAR VGGs); 4096: the ImageNet classifier
        grid: int = 1  # pooled grid before the classifier (torchvision: 7)
        dropout: float = 0.0  # after each hidden fc (torchvision: 0.5)

        def validate(self) -> None:
            if self.hidden < 0:
                raise SpecError(f"param 'hidden' must be >= 0, got {self.hidden}")
            if self.grid < 1:
                raise SpecError(f"param 'grid' must be >= 1, got {self.grid}")
            if not 0.0 <= self.dropout < 1.0:
                raise SpecError(f"param 'dropout' must be in [0, 1), got {self.dropout}")

    def __init__(self, w_in: int, num_classes: int, **params: object) -> None:
        super().__init__(w_in, num_classes, **params)
        p = self.params
        # VGG's fifth pool; ceil mode keeps a 1x1 map (small inputs) at 1x1.
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(p.grid)
        features = w_in * p.grid * p.grid
        layers: list[nn.Module] = []
        if p.hidden:
            for _ in range(2):  # torchvision's classifier indices: fc, ReLU, dropout, ...
                layers += [nn.Linear(features, p.hidden), nn.ReLU(inplace=True)]
                layers.append(nn.Dropout(p.dropout) if p.dropout else nn.Identity())
                features = p.hidden
        elif p.dropout:
            layers.append(nn.Dropout(p.dropout))
        layers.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.pool(x))
        return self.classifier(x.flatten(1))
