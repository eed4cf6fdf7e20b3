"""Pre-activation orderings (Fig. 4) and shortcut variants (Fig. 2) of He et al. 2016."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import ResidualAdd
from archbench.models.blocks.shortcuts import GatedAdd, ZeroPadShortcut
from archbench.models.net import build_net
from archbench.models.presets import get_family, get_preset
from archbench.models.presets.preact import layout_blocks
from archbench.registry import BLOCKS, PRESETS

# Every block the variant families take, read from the block classes (plugins too).
BASIC_VARIANTS = layout_blocks("basic")
BOTTLENECK_VARIANTS = layout_blocks("bottleneck")
# The paper's blocks, and where each leaves its activations: (stem pre_act, head pre_act).
PAPER_PRE_ACT = {
    "basic": (False, False),  # Fig. 4(a), the original
    "basic_bn_after_add": (False, False),  # 4(b)
    "basic_relu_before_add": (False, False),  # 4(c)
    "basic_relu_preact": (False, True),  # 4(d): starts with ReLU, ends un-activated
    "preact_basic": (True, True),  # 4(e)
    "basic_scaled": (False, False),  # Fig. 2(b)
    "basic_exclusive_gating": (False, False),  # 2(c)
    "basic_shortcut_gating": (False, False),  # 2(d)
    "basic_conv_shortcut": (False, False),  # 2(e)
    "basic_dropout_shortcut": (False, False),  # 2(f)
    "bottleneck": (False, False),
    "bottleneck_bn_after_add": (False, False),
    "bottleneck_relu_before_add": (False, False),
    "bottleneck_relu_preact": (False, True),
    "preact_bottleneck": (True, True),
}


def n_params(model: nn.Module, *, bn: bool = True) -> int:
    return sum(
        p.numel()
        for m in model.modules()
        if bn or not isinstance(m, nn.BatchNorm2d)
        for p in m.parameters(recurse=False)
    )


def call_order(block: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the block's direct children in the order the forward calls them."""
    order: list[str] = []
    handles = [
        child.register_forward_hook(lambda m, i, o, name=name: order.append(name))
        for name, child in block.named_children()
    ]
    block(x)
    for h in handles:
        h.remove()
    return order


def merge_inputs(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors the block's ResidualAdd receives (shortcut, branch[, gate])."""
    seen: list[tuple[torch.Tensor, ...]] = []
    handle = block.add.register_forward_hook(
        lambda m, inp, out: seen.append(tuple(t.detach().clone() for t in inp))
    )
    block(x)
    handle.remove()
    (inputs,) = seen
    return inputs


# -- published parameter counts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "block", "paper"),
    [
        ("preact_resnet110", "preact_basic", "1.7"),
        ("preact_resnet164", "preact_bottleneck", "1.7"),
        ("preact_resnet1001", "preact_bottleneck", "10.2"),
    ],
)
def test_paper_param_counts(name: str, block: str, paper: str) -> None:
    spec = get_preset(name)
    assert spec.stages[0].block == block
    assert PRESETS.entry(name).meta["paper_params"] == float(paper) * 1e6
    net = build_net(spec, device="meta")
    # The paper counts conv and fc weights (0.1M precision); BN affine params are not
    # included: with them ResNet-1001 has 10.33M, without 10.18M.
    assert f"{n_params(net, bn=False) / 1e6:.1f}" == paper
    assert PRESETS.entry(name).meta["paper_params_excludes"] == ("BatchNorm",)


def test_exact_counts_pinned() -> None:
    """Exact counts, so any architecture drift shows (110 equals the original ResNet-110)."""
    counts = {
        name: n_params(build_net(get_preset(name), device="meta"))
        for name in ("preact_resnet110", "preact_resnet164", "preact_resnet1001", "resnet110")
    }
    assert counts == {
        "preact_resnet110": 1_727_962,
        "preact_resnet164": 1_703_258,
        "preact_resnet1001": 10_327_706,
        "resnet110": 1_727_962,
    }


