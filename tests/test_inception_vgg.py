"""Inception-ResNet and VGG blocks, families and presets: published counts, sizes, errors."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import ResidualAdd
from archbench.models.blocks.inception_resnet import (
    InceptionResNetA,
    InceptionResNetB,
    InceptionResNetC,
    ReductionA,
    ReductionB,
    apportion,
)
from archbench.models.blocks.vgg import VGGBlock
from archbench.models.net import Net, build_net
from archbench.models.presets import get_family, get_preset
from archbench.registry import PRESETS


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_widths(module: nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]


def stage_sizes(net: Net) -> list[int]:
    """Spatial size after each stage, from the blocks' own ``output_size``."""
    size, out = net.stem.output_size(net.spec.input_size), []
    for stage in net.stages:
        for block in stage:
            size = block.output_size(size)
        out.append(size)
    return out


# -- Inception-ResNet-v2 as released --------------------------------------------------------------


def test_v2_params_equal_timm_and_keras() -> None:
    net = build_net(get_preset("inception_resnet_v2"), device="meta")
    assert n_params(net) == 55_843_464  # timm inception_resnet_v2, 1000 classes
    assert PRESETS.entry("inception_resnet_v2").meta["timm_params"] == 55_843_464
    # Keras' "total" counts BN moving mean/var but no BN gamma: one more number per BN channel.
    bn_channels = sum(m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn_channels == 30_272
    assert n_params(net) + bn_channels == 55_873_736


def test_v2_published_layout() -> None:
    net = build_net(get_preset("inception_resnet_v2"), device="meta")
    depths = [len(s) for s in net.stages]
    assert depths == [10, 1, 20, 1, 9, 1]
    assert stage_sizes(net) == [35, 17, 17, 8, 8, 8]
    assert net.stem.output_size(299) == 35
    a, ra, b, rb, c, last = (stage[0] for stage in net.stages)
    assert [conv_widths(getattr(a, f"branch{i}")) for i in range(3)] == [
        [32],
        [32, 32],
        [32, 48, 64],
    ]
    assert (a.conv2d.in_channels, a.conv2d.out_channels, a.conv2d.bias is not None) == (
        128,
        320,
        True,
    )
    assert conv_widths(ra) == [384, 256, 256, 384]
    assert [conv_widths(getattr(b, f"branch{i}")) for i in range(2)] == [[192], [128, 160, 192]]
    assert conv_widths(rb) == [256, 384, 256, 288, 256, 288, 320]
    assert [conv_widths(getattr(c, f"branch{i}")) for i in range(2)] == [[192], [192, 224, 256]]
    scales = [blk.add.branch_scale for blk in (a, b, c, last)]
    assert scales == [0.17, 0.10, 0.20, 1.0]
    assert c.relu is not None and last.relu is None
    assert net.head.conv[0].out_channels == 1536 and net.head.params.dropout == 0.2


def test_v2_forward_at_smallest_input() -> None:
    spec = get_preset("inception_resnet_v2", input_size=75)
    net = Net(spec).eval()  # default init: the forward pass is what is tested here
    assert stage_sizes(net)[-1] == 1
    with torch.no_grad():
        y = net(torch.randn(1, 3, 75, 75))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()


def test_v2_too_small_input_is_named() -> None:
    with pytest.raises(SpecError, match=r"reduction_b.*input size 74"):
        get_preset("inception_resnet_v2", input_size=74).validate()
    with pytest.raises(SpecError, match="too small for stem 'inception_resnet_v2'"):
        get_preset("inception_resnet_v2", input_size=14).validate()


def test_v1_layout() -> None:
    net = build_net(get_preset("inception_resnet_v1"), device="meta")
    assert [len(s) for s in net.stages] == [5, 1, 10, 1, 4, 1]
    assert [s[0].w_out for s in net.stages] == [256, 896, 896, 1792, 1792, 1792]
    assert stage_sizes(net) == [35, 17, 17, 8, 8, 8]
    a, ra, b, rb, c, _ = (stage[0] for stage in net.stages)
    assert conv_widths(a)[:-1] == [32, 32, 32, 32, 32, 32]
    assert conv_widths(ra) == [384, 192, 192, 256]  # k, l, m, n of the paper's Table 1
    assert conv_widths(b)[:-1] == [128, 128, 128, 128]
    assert conv_widths(rb) == [256, 384, 256, 256, 256, 256, 256]
    assert conv_widths(c)[:-1] == [192, 192, 192, 192]
    assert not hasattr(net.head, "conv")  # v1 pools the 1792 channels directly


@pytest.mark.slow
def test_v2_matches_timm_outputs() -> None:
    """timm's weights load by renaming prefixes, and the outputs are identical."""
    timm = pytest.importorskip("timm")
    ref = timm.create_model("inception_resnet_v2").eval()
    for m in ref.modules():  # non-trivial BN statistics, so BN placement matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    rules = [
        (r"^(conv2d_(?:1a|2a|2b|3b|4a)|mixed_5b)\.", r"stem.\1."),
        (r"^repeat\.(\d+)\.", r"stages.0.\1."),
        (r"^mixed_6a\.", "stages.1.0."),
        (r"^repeat_1\.(\d+)\.", r"stages.2.\1."),
        (r"^mixed_7a\.", "stages.3.0."),
        (r"^repeat_2\.(\d+)\.", r"stages.4.\1."),
        (r"^block8\.", "stages.5.0."),
        (r"^conv2d_7b\.conv\.", "head.conv.0."),
        (r"^conv2d_7b\.bn\.", "head.conv.1."),
        (r"^classif\.", "head.fc."),
    ]

    def rename(key: str) -> str:
        for pattern, repl in rules:
            if re.search(pattern, key):
                return re.sub(pattern, repl, key)
        raise KeyError(key)

    net = Net(get_preset("inception_resnet_v2")).eval()
    net.load_state_dict({rename(k): v for k, v in ref.state_dict().items()}, strict=True)
    net.head.conv[1].eps = 1e-3  # the shared linear head uses torch's default BN eps
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x))


