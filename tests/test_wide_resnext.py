"""Wide ResNet and ResNeXt: paper parameter counts, the reference wiring, param validation and
generic preset names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from archbench.errors import SpecError
from archbench.models.blocks.base import conv1x1
from archbench.models.blocks.resnext import ResNeXtBlock
from archbench.models.blocks.wide import WideBlock
from archbench.models.net import build_net
from archbench.models.presets import get_family, get_preset
from archbench.registry import PRESETS


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomise_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)


# -- paper parameter counts -------------------------------------------------------------------

PAPER_PRESETS = sorted(
    n
    for n in PRESETS.names()
    if n.startswith(("wrn_", "resnext29_")) and "paper_params" in PRESETS.entry(n).meta
)


def test_paper_presets_registered() -> None:
    expected = {"wrn_16_4", "wrn_16_8", "wrn_28_10", "wrn_40_4", "wrn_40_8"}
    assert expected | {"resnext29_8x64d", "resnext29_16x64d"} <= set(PAPER_PRESETS)


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_params_match_paper(name: str) -> None:
    meta = PRESETS.entry(name).meta
    paper, rounding = meta["paper_params"], meta["paper_rounding"]
    count = n_params(build_net(get_preset(name), device="meta"))
    # Both papers give millions to one decimal: WRN rounds, ResNeXt truncates.
    if rounding == "nearest":
        assert abs(count - paper) <= 0.05e6, (count, paper)
    else:
        assert rounding == "truncate"
        assert paper <= count < paper + 0.1e6, (count, paper)


@pytest.mark.parametrize(
    ("name", "count"),
    [("wrn_28_10", 36_479_194), ("wrn_16_8", 10_961_370), ("resnext29_8x64d", 34_426_698)],
)
def test_exact_counts_do_not_drift(name: str, count: int) -> None:
    assert n_params(build_net(get_preset(name), device="meta")) == count


# -- WRN: layout and the reference code's wiring ----------------------------------------------


def test_wrn_layout() -> None:
    spec = get_preset("wrn_28_10")
    assert spec.stem.width == 16 and dict(spec.stem.params) == {"pre_act": True}
    assert dict(spec.head.params) == {"pre_act": True}
    assert [(s.block, s.depth, s.width, s.stride) for s in spec.stages] == [
        ("wide", 4, 160, 1),
        ("wide", 4, 320, 2),
        ("wide", 4, 640, 2),
    ]


def _reference_wrn(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The forward of the WRN reference code (``pytorch/resnet.py``), on ``net``'s tensors."""

    def bn(m: nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, training=False)

    o = F.conv2d(x, net.stem.conv.weight, padding=1)
    for stage, first_stride in zip(net.stages, (1, 2, 2)):
        for i, blk in enumerate(stage):
            stride = first_stride if i == 0 else 1
            o1 = F.relu(bn(blk.bn1, o))
            y = F.conv2d(o1, blk.conv1.weight, stride=stride, padding=1)
            y = F.conv2d(F.relu(bn(blk.bn2, y)), blk.conv2.weight, padding=1)
            if blk.conv1.in_channels != blk.conv1.out_channels:  # "convdim" reads o1
                o = y + F.conv2d(o1, blk.downsample.weight, stride=stride)
            else:
                o = y + o
    o = F.relu(bn(net.head.bn, o))
    return F.linear(F.adaptive_avg_pool2d(o, 1).flatten(1), net.head.fc.weight, net.head.fc.bias)


@pytest.mark.parametrize("name", ["wrn_16_2", "wrn_10_1"])
def test_wrn_forward_equals_reference_code(name: str) -> None:
    net = build_net(get_preset(name))
    randomise_bn(net)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), _reference_wrn(net, x))


# -- WRN: dropout -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_dropout_range(bad: float) -> None:
    with pytest.raises(SpecError, match=r"block 'wide': param 'dropout' must be in \[0, 1\)"):
        WideBlock(16, 16, 1, dropout=bad)
    with pytest.raises(SpecError, match=r"family 'wrn': param 'dropout' must be in \[0, 1\)"):
        get_family("wrn").build(16, 64, dropout=bad)


def test_dropout_type_and_unknown_family_param() -> None:
    with pytest.raises(SpecError, match=r"block 'wide': param 'dropout' must be float"):
        WideBlock(16, 16, 1, dropout="0.3")
    with pytest.raises(SpecError, match=r"family 'wrn': unknown param 'drop'; allowed: dropout"):
        get_family("wrn").build(16, 64, drop=0.3)


