"""Shortcut variants of He et al. 2016, "Identity Mappings in Deep Residual Networks", Fig. 2.

All are the original post-activation basic block (``basic``: conv-BN-ReLU-conv-BN, merge,
ReLU), as in the paper's ResNet-110 experiments (its Table 1), with a different shortcut or
merge:

================================  =====  ===========================================  ==========
block                             Fig.   merge (before the final ReLU)                paper
================================  =====  ===========================================  ==========
``basic_scaled``                  2(b)   ``shortcut_scale * h(x) + branch_scale * F``  0.5 / 0.5
``basic_exclusive_gating``        2(c)   ``(1 - g) * h(x) + g * F``                    b0 = -6
``basic_shortcut_gating``         2(d)   ``(1 - g) * h(x) + F``                        b0 = -6
``basic_conv_shortcut``           2(e)   ``conv1x1(x) + F`` on every block (option C)
``basic_dropout_shortcut``        2(f)   ``dropout(h(x)) + F``                         ratio 0.5
================================  =====  ===========================================  ==========

Both the 1x1 conv and the dropout shortcut are the paper's by default: a bare 1x1 conv, and
dropout that imposes a scale with expectation ``1 - dropout`` (0.5) on the shortcut. The
forms the stored results before 2026-12 used are options: ``shortcut_bn: true`` (conv + BN,
option C of He et al. 2015) and ``inverted: true`` (``nn.Dropout``: kept values x2 in
training, expected scale 1).

``h(x)`` is the usual shortcut (``shortcut`` option A/B/C where the shape changes) and
``g(x) = sigmoid(conv1x1(x) + b)`` a per-channel, per-position gate computed from the block
input; its bias starts at ``gate_bias`` (:class:`ShortcutGate`, applied in ``reset_special``).
Every merge is a :class:`~archbench.models.blocks.base.ResidualAdd` (the gated one a subclass whose
forward also takes the gate), so hooks see the shortcut and the branch.

``zero_init_last`` (inherited from ``basic``) silences the branch, so each block starts as
its shortcut path: which is exactly the path these variants change.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import ResidualAdd
from archbench.models.blocks.resnet import BasicBlock
from archbench.models.blocks.shortcuts import GatedAdd, ShortcutGate, ShortcutOption
from archbench.registry import register_block


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise SpecError(f"param {name!r} must be a finite number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ScaledParams:
    shortcut: ShortcutOption = "B"
    # Table 1 of the paper: 0.5 / 1 fails to converge; 0.5 / 0.5 trains (12.35% error).
    shortcut_scale: float = 0.5
    branch_scale: float = 0.5

    def validate(self) -> None:
        for name in ("shortcut_scale", "branch_scale"):
            value = getattr(self, name)
            _check_finite(name, value)
            if value <= 0:
                raise SpecError(f"param {name!r} must be > 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class GatingParams:
    shortcut: ShortcutOption = "B"
    # Initial gate bias b0; the paper's best is -6 (b0 in 0..-5 fails for exclusive gating).
    gate_bias: float = -6.0

    def validate(self) -> None:
        _check_finite("gate_bias", self.gate_bias)


@dataclasses.dataclass(frozen=True)
class ConvShortcutParams:
    # Pinned into the spec hash: the default was conv + BN before 2026-12-04.
    PINNED: ClassVar[tuple[str, ...]] = ("shortcut_bn",)
    # False: a bare 1x1 conv as drawn in Fig. 2(e); True: conv + BN, option C of He et al. 2015.
    shortcut_bn: bool = False

    @property
    def shortcut(self) -> ShortcutOption:
        """Read by ``BasicBlock``: a 1x1 conv on every block is option C by definition."""
        return "C"


@dataclasses.dataclass(frozen=True)
class DropoutShortcutParams:
    shortcut: ShortcutOption = "B"
    dropout: float = 0.5  # probability of zeroing a shortcut element while training
    # Pinned into the spec hash: the default was inverted dropout before 2026-12-04.
    PINNED: ClassVar[tuple[str, ...]] = ("inverted",)
    # False: the paper's dropout (kept values unscaled in training, x (1 - dropout) at
    # evaluation: expected scale 1 - dropout); True: inverted dropout (expected scale 1).
    inverted: bool = False

    def validate(self) -> None:
        _check_finite("dropout", self.dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"param 'dropout' must be in [0, 1), got {self.dropout!r}")


@register_block("basic_scaled", family="shortcut")
class BasicScaledBlock(BasicBlock):
    """Basic block, constant scaling (He et al. 2016, Fig. 2(b)): ReLU(a*h(x) + b*F(x))."""

    Params = ScaledParams

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.add = ResidualAdd(self.params.shortcut_scale, self.params.branch_scale)


class _GatedBasicBlock(BasicBlock):
    """Basic block whose merge is gated by ``g(x) = sigmoid(conv1x1(x) + b)``."""

    Params = GatingParams
    exclusive = True

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.gate = ShortcutGate(w_in, w_out, stride, self.params.gate_bias)
        self.add = GatedAdd(exclusive=self.exclusive)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.add(shortcut, out, self.gate(x)))


@register_block("basic_exclusive_gating", family="shortcut")
class BasicExclusiveGatingBlock(_GatedBasicBlock):
    """Basic block, exclusive gating (He et al. 2016, Fig. 2(c)): ReLU((1-g)*h(x) + g*F(x))."""

    exclusive = True


@register_block("basic_shortcut_gating", family="shortcut")
class BasicShortcutGatingBlock(_GatedBasicBlock):
    """Basic block, shortcut-only gating (He et al. 2016, Fig. 2(d)): ReLU((1-g)*h(x) + F(x))."""

    exclusive = False


@register_block("basic_conv_shortcut", family="shortcut")
class BasicConvShortcutBlock(BasicBlock):
    """Basic block, 1x1 conv shortcut on every block (He et al. 2016, Fig. 2(e)).

    The default is the paper's bare 1x1 conv; ``shortcut_bn: true`` puts a BatchNorm after
    it (option C of He et al. 2015; the preact_orderings results before 2026-12 used it).
    """

    Params = ConvShortcutParams

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        if not self.params.shortcut_bn:
            self.downsample = self.downsample[0]  # keep the conv, drop its BN


@register_block("basic_dropout_shortcut", family="shortcut")
class BasicDropoutShortcutBlock(BasicBlock):
    """Basic block, dropout on the shortcut (He et al. 2016, Fig. 2(f)): ReLU(drop(h(x)) + F(x)).

    The default is the paper's: in training each shortcut element is zeroed with probability
    ``dropout`` and kept values are not rescaled; at evaluation the shortcut is multiplied by
    its expectation ``1 - dropout`` (0.5 at the paper's ratio). That imposed expected scale is
    why it fails like constant scaling. ``inverted: true`` is ``nn.Dropout`` (kept values
    x ``1 / (1 - dropout)``, identity at evaluation; the preact_orderings results before
    2026-12 used it).
    """

    Params = DropoutShortcutParams

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        p = self.params.dropout
        self.shortcut_drop = nn.Dropout(p) if self.params.inverted else ScaleDropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.add(self.shortcut_drop(shortcut), out))


class ScaleDropout(nn.Module):
    """Dropout as in Srivastava et al. 2014 (and He et al. 2016, Fig. 2(f)): zero each element
    with probability ``p`` in training without rescaling the kept ones; multiply by ``1 - p``
    at evaluation. Its expected scale is ``1 - p``, not 1."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x * (1 - self.p)
        keep = torch.empty_like(x).bernoulli_(1 - self.p)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