# -- residual blocks ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [InceptionResNetA, InceptionResNetB, InceptionResNetC])
def test_scale_multiplies_the_branch(cls: type) -> None:
    torch.manual_seed(0)
    lo = cls(16, 16, 1, scale=0.1, activation=False).eval()
    hi = cls(16, 16, 1, scale=0.3, activation=False).eval()
    hi.load_state_dict(lo.state_dict())
    branch_in = []
    hi.add.register_forward_hook(lambda m, inp, out: branch_in.append(inp[1]))
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        d_lo, d_hi = lo(x) - x, hi(x) - x
    assert d_lo.abs().max() > 0
    torch.testing.assert_close(d_hi, 3 * d_lo)
    # Diagnostics hooking ResidualAdd see the unscaled branch and the scale beside it.
    assert isinstance(hi.add, ResidualAdd) and hi.add.branch_scale == 0.3
    torch.testing.assert_close(branch_in[0] * 0.3, d_hi)


def test_activation_switch() -> None:
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        assert (InceptionResNetC(16, 16, 1).eval()(x) >= 0).all()
        assert (InceptionResNetC(16, 16, 1, activation=False).eval()(x) < 0).any()


def test_width_change_uses_projection() -> None:
    block = InceptionResNetA(64, 128, 1)
    assert isinstance(block.downsample, nn.Sequential)
    assert InceptionResNetA(64, 64, 1).downsample is None
    with pytest.raises(SpecError, match=r"stride must be one of \(1,\)"):
        InceptionResNetA(64, 128, 2)


def test_branch_mult_scales_branches() -> None:
    assert conv_widths(InceptionResNetA(320, 320, 1, branch_mult=0.5))[:6] == [
        16,
        16,
        16,
        16,
        24,
        32,
    ]
    # Half-way widths round up (32 * 15/320 = 1.5 -> 2), not to even.
    assert conv_widths(InceptionResNetA(15, 15, 1).branch0) == [2]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"branch_mult": 0.0}, r"'branch_mult' must be a positive finite number, got 0.0"),
        ({"branch_mult": -1}, r"'branch_mult' must be a positive finite number"),
        ({"scale": 0.0}, r"'scale' must be a positive finite number, got 0.0"),
        ({"scale": float("nan")}, r"'scale' must be a positive finite number"),
        ({"version": "v3"}, r"'version' must be one of 'v1', 'v2', got 'v3'"),
    ],
)
def test_bad_params_are_named(params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=rf"block 'inception_resnet_a': param {message}"):
        InceptionResNetA(32, 32, 1, **params)


