"""ResNeXt block (Xie et al. 2017): the ResNet bottleneck with a grouped 3x3 conv (form C).

Cardinality ``C`` groups of ``d`` channels each at a 64-wide bottleneck (``C x d``, the paper's
naming); widths scale with the stage as in torchvision: the 3x3 conv has
``planes * d / 64 * C`` channels, ``planes = w_out / 4``. It reuses
:class:`~archbench.models.blocks.resnet.BottleneckBlock`, so module names (and state dicts) are
torchvision's ``Bottleneck``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from archbench.errors import SpecError
from archbench.models.blocks.base import parse_params
from archbench.models.blocks.resnet import BottleneckBlock
from archbench.models.blocks.shortcuts import ShortcutOption
from archbench.registry import register_block

EXPANSION = 4


@dataclasses.dataclass(frozen=True)
class ResNeXtParams:
    shortcut: ShortcutOption = "B"
    cardinality: int = 32  # C: number of groups of the 3x3 conv
    base_width: int = 4  # d: channels per group when the bottleneck is 64 wide

    def validate(self) -> None:
        for name in ("cardinality", "base_width"):
            if getattr(self, name) < 1:
                raise SpecError(f"param {name!r} must be >= 1, got {getattr(self, name)}")

    # The names BottleneckBlock reads.
    @property
    def groups(self) -> int:
        return self.cardinality

    @property
    def expansion(self) -> int:
        return EXPANSION


def group_width(w_out: int, base_width: int) -> float:
    """Channels per group of the 3x3 conv at output width ``w_out`` (may be fractional)."""
    return (w_out / EXPANSION) * base_width / 64


def whole_step(n: int) -> int:
    """The smallest ``m`` with ``n * m`` divisible by 64 (``n * m / 64`` a whole number)."""
    return 64 // math.gcd(n, 64)


@register_block("resnext", family="resnext")
class ResNeXtBlock(BottleneckBlock):
    """ResNeXt bottleneck: 1x1, grouped 3x3 (cardinality x base_width), 1x1 expand x4."""

    Params = ResNeXtParams
    # Its widths follow cardinality x base_width (family 'resnext'), not a stage width.
    layout = None

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        # Check widths before BottleneckBlock builds (and silently floors) them.
        parsed = parse_params(f"block {self.block_name!r}", self.Params, params)
        if isinstance(w_out, int) and not isinstance(w_out, bool) and w_out >= 1:
            self._check_widths(w_out, parsed)
        super().__init__(w_in, w_out, stride, **params)

    def _check_widths(self, w_out: int, p: ResNeXtParams) -> None:
        if w_out % EXPANSION:
            raise self.fail(f"w_out {w_out} must be divisible by expansion {EXPANSION}")
        planes = w_out // EXPANSION
        if (planes * p.base_width) % 64:
            step = whole_step(planes)
            raise self.fail(
                f"param 'base_width' {p.base_width} gives a group width of "
                f"{planes}*{p.base_width}/64 = {group_width(w_out, p.base_width):g} channels at "
                f"w_out {w_out}, not a whole number; allowed base_width here: multiples of "
                f"{step} ({', '.join(str(step * i) for i in (1, 2, 3, 4))}, ...), or a w_out "
                f"that is a multiple of {EXPANSION * whole_step(p.base_width)}"
            )
