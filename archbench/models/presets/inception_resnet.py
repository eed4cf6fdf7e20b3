"""Inception-ResNet families and presets (Szegedy et al. 2016, arXiv:1602.07261).

Layout (both versions): stem -> n x A -> Reduction-A -> 2n x B -> Reduction-B -> n x C, the
last C block unscaled (scale 1.0) and without the final ReLU, as in the released v2
(TF-slim, Keras, timm). ``depth`` counts the Inception-ResNet blocks: ``4n``.

Published v2 (the released implementation; the paper's Fig. 15 draws 5/10/5 blocks, but the
released model and its 55.8M parameters have 10/20/10): stem to 320 at 35x35, 10 x A (320,
scale 0.17), Reduction-A to 1088, 20 x B (scale 0.10), Reduction-B to 2080, 9 x C (scale 0.20)
+ 1 C, 1x1 conv to 1536, average pool, dropout 0.2, fully connected.

Scaled versions keep every published proportion: at first-stage width ``w`` the stage widths
are ``w * (1, 17/5, 13/2)`` (v2: 320, 1088, 2080) or ``w * (1, 7/2, 7)`` (v1: 256, 896, 1792),
and every branch is the published width times ``w / 320`` (v2) or ``w / 256`` (v1). Since all
published widths are multiples of 16 (v2) or 32 (v1), ``w`` a multiple of 20 (v2) or 8 (v1)
keeps every width an exact integer: that is the families' ``width_step``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archbench.errors import SpecError
from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec
from archbench.models.presets import register_family, register_preset
from archbench.validation import is_positive_int


@dataclass(frozen=True)
class StageRatioDepth:
    """Depth ``= sum(ratios) * n`` blocks, stage ``i`` holding ``ratios[i] * n`` of them."""

    ratios: tuple[int, ...]

    @property
    def step(self) -> int:
        return sum(self.ratios)

    @property
    def rule(self) -> str:
        return f"{self.step}n"

    def blocks_per_stage(self, depth: int, what: str) -> int:
        """``n`` for ``depth``; a :class:`SpecError` naming the rule if it does not fit."""
        if not is_positive_int(depth) or depth % self.step:
            examples = ", ".join(str(self.step * k) for k in (1, 2, 5, 10))
            raise SpecError(
                f"{what}: depth must be {self.rule} with n >= 1 (e.g. {examples}), got {depth!r}"
            )
        return depth // self.step

    def layout(self, depth: int, what: str) -> tuple[int, ...]:
        n = self.blocks_per_stage(depth, what)
        return tuple(r * n for r in self.ratios)

    def valid_depths(self, lo: int, hi: int) -> list[int]:
        return [d for d in range(self.step, hi + 1, self.step) if d >= lo]


# n x A, 2n x B, n x C (published v2: n = 10; the paper's Fig. 15: n = 5).
INCEPTION_RESNET_DEPTH = StageRatioDepth((1, 2, 1))


@dataclass(frozen=True)
class Layout:
    """One published version: stage widths and head conv relative to the first-stage width."""

    stem: str
    stage_ratios: tuple[Fraction, Fraction, Fraction]
    head_conv_ratio: Fraction  # 0: no 1x1 conv before pooling
    width_step: int  # keeps every scaled width an exact integer (module docstring)
    published_width: int


LAYOUTS = {
    "v2": Layout(
        "inception_resnet_v2",
        (Fraction(1), Fraction(17, 5), Fraction(13, 2)),
        Fraction(24, 5),  # 1536 / 320
        20,
        320,
    ),
    "v1": Layout(
        "inception_resnet_v1", (Fraction(1), Fraction(7, 2), Fraction(7)), Fraction(0), 8, 256
    ),
}
PUBLISHED_SCALES = (0.17, 0.10, 0.20)  # TF-slim/Keras/timm v2 (A, B, C); v1 has none published


def _layout(version: str, what: str) -> Layout:
    if version not in LAYOUTS:
        raise SpecError(f"{what}: version must be one of {sorted(LAYOUTS)}, got {version!r}")
    return LAYOUTS[version]


def _exact(value: Fraction, what: str, width: int, step: int) -> int:
    if value.denominator != 1:
        raise SpecError(
            f"{what}: width {width} gives a fractional {float(value)}-channel stage; "
            f"use a multiple of {step}"
        )
    return int(value)


def inception_resnet_spec(
    n: int,
    width: int,
    *,
    stem: StemSpec,
    version: str = "v2",
    scale_a: float = PUBLISHED_SCALES[0],
    scale_b: float = PUBLISHED_SCALES[1],
    scale_c: float = PUBLISHED_SCALES[2],
    branch_mult: float = 1.0,
    dropout: float = 0.0,
    name: str = "",
    num_classes: int = 10,
    input_size: int = 32,
    what: str = "inception_resnet",
) -> NetSpec:
    """The Inception-ResNet layout with ``n`` (A, 2n B, n C) at first-stage width ``width``."""
    layout = _layout(version, what)
    w1, w2, w3 = (_exact(width * r, what, width, layout.width_step) for r in layout.stage_ratios)
    head_conv = _exact(width * layout.head_conv_ratio, what, width, layout.width_step)

    def block(scale: float, **extra: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"scale": scale, "version": version, **extra}
        if branch_mult != 1.0:
            params["branch_mult"] = branch_mult
        return params

    stages = [
        StageSpec("inception_resnet_a", n, w1, 1, block(scale_a)),
        StageSpec("reduction_a", 1, w2, 2, {"version": version}),
        StageSpec("inception_resnet_b", 2 * n, w2, 1, block(scale_b)),
        StageSpec("reduction_b", 1, w3, 2, {"version": version}),
    ]
    if n > 1:
        stages.append(StageSpec("inception_resnet_c", n - 1, w3, 1, block(scale_c)))
    # The last C block: unscaled and linear (TF-slim ``block8(net, activation_fn=None)``).
    stages.append(StageSpec("inception_resnet_c", 1, w3, 1, block(1.0, activation=False)))
    head: dict[str, Any] = {}
    if head_conv:
        head["conv_width"] = head_conv
    if dropout:
        head["dropout"] = dropout
    return NetSpec(
        stem=stem,
        stages=tuple(stages),
        head=HeadSpec("linear", head),
        num_classes=num_classes,
        input_size=input_size,
        name=name,
    )


def _width_step(params: dict[str, Any]) -> int:
    version = params.get("version", "v2")
    return LAYOUTS[version].width_step if version in LAYOUTS else 1


_PARAMS_DOC = (
    "version: v2|v1; scale_a, scale_b, scale_c (residual scales, default 0.17/0.10/0.20); "
    "branch_mult (branch widths vs the published ratio, default 1.0); dropout (head)"
)


@register_family(
    "inception_resnet",
    description="CIFAR Inception-ResNet: v2 proportions scaled to w/320, 3x3 conv stem, 4n blocks",
    depth=INCEPTION_RESNET_DEPTH,
    default_depth=8,
    default_width=40,
    width_meaning="width of the A stage (B, C stages: 3.4x, 6.5x for v2; 3.5x, 7x for v1)",
    width_step=_width_step,
    params_doc=_PARAMS_DOC,
)
def inception_resnet_family(depth: int, width: int, **params: Any) -> NetSpec:
    what = "family 'inception_resnet'"
    n = INCEPTION_RESNET_DEPTH.blocks_per_stage(depth, what)
    return inception_resnet_spec(
        n,
        width,
        stem=StemSpec("cifar", width),
        name=f"inception_resnet{depth}_w{width}",
        what=what,
        **params,
    )


@register_family(
    "inception_resnet_imagenet",
    description="ImageNet Inception-ResNet (299x299): published stems, 4n blocks (v2: 40)",
    depth=INCEPTION_RESNET_DEPTH,
    default_depth=40,
    default_width=320,
    width_meaning="width of the A stage (published: 320 for v2, 256 for v1)",
    width_step=_width_step,
    params_doc=_PARAMS_DOC,
)
def inception_resnet_imagenet_family(depth: int, width: int, **params: Any) -> NetSpec:
    what = "family 'inception_resnet_imagenet'"
    n = INCEPTION_RESNET_DEPTH.blocks_per_stage(depth, what)
    version = params.get("version", "v2")
    return inception_resnet_spec(
        n,
        width,
        stem=StemSpec(_layout(version, what).stem, width),
        name=f"inception_resnet_{version}_{depth}_w{width}",
        num_classes=1000,
        input_size=299,
        what=what,
        **params,
    )


# timm's count (1000 classes): conv weights + BN gamma/beta + up-conv biases + fc. Keras'
# InceptionResNetV2 reports 55,873,736 "total": its BN has no gamma (scale=False) but it counts
# the moving mean/variance, i.e. 55,843,464 - 30,272 + 2 * 30,272 for 30,272 BN channels.
TIMM_V2_PARAMS = 55_843_464
KERAS_V2_TOTAL_PARAMS = 55_873_736

register_preset(
    "inception_resnet_v2",
    inception_resnet_imagenet_family(40, 320, dropout=0.2),
    description="Inception-ResNet-v2 as released (TF-slim/Keras/timm), 299x299, 1000 classes",
    paper="Szegedy et al. 2016 (arXiv:1602.07261), Fig. 15-19; block counts of the release",
    timm="inception_resnet_v2",
    timm_params=TIMM_V2_PARAMS,
    keras_total_params=KERAS_V2_TOTAL_PARAMS,
    depth=40,  # the family's depth (blocks, 4n), as a family variant would record it
)
register_preset(
    "inception_resnet_v1",
    inception_resnet_imagenet_family(20, 256, version="v1", dropout=0.2),
    description="Inception-ResNet-v1 per the paper (Fig. 10-15, 5/10/5 blocks), 299x299",
    paper="Szegedy et al. 2016 (arXiv:1602.07261), Fig. 10-15, Table 1 (no parameter count given)",
    depth=20,
)
register_preset(
    "inception_resnet_cifar",
    inception_resnet_family(8, 40),
    description="CIFAR Inception-ResNet-v2 scaled to w=40 (A 40, B 136, C 260), 2/4/2 blocks",
    depth=8,
)