def test_zero_width_branch_is_an_error() -> None:
    # 32 / 320 * 32 * 0.1 = 0.32 channels: names the smallest width that works.
    with pytest.raises(
        SpecError, match=r"w_out=32 with branch_mult=0.1 rounds a branch to 0 .*w_out >= 50"
    ):
        InceptionResNetA(32, 32, 1, branch_mult=0.1)
    InceptionResNetA(50, 50, 1, branch_mult=0.1)


# -- reduction blocks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "out"), [(35, 17), (17, 8), (9, 4), (8, 3), (3, 1), (2, 0), (1, 0)]
)
def test_reduction_output_size(size: int, out: int) -> None:
    for cls in (ReductionA, ReductionB):
        block = cls(16, 48, 2)
        assert block.output_size(size) == out
        if out:
            y = block(torch.randn(2, 16, size, size))
            assert y.shape == (2, 48, out, out)


@pytest.mark.parametrize("cls", [ReductionA, ReductionB])
@pytest.mark.parametrize(("w_in", "w_out"), [(64, 128), (20, 68), (68, 130), (30, 31 + 30)])
def test_reduction_width_is_w_out(cls: type, w_in: int, w_out: int) -> None:
    block = cls(w_in, w_out, 2)
    assert block(torch.randn(1, w_in, 7, 7)).shape[1] == w_out


def test_reduction_rejects_narrowing_and_stride_one() -> None:
    with pytest.raises(
        SpecError, match=r"reduction_a.*w_out \(64\) must exceed w_in \(64\) by at least 2"
    ):
        ReductionA(64, 64, 2)
    with pytest.raises(SpecError, match=r"reduction_b.*must exceed w_in \(64\) by at least 3"):
        ReductionB(64, 66, 2)
    with pytest.raises(SpecError, match=r"stride must be one of \(2,\), got 1"):
        ReductionA(64, 128, 1)
    with pytest.raises(SpecError, match="unknown param 'k'"):
        ReductionA(64, 128, 1, k=3)  # params are checked before the stride


def test_apportion_is_exact() -> None:
    assert apportion(768, (384, 384)) == [384, 384]
    assert apportion(64, (384, 288, 320)) == [25, 18, 21]
    assert sum(apportion(101, (3, 3, 3))) == 101


# -- CIFAR family ---------------------------------------------------------------------------------


