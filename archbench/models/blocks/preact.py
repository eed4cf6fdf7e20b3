"""Activation orderings of He et al. 2016, "Identity Mappings in Deep Residual Networks", Fig. 4.

Each ordering comes as a basic (3x3, 3x3) and a bottleneck (1x1, 3x3, 1x1) block with the
same params and width semantics as ``basic`` / ``bottleneck`` in :mod:`archbench.models.blocks.resnet`:

====  ========================  ======================================================
Fig.  blocks                    layer order (``+``: the addition)
====  ========================  ======================================================
4(a)  ``basic``, ``bottleneck``  conv-BN-ReLU ... conv-BN, +, ReLU (the original; not here)
4(b)  ``*_bn_after_add``        conv-BN-ReLU ... conv, +, BN, ReLU
4(c)  ``*_relu_before_add``     conv-BN-ReLU ... conv-BN-ReLU, +
4(d)  ``*_relu_preact``         ReLU-conv-BN ... ReLU-conv-BN, +
4(e)  ``preact_*``              BN-ReLU-conv ... BN-ReLU-conv, + (full pre-activation)
====  ========================  ======================================================

(b)-(d) reuse the modules of the original blocks (same names and shapes, so weights move
between them); they only change the forward. Their shortcut reads the raw block input.

Full pre-activation (e): the first BN-ReLU is computed once and shared: the branch and a
*projection* shortcut (options B/C) both read it, as in the authors' code and timm's
``ResNetV2``; the projection is then a bare 1x1 conv (:func:`make_preact_shortcut`). An
identity or zero-pad (option A) shortcut reads the raw input, which keeps the clean path clean.
The stride sits on the 3x3 conv of the bottleneck, as in ``bottleneck`` (torchvision v1.5),
not on the first 1x1 as in the authors' Torch code; the parameter count is the same.

``zero_init_last`` is offered where silencing the branch leaves the block equal to its
shortcut (an identity for identity shortcuts) and the branch can still learn:

* (d): zero the last BN scale, as the original blocks;
* (e): the branch ends in a conv, not a BN: zero that conv's weight (Fixup, timm's
  ``PreActBottleneck``). Its gradient (input activations times the output gradient) is
  non-zero, so it leaves zero on the first step, just as a zeroed BN scale does;
* not (b): the BN after the addition still normalises the trunk, so the block would be
  ``ReLU(BN(x))``, not ``x``;
* not (c): zeroing the last BN scale gives ``ReLU(0)`` whose gradient is 0 in PyTorch: the
  branch would stay dead for good.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archbench.models.blocks.base import Block, ResidualAdd, conv1x1, conv3x3
from archbench.models.blocks.resnet import (
    BasicBlock,
    BasicParams,
    BottleneckBlock,
    BottleneckParams,
    bottleneck_width,
)
from archbench.models.blocks.shortcuts import make_preact_shortcut
from archbench.registry import register_block


def _shortcut(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    downsample = block.downsample
    return x if downsample is None else downsample(x)


# -- Fig. 4(b): BN after addition -----------------------------------------------------------


@register_block("basic_bn_after_add", family="preact")
class BasicBNAfterAddBlock(BasicBlock):
    """Basic block, BN after addition (He et al. 2016, Fig. 4(b)): conv-BN-ReLU-conv, +, BN-ReLU."""

    zero_init_last = None  # the trunk BN stays: a silent branch gives ReLU(BN(x)), not x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.add(_shortcut(self, x), self.conv2(out))
        return self.relu(self.bn2(out))


@register_block("bottleneck_bn_after_add", family="preact")
class BottleneckBNAfterAddBlock(BottleneckBlock):
    """Bottleneck, BN after addition (He et al. 2016, Fig. 4(b)): ... 1x1 conv, +, BN-ReLU."""

    zero_init_last = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.add(_shortcut(self, x), self.conv3(out))
        return self.relu(self.bn3(out))


# -- Fig. 4(c): ReLU before addition --------------------------------------------------------


@register_block("basic_relu_before_add", family="preact")
class BasicReLUBeforeAddBlock(BasicBlock):
    """Basic block, ReLU before addition (He et al. 2016, Fig. 4(c)): the branch is >= 0."""

    zero_init_last = None  # ReLU(0) has zero gradient: a zeroed BN scale would never recover

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.add(_shortcut(self, x), out)


@register_block("bottleneck_relu_before_add", family="preact")
class BottleneckReLUBeforeAddBlock(BottleneckBlock):
    """Bottleneck, ReLU before addition (He et al. 2016, Fig. 4(c)): the branch is >= 0."""

    zero_init_last = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.relu(self.bn3(self.conv3(out)))
        return self.add(_shortcut(self, x), out)


# -- Fig. 4(d): ReLU-only pre-activation ----------------------------------------------------


@register_block("basic_relu_preact", family="preact")
class BasicReLUPreActBlock(BasicBlock):
    """Basic block, ReLU-only pre-activation (He et al. 2016, Fig. 4(d)): ReLU-conv-BN x2, +."""

    head_pre_act = True  # ends at the addition, un-activated

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.relu_in = nn.ReLU()  # not in place: the shortcut still needs the raw input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(self.relu_in(x)))
        out = self.bn2(self.conv2(self.relu(out)))
        return self.add(_shortcut(self, x), out)


@register_block("bottleneck_relu_preact", family="preact")
class BottleneckReLUPreActBlock(BottleneckBlock):
    """Bottleneck, ReLU-only pre-activation (He et al. 2016, Fig. 4(d)): ReLU-conv-BN x3, +."""

    head_pre_act = True

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.relu_in = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(self.relu_in(x)))
        out = self.bn2(self.conv2(self.relu(out)))
        out = self.bn3(self.conv3(self.relu(out)))
        return self.add(_shortcut(self, x), out)


# -- Fig. 4(e): full pre-activation ---------------------------------------------------------


class _PreActBlock(Block):
    """Shared shortcut handling of the full pre-activation blocks."""

    residual = True
    stem_pre_act = True  # BN-ReLU first: the first block normalises the stem's conv
    head_pre_act = True

    def _make_shortcut(self) -> None:
        self.downsample = make_preact_shortcut(
            self.params.shortcut, self.w_in, self.w_out, self.stride
        )
        # A shortcut with weights (a projection) reads the shared BN-ReLU output; an identity
        # or zero-pad shortcut reads the raw input.
        self.shortcut_preact = self.downsample is not None and any(
            True for _ in self.downsample.parameters()
        )
        self.add = ResidualAdd()

    def _shortcut(self, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        if self.downsample is None:
            return x
        return self.downsample(pre if self.shortcut_preact else x)


@register_block("preact_basic", family="preact")
class PreActBasicBlock(_PreActBlock):
    """Full pre-activation basic block (He et al. 2016, Fig. 4(e)): BN-ReLU-conv x2, +."""

    Params = BasicParams
    layout = "basic"

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.bn1 = nn.BatchNorm2d(w_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(w_in, w_out, stride)
        self.bn2 = nn.BatchNorm2d(w_out)
        self.conv2 = conv3x3(w_out, w_out)
        self._make_shortcut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = self._shortcut(x, pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.add(shortcut, out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)


@register_block("preact_bottleneck", family="preact")
class PreActBottleneckBlock(_PreActBlock):
    """Full pre-activation bottleneck (He et al. 2016, Fig. 4(e)): BN-ReLU-conv x3, +."""

    Params = BottleneckParams
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
        self.bn1 = nn.BatchNorm2d(w_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv1x1(w_in, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = conv3x3(mid, mid, stride, groups=p.groups)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = conv1x1(mid, w_out)
        self._make_shortcut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = self._shortcut(x, pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return self.add(shortcut, out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)
