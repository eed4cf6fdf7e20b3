"""Wide ResNets (Zagoruyko & Komodakis 2016): WRN-d-k on CIFAR, depth 6n+4, widths 16k/32k/64k.

Layout of the reference code: a bare 3x3 conv to 16 channels, three stages of ``n`` ``wide``
blocks (stride 1, 2, 2), then BN-ReLU, global average pooling and a linear classifier. The
ImageNet wide ResNets of torchvision (``wide_resnet50_2``, ...) are post-activation bottleneck
nets and live with the other ImageNet presets in :mod:`archbench.models.presets.resnext`.
"""

from __future__ import annotations

import re
from typing import Any

from archbench.errors import SpecError
from archbench.models.blocks.base import parse_params
from archbench.models.blocks.wide import WideBlock
from archbench.models.net import HeadSpec, NetSpec, StemSpec
from archbench.models.presets import LinearDepth, register_family, register_pattern, register_preset
from archbench.models.presets.resnet import staged_spec

WRN_DEPTH = LinearDepth(per_block=2, stages=3, extra=4)  # 6n+4
STEM_WIDTH = 16  # the stem is 16 wide whatever k is (16 -> 16k in the first block)


def wrn_name(depth: int, width: int) -> str:
    return (
        f"wrn_{depth}_{width // STEM_WIDTH}" if width % STEM_WIDTH == 0 else f"wrn{depth}_w{width}"
    )


@register_family(
    "wrn",
    description="Wide ResNet WRN-d-k, pre-activation basic blocks, 6n+4 (Zagoruyko & Komodakis 2016)",
    depth=WRN_DEPTH,
    default_depth=16,
    default_width=64,
    width_meaning="width of the first stage, 16*k (the stem is always 16 wide)",
    params_doc="dropout: float in [0, 1) between the convs; shortcut: A|B|C",
)
def wrn_family(depth: int, width: int, **block_params: Any) -> NetSpec:
    n = WRN_DEPTH.blocks_per_stage(depth, "family 'wrn'")
    # The block's own checks (names, types, dropout range), at spec time and named for the family.
    params = parse_params("family 'wrn'", WideBlock.Params, block_params)
    return staged_spec(
        "wide",
        (n, n, n),
        (width, 2 * width, 4 * width),
        stem=StemSpec("cifar", STEM_WIDTH, {"pre_act": True}),
        block_params={"dropout": params.dropout, "shortcut": params.shortcut},
        head=HeadSpec("linear", {"pre_act": True}),
        name=wrn_name(depth, width),
    )


# Parameter counts as published (WRN paper, Tables 4-6; CIFAR-10), rounded to 0.1M there.
WRN_PAPER_PARAMS = {
    (16, 4): 2.7e6,
    (16, 8): 11.0e6,
    (16, 10): 17.1e6,
    (22, 8): 17.2e6,
    (22, 10): 26.8e6,
    (28, 10): 36.5e6,
    (28, 12): 52.5e6,
    (40, 1): 0.6e6,
    (40, 2): 2.2e6,
    (40, 4): 8.9e6,
    (40, 8): 35.7e6,
}

for (_depth, _k), _params in WRN_PAPER_PARAMS.items():
    register_preset(
        f"wrn_{_depth}_{_k}",
        wrn_family(_depth, STEM_WIDTH * _k),
        description=f"WRN-{_depth}-{_k} on CIFAR, no dropout (Zagoruyko & Komodakis 2016)",
        paper_params=_params,
        paper_rounding="nearest",  # to 0.1M
        paper="Zagoruyko & Komodakis 2016, Tables 4-6",
        depth=_depth,
    )


def _wrn_from_name(match: re.Match[str]) -> NetSpec:
    depth, k = int(match.group(1)), int(match.group(2))
    if k < 1:
        raise SpecError(f"preset {match.group(0)!r}: width factor k must be >= 1, got {k}")
    return wrn_family(depth, STEM_WIDTH * k)


register_pattern(r"wrn_(\d+)_(\d+)", _wrn_from_name, "wrn_<6n+4>_<k> (CIFAR)")