def test_preact_nets_use_preact_stem_and_head() -> None:
    for name in ("preact_resnet110", "preact_resnet164"):
        spec = get_preset(name)
        assert dict(spec.stem.params) == {"pre_act": True}
        assert dict(spec.head.params) == {"pre_act": True}
        assert spec.stages[0].width == (16 if name.endswith("110") else 64)
    bottleneck = get_preset("preact_resnet164")
    assert [s.width for s in bottleneck.stages] == [64, 128, 256]
    assert bottleneck.stages[0].params["shortcut"] == "B"


@pytest.mark.parametrize(
    ("name", "block"),
    [
        ("preact_resnet56", "preact_basic"),  # 6n+2 and 9n+2, <= 110: basic
        ("preact_resnet29", "preact_bottleneck"),  # 9n+2 only
        ("preact_resnet50", "preact_basic"),  # 6n+2 only
        ("preact_resnet272", "preact_bottleneck"),  # both, > 110: bottleneck
        ("preact_resnet1202", "preact_basic"),  # 6n+2 only
    ],
)
def test_generic_depth_rule(name: str, block: str) -> None:
    spec = get_preset(name)
    assert spec.stages[0].block == block
    assert spec.name == name


def test_generic_bad_depth() -> None:
    with pytest.raises(SpecError, match=r"6n\+2 .* or 9n\+2 .* got 21"):
        get_preset("preact_resnet21")


# -- activation orderings (Fig. 4) ----------------------------------------------------------

ORDERS = {
    "basic": "conv1 bn1 relu conv2 bn2 add relu",
    "basic_bn_after_add": "conv1 bn1 relu conv2 add bn2 relu",
    "basic_relu_before_add": "conv1 bn1 relu conv2 bn2 relu add",
    "basic_relu_preact": "relu_in conv1 bn1 relu conv2 bn2 add",
    "preact_basic": "bn1 relu conv1 bn2 relu conv2 add",
    "bottleneck": "conv1 bn1 relu conv2 bn2 relu conv3 bn3 add relu",
    "bottleneck_bn_after_add": "conv1 bn1 relu conv2 bn2 relu conv3 add bn3 relu",
    "bottleneck_relu_before_add": "conv1 bn1 relu conv2 bn2 relu conv3 bn3 relu add",
    "bottleneck_relu_preact": "relu_in conv1 bn1 relu conv2 bn2 relu conv3 bn3 add",
    "preact_bottleneck": "bn1 relu conv1 bn2 relu conv2 bn3 relu conv3 add",
}


@pytest.mark.parametrize("name", ORDERS)
def test_layer_order(name: str) -> None:
    block = BLOCKS.get(name)(16, 16, 1).eval()
    assert " ".join(call_order(block, torch.randn(2, 16, 5, 5))) == ORDERS[name]
    assert BLOCKS.entry(name).meta["family"] in ("resnet", "preact")


def test_orderings_b_to_d_reuse_the_original_weights() -> None:
    """(b)-(d) only reorder: same state-dict keys and shapes as the original blocks."""
    for base, names in (("basic", BASIC_VARIANTS), ("bottleneck", BOTTLENECK_VARIANTS)):
        ref = {k: v.shape for k, v in BLOCKS.get(base)(32, 64, 2).state_dict().items()}
        for name in names:
            if (
                name.startswith(("basic_", "bottleneck_"))
                and BLOCKS.entry(name).meta["family"] == "preact"
            ):
                got = {k: v.shape for k, v in BLOCKS.get(name)(32, 64, 2).state_dict().items()}
                assert got == ref, name


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_output_signs(kind: str) -> None:
    x = torch.randn(4, 16, 6, 6)
    pos = x.relu()
    block = {o: BLOCKS.get(n)(16, 16, 1).eval() for o, n in _names(kind).items()}
    with torch.no_grad():
        assert (block["a"](x) >= 0).all()  # post-activation: ReLU after the addition
        assert (block["b"](x) >= 0).all()
        assert (block["e"](x) < 0).any()  # full pre-activation: no ReLU on the output
        assert (block["d"](x) < 0).any()
        # (c): the branch is ReLU'd before the addition, so out >= shortcut everywhere.
        assert (block["c"](x) - x >= 0).all()
        assert (block["c"](x) - x > 0).any()
        # (d): the branch starts with a ReLU: it cannot see the input's negative part.
        torch.testing.assert_close(block["d"](x) - x, block["d"](pos) - pos)
        # The original's branch does see it.
        assert not torch.allclose(block["a"](x), block["a"](pos))


