"""Pre-activation ResNets and the ablations of He et al. 2016, "Identity Mappings in Deep
Residual Networks": CIFAR families, the paper's presets and ``preact_resnet<d>``.

Families:

* ``preact``: full pre-activation basic blocks, 6n+2 (ResNet-110 in the paper);
* ``preact_bottleneck``: full pre-activation bottlenecks, 9n+2, outputs 4x the width
  (ResNet-164 and -1001);
* ``resnet_variant`` / ``resnet_bottleneck_variant``: the CIFAR ResNet with any Fig. 4
  activation ordering (and, for basic blocks, any Fig. 2 shortcut variant) picked by the
  ``block`` param, so orderings compare at equal depth and width.

Pre-activation nets (Fig. 4(d), (e)) need an activation after the last addition (the paper,
Sec. 4.1): their head is ``linear`` with ``pre_act`` (BN-ReLU before pooling). Full
pre-activation nets also start with a bare conv (stem ``pre_act``): the first block
normalises its own input. Which a block needs is a fact on its class
(``stem_pre_act``/``head_pre_act``), as is its ``layout``, so the variant families take any
registered block of their layout, plugins included.

``preact_resnet<d>`` follows the paper's split: up to 110 layers a depth that is 6n+2 gets
basic blocks, from 164 on a depth that is 9n+2 gets bottlenecks; a depth that fits only one
rule gets that one. (110 and 164 are both 6n+2 and 9n+2.)
"""

from __future__ import annotations

from typing import Any

from archbench.errors import SpecError
from archbench.models.net import HeadSpec, NetSpec, StemSpec
from archbench.models.presets import register_family, register_pattern, register_preset
from archbench.models.presets.resnet import BASIC_DEPTH, BOTTLENECK_DEPTH, cifar_spec, staged_spec
from archbench.registry import BLOCKS


def layout_blocks(layout: str) -> list[str]:
    """The registered blocks (plugins included) of a ``layout``, which the variant families
    accept: a block declares its layout and pre-activation needs on its class."""
    return [n for n in BLOCKS.names() if getattr(BLOCKS.get(n), "layout", None) == layout]


# Published parameter counts (CIFAR-10), at the paper's precision.
PAPER_PARAMS = {110: 1.7e6, 164: 1.7e6, 1001: 10.2e6}
PAPER = "He et al. 2016, Identity Mappings in Deep Residual Networks, Table 4"
# Up to this depth ``preact_resnet<d>`` prefers basic blocks; beyond it, bottlenecks.
LAST_BASIC_DEPTH = 110


@register_family(
    "preact",
    description="CIFAR pre-activation ResNet, basic blocks, 6n+2 (He et al. 2016, Fig. 4(e))",
    depth=BASIC_DEPTH,
    default_depth=20,
    default_width=16,
    params_doc="shortcut: A|B|C (default A, as family 'resnet')",
)
def preact_family(depth: int, width: int, shortcut: str = "A") -> NetSpec:
    n = BASIC_DEPTH.blocks_per_stage(depth, "family 'preact'")
    return cifar_spec(
        "preact_basic",
        n,
        width,
        block_params={"shortcut": shortcut},
        pre_act=True,
        name=f"preact_resnet{depth}_w{width}",
    )


@register_family(
    "preact_bottleneck",
    description="CIFAR pre-activation ResNet, bottlenecks (expansion 4), 9n+2 (He et al. 2016)",
    depth=BOTTLENECK_DEPTH,
    default_depth=29,
    default_width=16,
    width_meaning="bottleneck width of the first stage (outputs are 4x)",
    params_doc="shortcut: A|B|C (default B, a 1x1 conv projection where the shape changes)",
)
def preact_bottleneck_family(depth: int, width: int, shortcut: str = "B") -> NetSpec:
    n = BOTTLENECK_DEPTH.blocks_per_stage(depth, "family 'preact_bottleneck'")
    return cifar_spec(
        "preact_bottleneck",
        n,
        width,
        expansion=4,
        block_params={"shortcut": shortcut},
        pre_act=True,
        name=f"preact_resnet{depth}_bottleneck_w{width}",
    )


def variant_spec(
    family: str,
    layout: str,
    *,
    n: int,
    width: int,
    expansion: int,
    block: str,
    shortcut: str | None,
    default_shortcut: str,
    block_params: dict[str, Any],
    name: str,
) -> NetSpec:
    """The CIFAR layout with ``block`` in every stage and the stem/head that block needs."""
    cls = BLOCKS.get(block) if block in BLOCKS else None
    if getattr(cls, "layout", None) != layout:
        what = "" if cls is None else f" for a {layout!r} layout (its layout: {cls.layout!r})"
        raise SpecError(
            f"family {family!r}: unknown block {block!r}{what}; allowed: "
            + ", ".join(layout_blocks(layout))
        )
    params = dict(block_params)
    takes_shortcut = "shortcut" in cls.Params.__dataclass_fields__
    if takes_shortcut:
        params["shortcut"] = default_shortcut if shortcut is None else shortcut
    elif shortcut is not None:
        raise SpecError(
            f"family {family!r}: block {block!r} has a fixed shortcut; drop param 'shortcut' "
            f"(got {shortcut!r})"
        )
    stem_pre_act, head_pre_act = cls.stem_pre_act, cls.head_pre_act
    return staged_spec(
        block,
        (n, n, n),
        [width * expansion * m for m in (1, 2, 4)],
        stem=StemSpec("cifar", width, {"pre_act": True} if stem_pre_act else {}),
        block_params=params,
        head=HeadSpec("linear", {"pre_act": True} if head_pre_act else {}),
        name=name,
    )


