"""VGG families and presets (Simonyan & Zisserman 2015), with batch norm.

``depth`` is the VGG name: 11, 13, 16 or 19 weighted layers of the ImageNet original (conv
layers + 3 fully connected). The CIFAR nets keep the conv stack and replace the three fc
layers by one (the common CIFAR adaptation), so ``vgg16`` on CIFAR has 14 weighted layers.
Conv groups (configurations A, B, D, E of the paper's Table 1) have widths
``w * (1, 2, 4, 8, 8)`` (published: w = 64).
"""

from __future__ import annotations

from typing import Any

from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec
from archbench.models.presets import TableDepth, register_family, register_preset

# Conv layers per group (paper Table 1: A=11, B=13, D=16, E=19).
VGG_DEPTH = TableDepth(
    {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
)
WIDTH_MULTS = (1, 2, 4, 8, 8)


def vgg_spec(
    depth: int,
    width: int,
    *,
    head: HeadSpec,
    bn: bool = True,
    bias: bool = True,
    name: str = "",
    num_classes: int = 10,
    input_size: int = 32,
    what: str = "family 'vgg'",
) -> NetSpec:
    """The VGG stack: stem = first conv; stage ``i`` = the rest of conv group ``i``."""
    layout = VGG_DEPTH.layout(depth, what)
    params: dict[str, Any] = {"bn": bn, "bias": bias}
    stages = []
    for i, (convs, mult) in enumerate(zip(layout, WIDTH_MULTS, strict=True)):
        convs -= i == 0  # the stem is the first conv of group 0
        if convs:  # VGG-11's first group is the stem alone
            stride = 1 if i == 0 else 2  # the pool between groups opens the next group
            stages.append(StageSpec("vgg", convs, width * mult, stride, dict(params)))
    return NetSpec(
        stem=StemSpec("vgg", width, dict(params)),
        stages=tuple(stages),
        head=head,
        num_classes=num_classes,
        input_size=input_size,
        name=name,
    )


@register_family(
    "vgg",
    description="CIFAR VGG-11/13/16/19 with BN: the conv stack, 5 max-pools, one fc layer",
    depth=VGG_DEPTH,
    default_depth=16,
    default_width=64,
    width_meaning="width of the first conv group (then 2x, 4x, 8x, 8x)",
    params_doc="bn (default true), bias (conv bias, default true), dropout (before the fc)",
)
def vgg_family(
    depth: int, width: int, bn: bool = True, bias: bool = True, dropout: float = 0.0
) -> NetSpec:
    head = HeadSpec("vgg", {"dropout": dropout} if dropout else {})
    suffix = "_bn" if bn else ""
    return vgg_spec(depth, width, head=head, bn=bn, bias=bias, name=f"vgg{depth}{suffix}_w{width}")


@register_family(
    "vgg_imagenet",
    description="ImageNet VGG-11/13/16/19 (torchvision vgg*_bn layout): 224x224, 3 fc layers",
    depth=VGG_DEPTH,
    default_depth=16,
    default_width=64,
    width_meaning="width of the first conv group (then 2x, 4x, 8x, 8x)",
    params_doc="bn (default true), bias (default true), hidden (fc width, default 4096), dropout",
)
def vgg_imagenet_family(
    depth: int,
    width: int,
    bn: bool = True,
    bias: bool = True,
    hidden: int = 4096,
    dropout: float = 0.5,
) -> NetSpec:
    head = HeadSpec("vgg", {"hidden": hidden, "grid": 7, "dropout": dropout})
    return vgg_spec(
        depth,
        width,
        head=head,
        bn=bn,
        bias=bias,
        name=f"vgg{depth}{'_bn' if bn else ''}_imagenet_w{width}",
        num_classes=1000,
        input_size=224,
        what="family 'vgg_imagenet'",
    )


# torchvision's exact counts (1000 classes), models built by torchvision.models.vgg*_bn().
TORCHVISION_BN_PARAMS = {
    11: 132_868_840,
    13: 133_053_736,
    16: 138_365_992,
    19: 143_678_248,
}
# The paper's Table 2 (no BN; millions, three significant figures): A 133, B 133, D 138, E 144.
PAPER_PARAMS = {11: 133e6, 13: 133e6, 16: 138e6, 19: 144e6}

for _depth in (11, 13, 16, 19):
    register_preset(
        f"vgg{_depth}",
        vgg_family(_depth, 64),
        description=f"CIFAR VGG-{_depth} with BN: torchvision vgg{_depth}_bn features + fc(512, 10)",
        depth=_depth,
    )
    register_preset(
        f"vgg{_depth}_bn_imagenet",
        vgg_imagenet_family(_depth, 64),
        description=f"ImageNet VGG-{_depth} with BN (torchvision-identical vgg{_depth}_bn)",
        torchvision=f"vgg{_depth}_bn",
        torchvision_params=TORCHVISION_BN_PARAMS[_depth],
        depth=_depth,
    )