def _names(kind: str) -> dict[str, str]:
    return {
        "a": kind,
        "b": f"{kind}_bn_after_add",
        "c": f"{kind}_relu_before_add",
        "d": f"{kind}_relu_preact",
        "e": f"preact_{kind}",
    }


def test_bn_after_add_normalises_the_sum() -> None:
    block = BLOCKS.get("basic_bn_after_add")(8, 8, 1).eval()
    got: dict[str, torch.Tensor] = {}
    block.bn2.register_forward_hook(lambda m, inp, out: got.__setitem__("bn_in", inp[0]))
    block.add.register_forward_hook(lambda m, inp, out: got.__setitem__("sum", out))
    block.conv2.register_forward_hook(lambda m, inp, out: got.__setitem__("conv2", out))
    x = torch.randn(2, 8, 5, 5)
    shortcut, branch = merge_inputs(block, x)
    assert got["bn_in"] is got["sum"]
    torch.testing.assert_close(shortcut, x)
    torch.testing.assert_close(branch, got["conv2"])  # the branch is not normalised


@pytest.mark.parametrize(("name", "w_out"), [("preact_basic", 16), ("preact_bottleneck", 32)])
def test_full_preact_projection_reads_preactivated_input(name: str, w_out: int) -> None:
    block = BLOCKS.get(name)(8, w_out, 2, shortcut="B").eval()
    assert isinstance(block.downsample, nn.Conv2d)  # bare 1x1 conv: no BN after BN-ReLU
    seen: dict[str, torch.Tensor] = {}
    block.downsample.register_forward_hook(lambda m, inp, out: seen.__setitem__("in", inp[0]))
    x = torch.randn(2, 8, 6, 6)
    block(x)
    with torch.no_grad():
        pre = block.relu(block.bn1(x))
    torch.testing.assert_close(seen["in"], pre)
    assert (seen["in"] >= 0).all()


def test_full_preact_option_a_reads_raw_input() -> None:
    block = BLOCKS.get("preact_basic")(8, 16, 2, shortcut="A").eval()
    assert isinstance(block.downsample, ZeroPadShortcut)
    x = torch.randn(2, 8, 6, 6)
    shortcut, _ = merge_inputs(block, x)
    torch.testing.assert_close(shortcut[:, :8], x[:, :, ::2, ::2])
    assert (shortcut[:, :8] < 0).any()  # raw, not ReLU'd


def test_full_preact_identity_shortcut_and_option_c() -> None:
    block = BLOCKS.get("preact_basic")(8, 8, 1)
    assert block.downsample is None
    block_c = BLOCKS.get("preact_basic")(8, 8, 1, shortcut="C")
    assert isinstance(block_c.downsample, nn.Conv2d) and block_c.shortcut_preact


# -- zero_init_last -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "last"), [("preact_basic", "conv2"), ("preact_bottleneck", "conv3")]
)
def test_full_preact_zero_init_is_identity_and_learns(name: str, last: str) -> None:
    block = BLOCKS.get(name)(16, 16, 1)
    block.zero_init_last()
    block.train()
    x = torch.randn(2, 16, 5, 5, requires_grad=True)  # negatives too: no ReLU on the output
    y = block(x)
    assert torch.equal(y, x)
    y.square().sum().backward()
    assert getattr(block, last).weight.grad.abs().sum() > 0  # the zeroed conv still learns


def test_relu_preact_zero_init_is_identity() -> None:
    for name in ("basic_relu_preact", "bottleneck_relu_preact"):
        block = BLOCKS.get(name)(16, 16, 1).train()
        block.zero_init_last()
        x = torch.randn(2, 16, 5, 5)
        assert torch.equal(block(x), x)