@register_family(
    "resnet_variant",
    description="CIFAR ResNet, 6n+2, with any Fig. 4 ordering or Fig. 2 shortcut (He et al. 2016)",
    depth=BASIC_DEPTH,
    default_depth=20,
    default_width=16,
    params_doc=(
        "block: any block of layout 'basic', plugins included (default basic; the Fig. 4 "
        "orderings, the Fig. 2 shortcuts); shortcut: A|B|C (default A); any other param goes "
        "to the block (e.g. gate_bias, dropout, shortcut_scale)"
    ),
)
def resnet_variant_family(
    depth: int, width: int, block: str = "basic", shortcut: str | None = None, **block_params: Any
) -> NetSpec:
    n = BASIC_DEPTH.blocks_per_stage(depth, "family 'resnet_variant'")
    return variant_spec(
        "resnet_variant",
        "basic",
        n=n,
        width=width,
        expansion=1,
        block=block,
        shortcut=shortcut,
        default_shortcut="A",  # as family 'resnet': block='basic' gives the same spec
        block_params=block_params,
        name=f"resnet{depth}_{block}_w{width}",
    )


@register_family(
    "resnet_bottleneck_variant",
    description="CIFAR bottleneck ResNet, 9n+2, any Fig. 4 activation ordering (He et al. 2016)",
    depth=BOTTLENECK_DEPTH,
    default_depth=29,
    default_width=16,
    width_meaning="bottleneck width of the first stage (outputs are 4x)",
    params_doc=(
        "block: any block of layout 'bottleneck', plugins included (default bottleneck); "
        "shortcut: A|B|C (default B); groups, base_width, expansion go to the block"
    ),
)
def resnet_bottleneck_variant_family(
    depth: int,
    width: int,
    block: str = "bottleneck",
    shortcut: str | None = None,
    **block_params: Any,
) -> NetSpec:
    n = BOTTLENECK_DEPTH.blocks_per_stage(depth, "family 'resnet_bottleneck_variant'")
    return variant_spec(
        "resnet_bottleneck_variant",
        "bottleneck",
        n=n,
        width=width,
        expansion=4,
        block=block,
        shortcut=shortcut,
        default_shortcut="B",  # as family 'resnet_bottleneck'
        block_params=block_params,
        name=f"resnet{depth}_{block}_w{width}",
    )


def preact_resnet(depth: int) -> NetSpec:
    """``preact_resnet<depth>``: basic up to 110 layers, bottleneck beyond (see module doc)."""
    basic = _fits(BASIC_DEPTH, depth)
    bottleneck = _fits(BOTTLENECK_DEPTH, depth)
    if not (basic or bottleneck):
        raise SpecError(
            f"preact_resnet{depth}: depth must be 6n+2 (basic blocks, e.g. 20, 56, 110) or "
            f"9n+2 (bottlenecks, e.g. 164, 1001), got {depth}"
        )
    use_basic = basic and (depth <= LAST_BASIC_DEPTH or not bottleneck)
    if use_basic:
        return preact_family(depth, 16).replace(name=f"preact_resnet{depth}")
    return preact_bottleneck_family(depth, 16).replace(name=f"preact_resnet{depth}")


def _fits(rule: Any, depth: int) -> bool:
    try:
        rule.blocks_per_stage(depth, "")
    except SpecError:
        return False
    return True


for _depth, _params in PAPER_PARAMS.items():
    _spec = preact_resnet(_depth)
    _kind = "basic" if _spec.stages[0].block == "preact_basic" else "bottleneck"
    register_preset(
        f"preact_resnet{_depth}",
        _spec,
        description=f"CIFAR pre-activation ResNet-{_depth}, {_kind} blocks (He et al. 2016)",
        paper_params=_params,
        # The paper counts conv and fc weights only: with BN's affine params ResNet-1001 has
        # 10.33M, without them 10.18M (its "10.2M"); 110 and 164 round to 1.7M either way.
        paper_params_excludes=("BatchNorm",),
        paper=PAPER,
        depth=_depth,
    )

register_pattern(
    r"preact_resnet(\d+)",
    lambda m: preact_resnet(int(m.group(1))),
    "preact_resnet<6n+2 | 9n+2> (CIFAR)",
)