def test_dropout_sits_between_the_convs() -> None:
    net = build_net(get_family("wrn").build(10, 16, dropout=0.3))
    assert all(b.dropout.p == 0.3 for _, b in net.blocks())
    block = net.stages[0][0]
    seen: dict[str, torch.Tensor] = {}
    block.dropout.register_forward_hook(lambda m, i, o: seen.update(drop_in=i[0], drop_out=o))
    block.conv2.register_forward_pre_hook(lambda m, i: seen.update(conv2_in=i[0]))
    block.train()
    x = torch.randn(2, 16, 8, 8)
    block(x)
    assert torch.equal(seen["conv2_in"], seen["drop_out"])
    assert not torch.equal(seen["drop_in"], seen["drop_out"])
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    assert isinstance(build_net(get_preset("wrn_10_1")).stages[0][0].dropout, nn.Identity)


# -- ResNeXt: torchvision's Bottleneck, layout, width validation ------------------------------


@pytest.mark.parametrize(
    ("w_in", "planes", "stride", "cardinality", "base_width"),
    [(64, 64, 1, 8, 64), (256, 128, 2, 32, 4), (128, 32, 1, 2, 32), (256, 64, 1, 32, 4)],
)
def test_resnext_block_is_torchvision_bottleneck(
    w_in: int, planes: int, stride: int, cardinality: int, base_width: int
) -> None:
    w_out = planes * 4
    ours = ResNeXtBlock(w_in, w_out, stride, cardinality=cardinality, base_width=base_width)
    downsample = None
    if stride != 1 or w_in != w_out:
        downsample = nn.Sequential(conv1x1(w_in, w_out, stride), nn.BatchNorm2d(w_out))
    theirs = Bottleneck(w_in, planes, stride, downsample, groups=cardinality, base_width=base_width)
    randomise_bn(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names and shapes
    ours.eval()
    theirs.eval()
    x = torch.randn(2, w_in, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_resnext29_layout() -> None:
    net = build_net(get_preset("resnext29_8x64d"), device="meta")
    assert net.stem.conv.out_channels == 64 and hasattr(net.stem, "bn")
    for i, stage in enumerate(net.stages):
        assert len(stage) == 3
        for block in stage:
            assert block.conv2.groups == 8
            assert block.conv2.out_channels == 512 * 2**i  # C x d, d doubling per stage
            assert block.conv3.out_channels == 256 * 2**i


def test_resnext_group_width_must_be_whole() -> None:
    # 32 planes x 3 / 64 = 1.5 channels per group.
    with pytest.raises(
        SpecError,
        match=r"block 'resnext': param 'base_width' 3 gives a group width of 32\*3/64 = 1\.5 "
        r".*allowed base_width here: multiples of 2",
    ):
        ResNeXtBlock(64, 128, 1, base_width=3)
    with pytest.raises(SpecError, match=r"multiples of 16 .*a w_out that is a multiple of 64"):
        ResNeXtBlock(64, 16, 1)  # the default 32x4d needs 64 output channels at least
    with pytest.raises(SpecError, match=r"block 'resnext': w_out 130 must be divisible by"):
        ResNeXtBlock(64, 130, 1)
    with pytest.raises(SpecError, match=r"block 'resnext': param 'cardinality' must be >= 1"):
        ResNeXtBlock(64, 256, 1, cardinality=0)


def test_resnext_family_widths_snap() -> None:
    family = get_family("resnext")
    assert family.width_step({"base_width": 4}) == 16
    assert family.width_step({}) == 1  # the 8x64d default: any width
    with pytest.raises(SpecError, match=r"width 24 must be a multiple of 16"):
        family.build(29, 24, cardinality=32, base_width=4)
    for width in (16, 32, 48):
        family.build(29, width, cardinality=32, base_width=4).validate()
    with pytest.raises(
        SpecError,
        match=r"family 'resnext': unknown param 'groups'; allowed: base_width, cardinality",
    ):
        family.build(29, 64, groups=8)


# -- generic names ----------------------------------------------------------------------------


def test_wrn_pattern() -> None:
    spec = get_preset("wrn_22_4")
    assert spec.name == "wrn_22_4"
    assert [s.width for s in spec.stages] == [64, 128, 256] and spec.stem.width == 16
    assert spec.spec_hash() == get_family("wrn").build(22, 64).spec_hash()
    assert get_family("wrn").build(28, 40).name == "wrn28_w40"  # width not 16k
    with pytest.raises(SpecError, match=r"depth must be 6n\+4 .*got 17"):
        get_preset("wrn_17_4")
    with pytest.raises(SpecError, match=r"width factor k must be >= 1, got 0"):
        get_preset("wrn_16_0")


def test_resnext_pattern() -> None:
    spec = get_preset("resnext29_4x32d")
    assert spec.name == "resnext29_4x32d"
    assert dict(spec.stages[0].params) == {"cardinality": 4, "base_width": 32, "shortcut": "B"}
    assert get_family("resnext").build(29, 32).name == "resnext29_8x64d_w32"
    with pytest.raises(SpecError, match=r"depth must be 9n\+2"):
        get_preset("resnext30_8x64d")
    assert get_preset("resnext101_32x8d").stem.kind == "imagenet"  # the named preset wins
    assert get_preset("resnext101_2x64d").stem.kind == "cifar"  # 101 = 9 * 11 + 2
