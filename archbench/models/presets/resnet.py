"""ResNet and plain families (He et al. 2015): CIFAR 6n+2 / 9n+2 and ImageNet 18-152."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec
from archbench.models.presets import (
    LinearDepth,
    TableDepth,
    register_family,
    register_pattern,
    register_preset,
)

BASIC_DEPTH = LinearDepth(per_block=2, stages=3, extra=2)  # 6n+2
BOTTLENECK_DEPTH = LinearDepth(per_block=3, stages=3, extra=2)  # 9n+2
IMAGENET_DEPTH = TableDepth(
    {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
)


def staged_spec(
    block: str,
    depths: Sequence[int],
    widths: Sequence[int],
    *,
    stem: StemSpec,
    block_params: Mapping[str, Any] | None = None,
    head: HeadSpec | None = None,
    name: str = "",
    num_classes: int = 10,
    input_size: int = 32,
) -> NetSpec:
    """One block type in every stage; the first stage keeps the resolution, later ones halve it."""
    stages = tuple(
        StageSpec(block, d, w, stride=1 if i == 0 else 2, params=dict(block_params or {}))
        for i, (d, w) in enumerate(zip(depths, widths, strict=True))
    )
    return NetSpec(
        stem=stem,
        stages=stages,
        head=head or HeadSpec(),
        num_classes=num_classes,
        input_size=input_size,
        name=name,
    )


def cifar_spec(
    block: str,
    n: int,
    width: int,
    *,
    expansion: int = 1,
    block_params: Mapping[str, Any] | None = None,
    pre_act: bool = False,
    name: str = "",
) -> NetSpec:
    """The 3-stage CIFAR layout: stem of ``width``, stages of ``width * expansion * (1, 2, 4)``."""
    return staged_spec(
        block,
        (n, n, n),
        [width * expansion * m for m in (1, 2, 4)],
        stem=StemSpec("cifar", width, {"pre_act": pre_act} if pre_act else {}),
        block_params=block_params,
        head=HeadSpec("linear", {"pre_act": True} if pre_act else {}),
        name=name,
    )


@register_family(
    "resnet",
    description="CIFAR ResNet, basic blocks, option-A shortcuts (He et al. 2015, Sec. 4.2)",
    depth=BASIC_DEPTH,
    default_depth=20,
    default_width=16,
    params_doc="shortcut: A|B|C",
)
def resnet_family(depth: int, width: int, shortcut: str = "A") -> NetSpec:
    n = BASIC_DEPTH.blocks_per_stage(depth, "family 'resnet'")
    return cifar_spec(
        "basic", n, width, block_params={"shortcut": shortcut}, name=f"resnet{depth}_w{width}"
    )


@register_family(
    "resnet_bottleneck",
    description="CIFAR ResNet, bottleneck blocks (expansion 4), 9n+2",
    depth=BOTTLENECK_DEPTH,
    default_depth=29,
    default_width=16,
    width_meaning="bottleneck width of the first stage (outputs are 4x)",
    params_doc="shortcut: A|B|C",
)
def resnet_bottleneck_family(depth: int, width: int, shortcut: str = "B") -> NetSpec:
    n = BOTTLENECK_DEPTH.blocks_per_stage(depth, "family 'resnet_bottleneck'")
    return cifar_spec(
        "bottleneck",
        n,
        width,
        expansion=4,
        block_params={"shortcut": shortcut},
        name=f"resnet{depth}_bottleneck_w{width}",
    )


@register_family(
    "plain",
    description="CIFAR plain net: the basic ResNet's layers without shortcuts (degradation baseline)",
    depth=BASIC_DEPTH,
    default_depth=20,
    default_width=16,
)
def plain_family(depth: int, width: int) -> NetSpec:
    n = BASIC_DEPTH.blocks_per_stage(depth, "family 'plain'")
    return cifar_spec("plain_basic", n, width, name=f"plain{depth}_w{width}")


@register_family(
    "plain_bottleneck",
    description="CIFAR plain net with bottleneck layers and no shortcuts, 9n+2",
    depth=BOTTLENECK_DEPTH,
    default_depth=29,
    default_width=16,
    width_meaning="bottleneck width of the first stage (outputs are 4x)",
)
def plain_bottleneck_family(depth: int, width: int) -> NetSpec:
    n = BOTTLENECK_DEPTH.blocks_per_stage(depth, "family 'plain_bottleneck'")
    return cifar_spec(
        "plain_bottleneck", n, width, expansion=4, name=f"plain{depth}_bottleneck_w{width}"
    )


def imagenet_resnet_spec(
    depth: int, width: int = 64, *, block_params: Mapping[str, Any] | None = None, name: str = ""
) -> NetSpec:
    layout = IMAGENET_DEPTH.layout(depth, "family 'resnet_imagenet'")
    bottleneck = depth >= 50
    expansion = 4 if bottleneck else 1
    return staged_spec(
        "bottleneck" if bottleneck else "basic",
        layout,
        [width * expansion * m for m in (1, 2, 4, 8)],
        stem=StemSpec("imagenet", width),
        block_params=block_params,
        name=name or f"resnet{depth}",
        num_classes=1000,
        input_size=224,
    )


@register_family(
    "resnet_imagenet",
    description="ImageNet ResNet-18/34 (basic) and 50/101/152 (bottleneck), projection shortcuts (B)",
    depth=IMAGENET_DEPTH,
    default_depth=18,
    default_width=64,
    params_doc="groups, base_width (bottleneck depths only)",
)
def resnet_imagenet_family(depth: int, width: int, **block_params: Any) -> NetSpec:
    return imagenet_resnet_spec(depth, width, block_params=block_params)


# Parameter counts as published (ResNet paper, Table 6) at the paper's precision.
CIFAR_RESNET_PAPER_PARAMS = {
    20: 0.27e6,
    32: 0.46e6,
    44: 0.66e6,
    56: 0.85e6,
    110: 1.7e6,
    1202: 19.4e6,
}
# torchvision's exact counts (1000 classes, 224x224).
TORCHVISION_PARAMS = {
    18: 11_689_512,
    34: 21_797_672,
    50: 25_557_032,
    101: 44_549_160,
    152: 60_192_808,
}

for _depth, _params in CIFAR_RESNET_PAPER_PARAMS.items():
    register_preset(
        f"resnet{_depth}",
        resnet_family(_depth, 16),
        description=f"CIFAR ResNet-{_depth}, option A (He et al. 2015)",
        paper_params=_params,
        paper="He et al. 2015, Table 6",
        depth=_depth,
    )
for _depth in (20, 32, 44, 56, 110):
    register_preset(
        f"plain{_depth}",
        plain_family(_depth, 16),
        description=f"CIFAR plain-{_depth}: ResNet-{_depth} without shortcuts",
        depth=_depth,
    )
for _depth, _params in TORCHVISION_PARAMS.items():
    register_preset(
        f"resnet{_depth}",  # 50 and 152 are also 6n+2: the named ImageNet preset wins
        imagenet_resnet_spec(_depth),
        description=f"ImageNet ResNet-{_depth} (torchvision-identical)",
        torchvision=f"resnet{_depth}",
        torchvision_params=_params,
        depth=_depth,
    )

register_pattern(
    r"resnet(\d+)", lambda m: resnet_family(int(m.group(1)), 16), "resnet<6n+2> (CIFAR)"
)
register_pattern(r"plain(\d+)", lambda m: plain_family(int(m.group(1)), 16), "plain<6n+2> (CIFAR)")