def test_no_zero_init_where_it_would_not_give_identity() -> None:
    for name in ("basic_bn_after_add", "bottleneck_bn_after_add"):
        assert BLOCKS.get(name)(16, 16, 1).zero_init_last is None
    for name in ("basic_relu_before_add", "bottleneck_relu_before_add"):
        assert BLOCKS.get(name)(16, 16, 1).zero_init_last is None
    # Why not (c): a zeroed last BN scale feeds ReLU(0), whose gradient is 0: dead for good.
    block = BLOCKS.get("basic_relu_before_add")(16, 16, 1).train()
    nn.init.zeros_(block.bn2.weight)
    block(torch.randn(2, 16, 5, 5)).sum().backward()
    assert block.bn2.weight.grad.abs().sum() == 0 and block.bn2.bias.grad.abs().sum() == 0


def test_net_zero_init_last_zeroes_last_preact_conv() -> None:
    net = build_net(get_family("preact_bottleneck").build(11, 4).replace(zero_init_last=True))
    for _, block in net.blocks():
        assert block.conv3.weight.abs().sum() == 0
        assert block.conv1.weight.abs().sum() > 0


# -- shortcut variants (Fig. 2) -------------------------------------------------------------


def _branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """F(x) of a post-activation basic block, computed from its layers."""
    return block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (0.5, 1.0), (1.0, 0.25)])
def test_constant_scaling(a: float, b: float) -> None:
    block = BLOCKS.get("basic_scaled")(8, 8, 1, shortcut_scale=a, branch_scale=b).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(a * x + b * _branch(block, x)))
    assert isinstance(block.add, ResidualAdd)
    assert (block.add.shortcut_scale, block.add.branch_scale) == (a, b)


def test_constant_scaling_defaults_and_int_scale() -> None:
    block = BLOCKS.get("basic_scaled")(8, 8, 1)
    assert (block.params.shortcut_scale, block.params.branch_scale) == (0.5, 0.5)
    assert BLOCKS.get("basic_scaled")(8, 8, 1, shortcut_scale=1).params.shortcut_scale == 1.0


@pytest.mark.parametrize("name", ["basic_exclusive_gating", "basic_shortcut_gating"])
@pytest.mark.parametrize("bias", [-6.0, -2.0, 0.0])
def test_gate_bias_init_survives_net_init(name: str, bias: float) -> None:
    spec = get_family("resnet_variant").build(8, 4, block=name, gate_bias=bias)
    net = build_net(spec)  # He init zeroes conv biases; reset_special sets b0 afterwards
    gates = [b.gate for _, b in net.blocks()]
    assert len(gates) == 3
    for gate in gates:
        assert torch.equal(gate.conv.bias, torch.full_like(gate.conv.bias, bias))
        assert gate.conv.weight.abs().sum() > 0


@pytest.mark.parametrize(
    ("name", "exclusive"), [("basic_exclusive_gating", True), ("basic_shortcut_gating", False)]
)
def test_gated_merge(name: str, exclusive: bool) -> None:
    block = BLOCKS.get(name)(8, 16, 2, gate_bias=-1.0).eval()
    assert isinstance(block.add, GatedAdd) and isinstance(block.add, ResidualAdd)
    x = torch.randn(2, 8, 5, 5)
    shortcut, branch, gate = merge_inputs(block, x)
    with torch.no_grad():
        torch.testing.assert_close(shortcut, block.downsample(x))
        torch.testing.assert_close(branch, _branch(block, x))
        torch.testing.assert_close(gate, torch.sigmoid(block.gate.conv(x)))
        expect = (1 - gate) * shortcut + (gate * branch if exclusive else branch)
        torch.testing.assert_close(block(x), torch.relu(expect))
    assert gate.shape == branch.shape


def test_gate_at_minus_six_nearly_closed() -> None:
    block = BLOCKS.get("basic_shortcut_gating")(8, 8, 1)
    nn.init.zeros_(block.gate.conv.weight)
    _, _, gate = merge_inputs(block.eval(), torch.randn(1, 8, 3, 3))
    torch.testing.assert_close(gate, torch.full_like(gate, 1 / (1 + math.exp(6))))


