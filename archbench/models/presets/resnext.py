"""ResNeXt (Xie et al. 2017): ResNeXt-29 CxWd on CIFAR, and torchvision's ImageNet ResNeXt and
wide ResNet bottleneck nets.

CIFAR layout of the reference code (``facebookresearch/ResNeXt``, ``resnext.lua``): a 3x3 conv
to 64 channels with BN-ReLU, three stages of ``n`` ``resnext`` blocks with outputs 256, 512,
1024 (stride 1, 2, 2), global average pooling, a linear classifier; depth ``9n+2``.
"""

from __future__ import annotations

import re
from typing import Any

from archbench.models.blocks.base import parse_params
from archbench.models.blocks.resnext import EXPANSION, ResNeXtBlock, whole_step
from archbench.models.net import NetSpec
from archbench.models.presets import register_family, register_pattern, register_preset
from archbench.models.presets.resnet import BOTTLENECK_DEPTH, cifar_spec, imagenet_resnet_spec


def resnext_name(depth: int, width: int, cardinality: int, base_width: int) -> str:
    name = f"resnext{depth}_{cardinality}x{base_width}d"
    return name if width == 64 else f"{name}_w{width}"


CIFAR_DEFAULTS = {"cardinality": 8, "base_width": 64}


def _width_step(params: dict[str, Any]) -> int:
    d = params.get("base_width", CIFAR_DEFAULTS["base_width"])
    valid = isinstance(d, int) and not isinstance(d, bool) and d >= 1
    return whole_step(d) if valid else 1  # a bad base_width is reported by the family itself


@register_family(
    "resnext",
    description="CIFAR ResNeXt-29 layout: grouped bottlenecks, 9n+2 (Xie et al. 2017)",
    depth=BOTTLENECK_DEPTH,
    default_depth=29,
    default_width=64,
    width_meaning="bottleneck 'planes' of the first stage (outputs are 4x; 64 = the paper's)",
    # planes * base_width / 64 must be whole in every stage (planes = width, 2x, 4x).
    width_step=_width_step,
    params_doc="cardinality: C (groups); base_width: d (channels per group at 64 planes); "
    "shortcut: A|B|C",
)
def resnext_family(depth: int, width: int, **block_params: Any) -> NetSpec:
    n = BOTTLENECK_DEPTH.blocks_per_stage(depth, "family 'resnext'")
    # The block's own checks at spec time; the family defaults to the CIFAR paper's 8x64d.
    params = parse_params(
        "family 'resnext'", ResNeXtBlock.Params, {**CIFAR_DEFAULTS, **block_params}
    )
    return cifar_spec(
        "resnext",
        n,
        width,
        expansion=EXPANSION,
        block_params={
            "cardinality": params.cardinality,
            "base_width": params.base_width,
            "shortcut": params.shortcut,
        },
        name=resnext_name(depth, width, params.cardinality, params.base_width),
    )


# Parameter counts as published (ResNeXt paper, Table 7; CIFAR-10). The paper truncates to
# 0.1M rather than rounding (its Table 1 gives torchvision-identical ResNet-50, 25,557,032
# params, as 25.5M): 34,426,698 -> 34.4M and 68,155,210 -> 68.1M.
RESNEXT29_PAPER_PARAMS = {(8, 64): 34.4e6, (16, 64): 68.1e6}

for (_c, _d), _params in RESNEXT29_PAPER_PARAMS.items():
    register_preset(
        f"resnext29_{_c}x{_d}d",
        resnext_family(29, 64, cardinality=_c, base_width=_d),
        description=f"ResNeXt-29 ({_c}x{_d}d) on CIFAR (Xie et al. 2017)",
        paper_params=_params,
        paper_rounding="truncate",  # to 0.1M, see above
        paper="Xie et al. 2017, Table 7",
        depth=29,
    )

# torchvision's ImageNet ResNeXt and wide ResNets: the ResNet bottleneck with groups/base_width.
# (depth, bottleneck params, torchvision's exact parameter count at 1000 classes).
TORCHVISION_BOTTLENECK_NETS = {
    "resnext50_32x4d": (50, {"groups": 32, "base_width": 4}, 25_028_904),
    "resnext101_32x8d": (101, {"groups": 32, "base_width": 8}, 88_791_336),
    "resnext101_64x4d": (101, {"groups": 64, "base_width": 4}, 83_455_272),
    "wide_resnet50_2": (50, {"base_width": 128}, 68_883_240),
    "wide_resnet101_2": (101, {"base_width": 128}, 126_886_696),
}

for _name, (_depth, _block_params, _tv_params) in TORCHVISION_BOTTLENECK_NETS.items():
    register_preset(
        _name,
        imagenet_resnet_spec(_depth, block_params=_block_params, name=_name),
        description=f"ImageNet {_name} (torchvision-identical)",
        torchvision=_name,
        torchvision_params=_tv_params,
        depth=_depth,
    )


def _resnext_from_name(match: re.Match[str]) -> NetSpec:
    depth, cardinality, base_width = (int(g) for g in match.groups())
    return resnext_family(depth, 64, cardinality=cardinality, base_width=base_width)


register_pattern(r"resnext(\d+)_(\d+)x(\d+)d", _resnext_from_name, "resnext<9n+2>_<C>x<d>d (CIFAR)")
