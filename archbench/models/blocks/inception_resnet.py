"""Inception-ResNet blocks and stems (Szegedy et al. 2016, arXiv:1602.07261).

Residual blocks ``inception_resnet_a/b/c`` (the 35x35, 17x17 and 8x8 grid types): parallel
conv-BN-ReLU branches, concatenated, a linear 1x1 conv (with bias, no BN) back to ``w_out``,
added to the shortcut scaled by ``scale`` through :class:`ResidualAdd` (so diagnostics see the
unscaled branch and the scale), then ReLU unless ``activation=False``.

Reduction blocks ``reduction_a/b`` (stride 2 only): valid-padded 3x3/2 conv branches and a
3x3/2 max-pool of the input, concatenated; the spatial size becomes ``floor((s - 3) / 2) + 1``.

**Widths.** Every block carries its published layouts (``version`` "v2": TF-slim / Keras /
timm Inception-ResNet-v2; "v1": the paper's Figures 10-13 and Table 1). Branch widths scale
with the block width: a branch published as ``b`` channels in a block published ``W`` wide is
``round_half_up(b * w_out / W * branch_mult)`` wide (exact rational arithmetic, so the
published width reproduces the published branches exactly). Reduction blocks make ``w_out``
authoritative: their conv branches fill ``w_out - w_in`` channels (the pooled input supplies
the other ``w_in``), apportioned in the published proportions by largest remainder, and
their inner widths scale by the same factor ``(w_out - w_in) / (W_out - W_in)``.

Module names follow timm's ``inception_resnet_v2`` (``branch0``..., ``conv2d``, ``relu``;
``conv``/``bn``/``relu`` inside each conv unit; BN eps 1e-3 as TF-slim), so its weights load
by renaming the block prefixes.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import Block, ResidualAdd, Stem
from archbench.models.blocks.shortcuts import projection
from archbench.registry import STEMS, register_block

Version = Literal["v1", "v2"]
Kernel = tuple[int, int]
BN_EPS = 1e-3  # TF-slim's value, kept by timm and Keras


def round_half_up(x: Fraction) -> int:
    """Nearest integer, halves rounded up (not Python's banker's rounding)."""
    return math.floor(x + Fraction(1, 2))


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` exactly (largest remainder; ties go first)."""
    whole = sum(weights)
    shares = [Fraction(total * w, whole) for w in weights]
    out = [math.floor(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda i: (-(shares[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def valid_size(size: int, kernel: int = 3, stride: int = 2) -> int:
    """Output size of an unpadded conv/pool; 0 when the input is smaller than the kernel."""
    return (size - kernel) // stride + 1 if size >= kernel else 0


class BasicConv2d(nn.Sequential):
    """conv (no bias) -> BN (eps 1e-3) -> ReLU; timm's ``BasicConv2d`` with the same names."""

    def __init__(
        self,
        w_in: int,
        w_out: int,
        kernel: int | Kernel,
        stride: int = 1,
        padding: int | Kernel = 0,
    ) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(w_in, w_out, kernel, stride=stride, padding=padding, bias=False),
                bn=nn.BatchNorm2d(w_out, eps=BN_EPS),
                relu=nn.ReLU(inplace=True),
            )
        )


def same_conv(w_in: int, w_out: int, kernel: Kernel) -> BasicConv2d:
    """Stride-1 conv unit that keeps the spatial size (odd kernels)."""
    return BasicConv2d(w_in, w_out, kernel, padding=(kernel[0] // 2, kernel[1] // 2))


def chain(units: list[nn.Module]) -> nn.Module:
    return units[0] if len(units) == 1 else nn.Sequential(*units)


# -- residual blocks --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InceptionResNetParams:
    scale: float = 1.0  # residual scaling of the branch (paper Sec. 3.3: 0.1-0.3)
    activation: bool = True  # ReLU after the addition (the last C block of v2 has none)
    branch_mult: float = 1.0  # branch widths / block width, relative to the published ratio
    version: Version = "v2"  # which published branch layout

    def validate(self) -> None:
        for name in ("scale", "branch_mult"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise SpecError(f"param {name!r} must be a positive finite number, got {value}")


@dataclasses.dataclass(frozen=True)
class AParams(InceptionResNetParams):
    scale: float = 0.17


@dataclasses.dataclass(frozen=True)
class BParams(InceptionResNetParams):
    scale: float = 0.10


@dataclasses.dataclass(frozen=True)
class CParams(InceptionResNetParams):
    scale: float = 0.20


class InceptionResNetBlock(Block):
    """Base of the residual Inception blocks; subclasses give kernels and published widths."""

    residual = True
    strides = (1,)  # the grid changes only in the reduction blocks
    # One tuple of kernels per branch, input to output.
    KERNELS: ClassVar[tuple[tuple[Kernel, ...], ...]] = ()
    # version -> (published block width, published widths per branch, matching KERNELS).
    PUBLISHED: ClassVar[dict[str, tuple[int, tuple[tuple[int, ...], ...]]]] = {}

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        p = self.params
        widths = self.branch_widths()
        self.branch_names = []
        for i, (ws, ks) in enumerate(zip(widths, self.KERNELS, strict=True)):
            units, c = [], w_in
            for w, k in zip(ws, ks, strict=True):
                units.append(same_conv(c, w, k))
                c = w
            setattr(self, f"branch{i}", chain(units))
            self.branch_names.append(f"branch{i}")
        # The linear "filter expansion" 1x1 conv: bias, no BN, no activation (paper, TF-slim).
        self.conv2d = nn.Conv2d(sum(ws[-1] for ws in widths), w_out, 1, bias=True)
        # A width change at stride 1 needs a projected shortcut (not in the published nets).
        self.downsample = projection(w_in, w_out, 1) if w_in != w_out else None
        self.add = ResidualAdd(branch_scale=p.scale)
        self.relu = nn.ReLU(inplace=True) if p.activation else None

    def branch_widths(self) -> list[list[int]]:
        """Each branch's conv widths at this ``w_out`` and ``branch_mult`` (module docstring)."""
        p = self.params
        pub_width, pub_branches = self.PUBLISHED[p.version]
        factor = Fraction(self.w_out, pub_width) * Fraction(p.branch_mult)
        widths = [[round_half_up(b * factor) for b in branch] for branch in pub_branches]
        if min(min(ws) for ws in widths) < 1:
            smallest = min(min(branch) for branch in pub_branches)
            need = math.ceil(Fraction(pub_width, 2 * smallest) / Fraction(p.branch_mult))
            raise self.fail(
                f"w_out={self.w_out} with branch_mult={p.branch_mult} rounds a branch to 0 "
                f"channels (published {p.version}: {smallest} of {pub_width}); "
                f"use w_out >= {need} or a larger branch_mult"
            )
        return widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([getattr(self, name)(x) for name in self.branch_names], 1)
        out = self.conv2d(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.add(shortcut, out)
        return out if self.relu is None else self.relu(out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2d.weight)
        nn.init.zeros_(self.conv2d.bias)


_K1: Kernel = (1, 1)
_K3: Kernel = (3, 3)


@register_block("inception_resnet_a", family="inception_resnet")
class InceptionResNetA(InceptionResNetBlock):
    """Inception-ResNet-A (35x35): 1x1 | 1x1-3x3 | 1x1-3x3-3x3, linear 1x1, scaled residual."""

    Params = AParams
    KERNELS = ((_K1,), (_K1, _K3), (_K1, _K3, _K3))
    PUBLISHED = {
        "v2": (320, ((32,), (32, 32), (32, 48, 64))),  # TF-slim block35
        "v1": (256, ((32,), (32, 32), (32, 32, 32))),  # paper Fig. 10
    }


@register_block("inception_resnet_b", family="inception_resnet")
class InceptionResNetB(InceptionResNetBlock):
    """Inception-ResNet-B (17x17): 1x1 | 1x1-1x7-7x1, linear 1x1, scaled residual."""

    Params = BParams
    KERNELS = ((_K1,), (_K1, (1, 7), (7, 1)))
    PUBLISHED = {
        "v2": (1088, ((192,), (128, 160, 192))),  # TF-slim block17
        "v1": (896, ((128,), (128, 128, 128))),  # paper Fig. 11
    }


@register_block("inception_resnet_c", family="inception_resnet")
class InceptionResNetC(InceptionResNetBlock):
    """Inception-ResNet-C (8x8): 1x1 | 1x1-1x3-3x1, linear 1x1, scaled residual."""

    Params = CParams
    KERNELS = ((_K1,), (_K1, (1, 3), (3, 1)))
    PUBLISHED = {
        "v2": (2080, ((192,), (192, 224, 256))),  # TF-slim block8
        "v1": (1792, ((192,), (192, 192, 192))),  # paper Fig. 13
    }


# -- reduction blocks -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReductionParams:
    version: Version = "v2"  # which published branch layout (proportions)


class ReductionBlock(Block):
    """Base of the grid-reduction blocks: conv branches whose last conv is a valid 3x3/2,
    plus a valid 3x3/2 max-pool of the input, concatenated (no shortcut)."""

    residual = False
    strides = (2,)
    Params = ReductionParams
    # Kernel sizes per branch; the last conv of each branch has stride 2 and no padding.
    KERNELS: ClassVar[tuple[tuple[int, ...], ...]] = ()
    # version -> (published w_in, published w_out, published widths per branch).
    PUBLISHED: ClassVar[dict[str, tuple[int, int, tuple[tuple[int, ...], ...]]]] = {}

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        # Params first, so an unknown param is reported even with an unsupported stride.
        self._parse(self._name(), params)
        super().__init__(w_in, w_out, stride, **params)
        widths = self.branch_widths()
        self.branch_names = []
        for i, (ws, ks) in enumerate(zip(widths, self.KERNELS, strict=True)):
            units: list[nn.Module] = []
            c = w_in
            for j, (w, k) in enumerate(zip(ws, ks, strict=True)):
                last = j == len(ws) - 1
                units.append(
                    BasicConv2d(c, w, k, stride=2, padding=0) if last else same_conv(c, w, (k, k))
                )
                c = w
            setattr(self, f"branch{i}", chain(units))
            self.branch_names.append(f"branch{i}")
        self.pool_name = f"branch{len(widths)}"
        setattr(self, self.pool_name, nn.MaxPool2d(3, stride=2))

    def branch_widths(self) -> list[list[int]]:
        """Conv widths per branch so that the concat (branches + pooled input) is ``w_out``."""
        version = self.params.version
        pub_in, pub_out, pub_branches = self.PUBLISHED[version]
        extra = self.w_out - self.w_in
        if extra < len(pub_branches):
            raise self.fail(
                f"w_out ({self.w_out}) must exceed w_in ({self.w_in}) by at least "
                f"{len(pub_branches)} (one channel per conv branch): the block concatenates its "
                f"conv branches with the max-pooled input (published {version}: "
                f"{pub_in} -> {pub_out})"
            )
        factor = Fraction(extra, pub_out - pub_in)
        finals = apportion(extra, [branch[-1] for branch in pub_branches])
        widths = [
            [round_half_up(b * factor) for b in branch[:-1]] + [final]
            for branch, final in zip(pub_branches, finals, strict=True)
        ]
        if min(min(ws) for ws in widths) < 1:
            raise self.fail(
                f"w_out - w_in = {extra} is too small for the {version} layout: an inner branch "
                f"width rounds to 0 channels (widths {widths}); widen the block"
            )
        return widths

    def output_size(self, size: int) -> int:
        return valid_size(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [getattr(self, name)(x) for name in self.branch_names]
        outs.append(getattr(self, self.pool_name)(x))
        return torch.cat(outs, 1)


@register_block("reduction_a", family="inception_resnet")
class ReductionA(ReductionBlock):
    """Reduction-A (35->17): 3x3/2 | 1x1-3x3-3x3/2 | 3x3/2 max-pool, valid padding, concat."""

    KERNELS = ((3,), (1, 3, 3))
    PUBLISHED = {
        "v2": (320, 1088, ((384,), (256, 256, 384))),  # TF-slim Mixed_6a (k,l,m,n 256,256,384,384)
        "v1": (256, 896, ((384,), (192, 192, 256))),  # paper Table 1 (k,l,m,n 192,192,256,384)
    }


@register_block("reduction_b", family="inception_resnet")
class ReductionB(ReductionBlock):
    """Reduction-B (17->8): 1x1-3x3/2 | 1x1-3x3/2 | 1x1-3x3-3x3/2 | 3x3/2 max-pool, concat."""

    KERNELS = ((1, 3), (1, 3), (1, 3, 3))
    PUBLISHED = {
        "v2": (1088, 2080, ((256, 384), (256, 288), (256, 288, 320))),  # TF-slim Mixed_7a
        "v1": (896, 1792, ((256, 384), (256, 256), (256, 256, 256))),  # paper Fig. 12
    }


# -- stems ------------------------------------------------------------------------------------


def _scaled(
    widths: Sequence[int], w_out: int, published: int, fail: Callable[[str], SpecError]
) -> list[int]:
    """Stem inner widths scaled by ``w_out / published``; an error if one rounds to 0."""
    out = [round_half_up(Fraction(w * w_out, published)) for w in widths]
    if min(out) < 1:
        need = math.ceil(Fraction(published, 2 * min(widths)))
        raise fail(f"w_out={w_out} rounds an inner width to 0 channels; use w_out >= {need}")
    return out


@STEMS.register("inception_resnet_v2")
class InceptionResNetV2Stem(Stem):
    """Inception-ResNet-v2 stem as released (TF-slim/timm): v3-style convs, Mixed-5b to 320."""

    component_name = "inception_resnet_v2"
    PUBLISHED_WIDTH = 320  # 96 + 64 + 96 + 64 from Mixed-5b

    def __init__(self, in_channels: int, w_out: int, **params: object) -> None:
        super().__init__(in_channels, w_out, **params)
        # Every inner width scales by w_out / 320; the four Mixed-5b outputs add up to w_out.
        c1, c2, c3, c4, c5, m1, m2a, m2b = _scaled(
            (32, 32, 64, 80, 192, 48, 64, 96), w_out, self.PUBLISHED_WIDTH, self.fail
        )
        o0, o1, o2, o3 = apportion(w_out, (96, 64, 96, 64))
        self.conv2d_1a = BasicConv2d(in_channels, c1, 3, stride=2)
        self.conv2d_2a = BasicConv2d(c1, c2, 3)
        self.conv2d_2b = BasicConv2d(c2, c3, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(c3, c4, 1)
        self.conv2d_4a = BasicConv2d(c4, c5, 3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed5b(c5, (o0, (m1, o1), (m2a, m2b, o2), o3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        return self.mixed_5b(self.maxpool_5a(x))

    def output_size(self, size: int) -> int:
        # 3x3/2 valid, 3x3 valid, (3x3 same), pool 3x3/2, (1x1), 3x3 valid, pool 3x3/2: 299 -> 35
        size = valid_size(valid_size(size), stride=1)
        size = valid_size(valid_size(size), stride=1)
        return valid_size(size)


class Mixed5b(nn.Module):
    """Mixed-5b (Inception-v3 A module): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-pool-1x1, concat."""

    def __init__(
        self,
        w_in: int,
        widths: tuple[int, tuple[int, int], tuple[int, int, int], int],
    ) -> None:
        super().__init__()
        o0, (m1, o1), (m2a, m2b, o2), o3 = widths
        self.branch0 = BasicConv2d(w_in, o0, 1)
        self.branch1 = nn.Sequential(BasicConv2d(w_in, m1, 1), BasicConv2d(m1, o1, 5, padding=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(w_in, m2a, 1),
            BasicConv2d(m2a, m2b, 3, padding=1),
            BasicConv2d(m2b, o2, 3, padding=1),
        )
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            BasicConv2d(w_in, o3, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


@STEMS.register("inception_resnet_v1")
class InceptionResNetV1Stem(Stem):
    """Inception-ResNet-v1 stem (paper Fig. 14): seven convs and a max-pool, 299 -> 35x35x256."""

    component_name = "inception_resnet_v1"
    PUBLISHED_WIDTH = 256

    def __init__(self, in_channels: int, w_out: int, **params: object) -> None:
        super().__init__(in_channels, w_out, **params)
        c1, c2, c3, c4, c5 = _scaled((32, 32, 64, 80, 192), w_out, self.PUBLISHED_WIDTH, self.fail)
        self.conv2d_1a = BasicConv2d(in_channels, c1, 3, stride=2)
        self.conv2d_2a = BasicConv2d(c1, c2, 3)
        self.conv2d_2b = BasicConv2d(c2, c3, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(c3, c4, 1)
        self.conv2d_4a = BasicConv2d(c4, c5, 3)
        self.conv2d_4b = BasicConv2d(c5, w_out, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        return self.conv2d_4b(x)

    def output_size(self, size: int) -> int:
        # 3x3/2 valid, 3x3 valid, pool 3x3/2, 3x3 valid, 3x3/2 valid: 299 -> 35
        size = valid_size(valid_size(size), stride=1)
        size = valid_size(valid_size(size), stride=1)
        return valid_size(size)