def test_dropout_shortcut_paper_form_has_expected_scale_half() -> None:
    block = BLOCKS.get("basic_dropout_shortcut")(8, 8, 1, dropout=0.5)
    x = torch.randn(4, 8, 16, 16)
    block.eval()
    torch.testing.assert_close(merge_inputs(block, x)[0], 0.5 * x)  # its expectation
    block.train()
    torch.manual_seed(0)
    shortcut, _ = merge_inputs(block, x)
    kept = shortcut != 0
    assert 0.45 < kept.float().mean() < 0.55
    torch.testing.assert_close(shortcut[kept], x[kept])  # kept values are not rescaled


def test_dropout_shortcut_inverted_eval_is_identity_train_drops() -> None:
    block = BLOCKS.get("basic_dropout_shortcut")(8, 8, 1, dropout=0.5, inverted=True)
    plain = BLOCKS.get("basic")(8, 8, 1)
    plain.load_state_dict(block.state_dict())  # dropout adds no parameters
    x = torch.randn(2, 8, 5, 5)
    block.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(x), plain(x))
    torch.testing.assert_close(merge_inputs(block, x)[0], x)
    block.train()
    shortcut, _ = merge_inputs(block, x)
    kept = shortcut != 0
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(shortcut[kept], 2 * x[kept])  # inverted dropout, ratio 0.5


def test_conv_shortcut_on_every_block() -> None:
    with_bn = BLOCKS.get("basic_conv_shortcut")(8, 8, 1, shortcut_bn=True)
    ref = BLOCKS.get("basic")(8, 8, 1, shortcut="C")
    assert isinstance(with_bn.downsample, nn.Sequential)
    assert n_params(with_bn) == n_params(ref)
    bare = BLOCKS.get("basic_conv_shortcut")(8, 8, 1)  # the paper's Fig. 2(e): no BN
    assert isinstance(bare.downsample, nn.Conv2d)
    assert n_params(bare) == n_params(ref) - 16
    assert "shortcut" not in BLOCKS.get("basic_conv_shortcut").Params.__dataclass_fields__


def test_shortcut_variants_family() -> None:
    for name in (
        "basic_scaled",
        "basic_exclusive_gating",
        "basic_shortcut_gating",
        "basic_conv_shortcut",
        "basic_dropout_shortcut",
    ):
        assert BLOCKS.entry(name).meta["family"] == "shortcut"


# -- bad params -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("basic_dropout_shortcut", {"dropout": -0.1}, r"'dropout' must be in \[0, 1\), got -0.1"),
        ("basic_dropout_shortcut", {"dropout": 1.0}, r"'dropout' must be in \[0, 1\), got 1.0"),
        ("basic_dropout_shortcut", {"dropout": float("nan")}, "'dropout' must be a finite"),
        ("basic_scaled", {"shortcut_scale": "a"}, "'shortcut_scale' must be float, got 'a'"),
        ("basic_scaled", {"branch_scale": 0}, "'branch_scale' must be > 0, got 0.0"),
        ("basic_scaled", {"shortcut_scale": float("inf")}, "'shortcut_scale' must be a finite"),
        ("basic_scaled", {"shortcut_scale": True}, "'shortcut_scale' must be float"),
        ("basic_exclusive_gating", {"gate_bias": "low"}, "'gate_bias' must be float"),
        ("basic_shortcut_gating", {"gate_bias": float("-inf")}, "'gate_bias' must be a finite"),
        (
            "basic_conv_shortcut",
            {"shortcut": "B"},
            "unknown param 'shortcut'; allowed: shortcut_bn",
        ),
        ("preact_basic", {"shortcut": "D"}, "'shortcut' must be one of 'A', 'B', 'C'"),
        ("preact_bottleneck", {"groups": 0}, "'groups' must be >= 1"),
    ],
)
def test_bad_params(name: str, params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=rf"block '{name}'.*{message}"):
        BLOCKS.get(name)(16, 16, 1, **params)


