"""A squeeze-and-excitation basic block (Hu et al. 2018), as an archbench plugin."""

import dataclasses

import torch
from torch import nn

from archbench.models.blocks.resnet import BasicBlock
from archbench.registry import register_block


@register_block("se_basic", family="se")
class SEBasicBlock(BasicBlock):
    """ResNet basic block whose branch is reweighted per channel by a squeeze-excitation gate."""

    @dataclasses.dataclass(frozen=True)
    class Params:
        shortcut: str = "B"
        reduction: int = 16

    def __init__(self, w_in: int, w_out: int, stride: int, **params: object) -> None:
        super().__init__(w_in, w_out, stride, **params)
        hidden = max(1, w_out // self.params.reduction)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(w_out, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, w_out, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.add(shortcut, out * self.se(out)))
