"""The SE-ResNet family and its 20-layer preset, built from the plugin's ``se_basic`` block.

Registered through the ``archbench.families`` and ``archbench.presets`` entry points, so
``archbench families``, ``match``, ``describe`` and experiment specs know them.
"""

import archbench_se_block  # noqa: F401  (registers the se_basic block)
from archbench.models.net import NetSpec
from archbench.models.presets import LinearDepth, register_family, register_preset
from archbench.models.presets.resnet import cifar_spec

SE_DEPTH = LinearDepth(per_block=2, stages=3, extra=2)  # 6n+2, as the CIFAR ResNets


@register_family(
    "se_resnet",
    description="CIFAR ResNet with squeeze-excitation basic blocks (Hu et al. 2018)",
    depth=SE_DEPTH,
    default_depth=20,
    default_width=16,
    params_doc="reduction: int (SE bottleneck ratio, default 16); shortcut: A|B|C",
)
def se_resnet(depth: int, width: int, reduction: int = 16, shortcut: str = "B") -> NetSpec:
    n = SE_DEPTH.blocks_per_stage(depth, "family 'se_resnet'")
    params = {"reduction": reduction, "shortcut": shortcut}
    return cifar_spec("se_basic", n, width, block_params=params, name=f"se_resnet{depth}_w{width}")


register_preset(
    "se_resnet20",
    se_resnet(20, 16),
    description="SE-ResNet-20 for CIFAR (se_basic blocks, reduction 16)",
)