def test_preact_bottleneck_shape_errors() -> None:
    with pytest.raises(SpecError, match="w_out 30 must be divisible by expansion 4"):
        BLOCKS.get("preact_bottleneck")(16, 30, 1)


def test_the_paper_blocks_fit_the_variant_families() -> None:
    assert set(PAPER_PRE_ACT) <= set(BASIC_VARIANTS) | set(BOTTLENECK_VARIANTS)
    for name, (stem, head) in PAPER_PRE_ACT.items():
        cls = BLOCKS.get(name)
        assert (cls.stem_pre_act, cls.head_pre_act) == (stem, head), name
    assert "resnext" not in BOTTLENECK_VARIANTS  # its widths follow cardinality x base_width


def test_variant_family_errors() -> None:
    fam = get_family("resnet_variant")
    with pytest.raises(
        SpecError, match=r"unknown block 'nope'; allowed: basic, basic_bn_after_add"
    ):
        fam.build(8, 4, block="nope")
    with pytest.raises(SpecError, match="'basic_conv_shortcut' has a fixed shortcut"):
        fam.build(8, 4, block="basic_conv_shortcut", shortcut="A")
    with pytest.raises(SpecError, match=r"depth must be 6n\+2"):
        fam.build(9, 4, block="preact_basic")
    with pytest.raises(SpecError, match="unknown block 'preact_basic'"):
        get_family("resnet_bottleneck_variant").build(11, 4, block="preact_basic")
    with pytest.raises(SpecError, match="'dropout' must be in"):
        fam.build(8, 4, block="basic_dropout_shortcut", dropout=2.0).validate()


# -- families -------------------------------------------------------------------------------


def test_variant_family_original_equals_resnet_family() -> None:
    ours = get_family("resnet_variant").build(56, 16)
    assert ours.replace(name="") == get_family("resnet").build(56, 16).replace(name="")
    ours = get_family("resnet_bottleneck_variant").build(29, 16)
    assert ours.replace(name="") == get_family("resnet_bottleneck").build(29, 16).replace(name="")
    full = get_family("resnet_variant").build(110, 16, block="preact_basic")
    assert full.replace(name="") == get_preset("preact_resnet110").replace(name="")


@pytest.mark.parametrize(
    ("family", "depth", "block"),
    [("resnet_variant", 8, b) for b in BASIC_VARIANTS]
    + [("resnet_bottleneck_variant", 11, b) for b in BOTTLENECK_VARIANTS],
)
def test_every_variant_trains_a_step(family: str, depth: int, block: str) -> None:
    spec = get_family(family).build(depth, 4, block=block, num_classes=3, input_size=8)
    cls = BLOCKS.get(block)
    stem_pre, head_pre = PAPER_PRE_ACT.get(block, (cls.stem_pre_act, cls.head_pre_act))
    assert spec.stem.params.get("pre_act", False) == stem_pre
    assert spec.head.params.get("pre_act", False) == head_pre
    net = build_net(spec)
    y = net(torch.randn(4, 3, 8, 8))
    assert y.shape == (4, 3)
    y.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_orderings_compare_at_equal_size() -> None:
    """(b), (c) have exactly the original's parameters; (d) adds the head BN; (e) moves BNs."""
    fam = get_family("resnet_variant")
    count = {
        b: n_params(build_net(fam.build(20, 16, block=b), device="meta")) for b in BASIC_VARIANTS
    }
    assert count["basic_bn_after_add"] == count["basic_relu_before_add"] == count["basic"]
    assert count["basic_relu_preact"] == count["basic"] + 2 * 64
    assert count["preact_basic"] == count["basic"]  # stem BN(16) -> first block BN(16)
    assert count["basic_exclusive_gating"] > count["basic"]  # the 1x1 gate convs


def test_preact_family_shortcuts() -> None:
    fam = get_family("preact")
    assert fam.build(20, 16).stages[1].params["shortcut"] == "A"
    for option in "ABC":
        net = build_net(fam.build(8, 4, shortcut=option, input_size=8))
        assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    bottleneck = get_family("preact_bottleneck").build(11, 4)
    assert [s.width for s in bottleneck.stages] == [16, 32, 64]