def test_cifar_family_forward() -> None:
    spec = get_preset("inception_resnet_cifar")
    net = build_net(spec)
    assert [s[0].w_out for s in net.stages] == [40, 136, 136, 260, 260, 260]
    assert stage_sizes(net) == [32, 15, 15, 7, 7, 7]
    y = net(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.sum().backward()


def test_cifar_family_is_scaled_v2() -> None:
    """At w = 320 the CIFAR family has the published v2 blocks (only stem, head input differ)."""
    fam = get_family("inception_resnet")
    small = build_net(fam.build(8, 20), device="meta")
    a = small.stages[0][0]
    assert [conv_widths(getattr(a, f"branch{i}")) for i in range(3)] == [[2], [2, 2], [2, 3, 4]]
    full = build_net(fam.build(40, 320), device="meta")
    v2 = build_net(get_preset("inception_resnet_v2"), device="meta")
    assert n_params(full.stages) == n_params(v2.stages)


def test_cifar_family_rules() -> None:
    fam = get_family("inception_resnet")
    assert fam.depth.rule == "4n"
    assert fam.depth.valid_depths(1, 20) == [4, 8, 12, 16, 20]
    with pytest.raises(SpecError, match=r"depth must be 4n with n >= 1 .* got 10"):
        fam.build(10, 40)
    with pytest.raises(SpecError, match="width 30 must be a multiple of 20"):
        fam.build(8, 30)
    assert fam.width_step({"version": "v1"}) == 8
    v1 = fam.build(4, 8, version="v1")
    assert [s.width for s in v1.stages] == [8, 28, 28, 56, 56]
    with pytest.raises(SpecError, match=r"version must be one of \['v1', 'v2'\], got 'v9'"):
        fam.build(4, 40, version="v9")
    with pytest.raises(SpecError, match=r"reduction_b.*input size 6"):
        fam.build(8, 20, input_size=6).validate()


def test_family_params_reach_blocks() -> None:
    spec = get_family("inception_resnet").build(8, 40, scale_a=0.3, branch_mult=2.0, dropout=0.1)
    assert spec.stages[0].params == {"scale": 0.3, "version": "v2", "branch_mult": 2.0}
    assert spec.head.params["dropout"] == 0.1
    net = build_net(spec, device="meta")
    assert net.stages[0][0].add.branch_scale == 0.3


# -- VGG ------------------------------------------------------------------------------------------

TV_FEATURES = {11: 9_225_984, 13: 9_410_880, 16: 14_723_136, 19: 20_035_392}


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_cifar_params(depth: int) -> None:
    """CIFAR VGG = torchvision vgg*_bn features (conv + BN) + fc(512, 10)."""
    net = build_net(get_preset(f"vgg{depth}"), device="meta")
    assert n_params(net) == TV_FEATURES[depth] + 512 * 10 + 10
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert convs == depth - 3


def test_vgg16_cifar_count() -> None:
    assert n_params(build_net(get_preset("vgg16"), device="meta")) == 14_728_266
    assert n_params(build_net(get_preset("vgg11"), device="meta")) == 9_231_114


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_imagenet_equals_torchvision(depth: int) -> None:
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        ref = getattr(torchvision.models, f"vgg{depth}_bn")()
    ours = build_net(get_preset(f"vgg{depth}_bn_imagenet"), device="meta")
    assert n_params(ours) == n_params(ref)
    assert n_params(ours) == PRESETS.entry(f"vgg{depth}_bn_imagenet").meta["torchvision_params"]
    assert (
        n_params(ours.stem) + n_params(ours.stages) == TV_FEATURES[depth] == n_params(ref.features)
    )
    shapes = [tuple(v.shape) for v in ours.state_dict().values()]
    assert shapes == [tuple(v.shape) for v in ref.state_dict().values()]


@pytest.mark.parametrize(("depth", "paper"), [(11, 133e6), (13, 133e6), (16, 138e6), (19, 144e6)])
def test_vgg_without_bn_matches_paper(depth: int, paper: float) -> None:
    spec = get_family("vgg_imagenet").build(depth, 64, bn=False, num_classes=1000, input_size=224)
    assert round(n_params(build_net(spec, device="meta")), -6) == paper  # Table 2: millions


def test_vgg_forward_and_sizes() -> None:
    net = build_net(get_preset("vgg11"))
    assert stage_sizes(net) == [16, 8, 4, 2]  # VGG-11's first group is the stem alone
    y = net(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    block = VGGBlock(8, 16, 2)
    assert block.output_size(9) == 4 and block(torch.randn(1, 8, 9, 9)).shape == (1, 16, 4, 4)
    with pytest.raises(SpecError, match=r"stage 4 \(vgg\).*input size 15"):
        get_preset("vgg16", input_size=15).validate()
    with pytest.raises(SpecError, match=r"depth must be one of 11, 13, 16, 19, got 15"):
        get_family("vgg").build(15, 64)


@pytest.mark.slow
def test_vgg_forward_equals_torchvision() -> None:
    """torchvision's vgg11_bn weights load in order (same keys' shapes), same outputs."""
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.vgg11_bn().eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    net = Net(get_preset("vgg11_bn_imagenet")).eval()
    net.load_state_dict(dict(zip(net.state_dict(), ref.state_dict().values(), strict=True)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x))
