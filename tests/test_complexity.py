"""Complexity counting: fvcore vs the analytic counter on every preset, units, op coverage,
eval mode / batch 1, and the golden table (tests/golden_complexity.json)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import Block, ResidualAdd, conv3x3
from archbench.models.complexity import (
    COMPLEXITY_SCHEMA,
    Complexity,
    analytic,
    analytic_counts,
    analytic_params,
    measure,
)
from archbench.models.complexity.meta import _count_parts, _summarise
from archbench.models.net import Net, NetSpec, StageSpec, StemSpec, build_net
from archbench.models.presets import get_preset
from archbench.registry import BLOCKS, BUILTIN_SOURCE, PRESETS

GOLDEN = Path(__file__).with_name("golden_complexity.json")
REGENERATE = "run scripts/make_golden_complexity.py"
# fvcore traces a real forward pass: keep the default suite to the cheaper presets. measure()
# traces each distinct block once, so depth costs little there; a full trace pays for depth.
SLOW_MACS = 1.2e9
SLOW_BLOCKS = 40


def _preset_params(*, full_trace: bool) -> list[Any]:
    params = []
    for name in PRESETS.names():
        spec = get_preset(name)
        slow = analytic(spec).macs > SLOW_MACS or (full_trace and spec.depth > SLOW_BLOCKS)
        params.append(pytest.param(name, marks=pytest.mark.slow) if slow else name)
    return params


PRESET_PARAMS = _preset_params(full_trace=False)
FULL_TRACE_PARAMS = _preset_params(full_trace=True)


def _conv_linear(by_operator: dict[str, int]) -> int:
    # fvcore labels nn.Linear "linear" (aten::linear) or "addmm" on older tracers.
    return sum(by_operator.get(k, 0) for k in ("conv", "linear", "addmm"))


@pytest.mark.parametrize("name", PRESET_PARAMS)
def test_fvcore_matches_analytic_exactly(name: str) -> None:
    spec = get_preset(name)
    traced = measure(spec)
    counted = analytic(spec)
    # The brief's contract: conv + linear MACs agree exactly.
    assert _conv_linear(dict(traced.macs_by_operator)) == _conv_linear(
        dict(counted.macs_by_operator)
    ), name
    # And so does everything else the analytic counter claims to reproduce.
    assert dict(traced.macs_by_operator) == dict(counted.macs_by_operator), name
    assert (traced.params, traced.trainable_params, traced.macs, traced.acts) == (
        counted.params,
        counted.trainable_params,
        counted.macs,
        counted.acts,
    ), name
    assert dict(traced.acts_by_operator) == dict(counted.acts_by_operator), name
    assert [s.to_dict() for s in traced.stages] == [s.to_dict() for s in counted.stages], name
    assert analytic_counts(spec) == (traced.params, traced.macs)
    assert analytic_params(spec) == traced.params


def test_flops_are_twice_macs_and_dict_schema() -> None:
    result = measure(get_preset("resnet20"))
    assert result.flops == 2 * result.macs
    data = json.loads(json.dumps(result.to_dict()))
    assert data["schema"] == COMPLEXITY_SCHEMA
    assert data["flops"] == 2 * data["macs"]
    assert list(data) == [
        "schema",
        "name",
        "spec_hash",
        "batch_size",
        "input_size",
        "in_channels",
        "num_classes",
        "params",
        "trainable_params",
        "macs",
        "flops",
        "acts",
        "macs_by_operator",
        "acts_by_operator",
        "uncounted_ops",
        "stages",
        "counter",
    ]
    assert [s["name"] for s in data["stages"]] == [
        "stem",
        "stages.0",
        "stages.1",
        "stages.2",
        "head",
    ]
    assert sum(s["macs"] for s in data["stages"]) == data["macs"]
    assert sum(s["params"] for s in data["stages"]) == data["params"]
    # ResNet-20 on CIFAR: 0.27M params (paper) and 40.55M conv MACs (16-32-64 widths, 32x32).
    assert data["params"] == 269_722
    assert data["macs_by_operator"]["conv"] == 40_550_400
    assert data["macs_by_operator"]["linear"] == 64 * 10


def test_op_coverage_lists_residual_adds_and_padding() -> None:
    spec = get_preset("resnet20")
    result = measure(spec)
    adds = sum(isinstance(m, ResidualAdd) for m in build_net(spec, device="meta").modules())
    assert adds == 9
    assert result.uncounted_ops["aten::add"] == adds  # one per residual block
    assert result.uncounted_ops["aten::pad"] == 2  # option-A shortcuts at the two downsamplings
    plain = measure(get_preset("plain20"))
    assert "aten::add" not in plain.uncounted_ops  # no shortcuts, no adds
    imagenet = measure(get_preset("resnet18"), input_size=64)
    assert imagenet.uncounted_ops["aten::max_pool2d"] == 1


def test_eval_mode_batch_one_and_training_flag_restored() -> None:
    spec = get_preset("resnet20")
    net = build_net(spec).train()
    result = measure(net)
    assert net.training  # restored
    assert result == measure(spec)
    assert result.batch_size == 1
    assert all(s.output_shape[0] == 1 for s in result.stages)
    # Eval-mode BatchNorm is a scale + shift: 2 MACs per element (train mode would be 5).
    # ResNet-20 has 19 BNs over 16x32x32 (7), 32x16x16 (6) and 64x8x8 (6) activations.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 19
    assert result.macs_by_operator["batch_norm"] == 2 * (7 * 16384 + 6 * 8192 + 6 * 4096)


def test_input_size_override_and_meta_net() -> None:
    spec = get_preset("resnet18")
    small = measure(spec, input_size=64)
    assert small.input_size == 64
    assert small.params == 11_689_512
    assert small.macs == analytic(spec, 64).macs
    assert small.stages[-2].output_shape == (1, 512, 2, 2)
    meta = build_net(get_preset("resnet20"), device="meta")
    assert measure(meta).macs == analytic(get_preset("resnet20")).macs
    with pytest.raises(SpecError, match="NetSpec or a Net"):
        measure(nn.Linear(3, 4))  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="input size must be a positive integer"):
        analytic(spec, 0)


def test_short_build_extrapolation_equals_the_full_net() -> None:
    for name in ("resnet56", "wrn_40_2", "resnet50"):
        spec = get_preset(name)
        full = _summarise(spec, _count_parts(spec, forward=True))
        assert analytic(spec) == full, name
        assert [s.to_dict() for s in analytic(spec).stages] == [s.to_dict() for s in full.stages]


def test_params_only_and_cache() -> None:
    spec = get_preset("resnet32")
    assert analytic(spec) is analytic(spec.replace(name="renamed"))  # cached by architecture
    quick = analytic(spec, macs=False)
    assert quick.params == analytic(spec).params
    assert quick.macs == 0


@dataclasses.dataclass(frozen=True)
class _TwoConvParams:
    hidden: int = 8


class _PluginBlock(Block):
    """Test plugin: 3x3 conv to ``hidden``, 3x3 conv to ``w_out``, linear-free residual add."""

    Params = _TwoConvParams
    block_name = "test_two_conv"

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.conv1 = conv3x3(w_in, self.params.hidden, stride)
        self.norm = nn.GroupNorm(2, self.params.hidden)
        self.conv2 = conv3x3(self.params.hidden, w_out)
        self.proj = nn.Conv2d(w_in, w_out, 1, stride=stride, bias=True)
        self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(self.proj(x), self.conv2(torch.relu(self.norm(self.conv1(x)))))


def test_plugin_block_is_counted_exactly() -> None:
    with BLOCKS.registered("test_two_conv", _PluginBlock, family="test"):
        spec = NetSpec(
            stem=StemSpec("cifar", 8),
            stages=(
                StageSpec("test_two_conv", 3, 8, 1, {"hidden": 6}),
                StageSpec("test_two_conv", 3, 16, 2),
            ),
            input_size=12,
        )
        traced, counted = measure(spec), analytic(spec)
    assert dict(traced.macs_by_operator) == dict(counted.macs_by_operator)
    assert "group_norm" in traced.macs_by_operator
    assert (traced.params, traced.macs, traced.acts) == (
        counted.params,
        counted.macs,
        counted.acts,
    )


def test_complexity_is_frozen() -> None:
    result = measure(get_preset("resnet20"))
    assert isinstance(result, Complexity)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.macs = 0  # type: ignore[misc]


# -- golden table -----------------------------------------------------------------------------


def _golden() -> dict[str, Any]:
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN.name} is missing: {REGENERATE}")
    return json.loads(GOLDEN.read_text())


def _own_presets() -> list[str]:
    """The presets archbench ships: the golden table is archbench's, not an installed plugin's
    (plugin presets are still checked by every other test parametrized over the registry)."""
    return [e.name for e in PRESETS.entries() if e.source == BUILTIN_SOURCE]


@pytest.mark.parametrize("name", _own_presets())
def test_golden_counts(name: str) -> None:
    golden = _golden()["presets"]
    if name not in golden:
        pytest.fail(f"preset {name!r} is not in {GOLDEN.name}: {REGENERATE}")
    spec = get_preset(name)
    counts = analytic(spec)
    live = {"params": counts.params, "macs": counts.macs, "input_size": spec.input_size}
    assert live == golden[name], (
        f"preset {name!r} drifted from {GOLDEN.name}: golden {golden[name]}, now {live}; if the "
        f"change is intended, {REGENERATE} and commit the diff"
    )


def test_golden_has_no_stale_presets() -> None:
    stale = sorted(set(_golden()["presets"]) - set(_own_presets()))
    assert not stale, f"{GOLDEN.name} lists presets no longer registered: {stale}; {REGENERATE}"


def test_single_trace_equals_fvcore_two_analyses() -> None:
    # measure() gets flops and activations from one trace; fvcore's own two analyses agree.
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    from archbench.models.complexity.fvcore_trace import (
        fvcore_trace,
        fvcore_trace_twice,
        quiet_fvcore,
    )

    net = build_net(get_preset("resnet20")).eval()
    x = torch.zeros(1, 3, 32, 32)
    parts = ["stem", "stages.0", "head"]
    with torch.no_grad(), quiet_fvcore():
        once = fvcore_trace(net, x, parts)
        twice = fvcore_trace_twice(net, x, parts, FlopCountAnalysis, ActivationCountAnalysis)
    assert once == twice


# -- piece-wise tracing (measure's default) vs one trace of the whole net ----------------------


def _same(a: Complexity, b: Complexity) -> None:
    """Every field equal, stage by stage (``Complexity.__eq__`` plus a readable diff)."""
    assert a.to_dict() == b.to_dict()
    assert a == b


@pytest.mark.parametrize("name", FULL_TRACE_PARAMS)
def test_piecewise_trace_equals_the_full_trace(name: str) -> None:
    spec = get_preset(name)
    _same(measure(spec), measure(spec, full_trace=True))


def _small_spec(block: str) -> NetSpec | None:
    """Two stages of ``block`` (3 blocks each where the block allows stride 1), or None."""
    cls = BLOCKS.get(block)
    depth = 3 if 1 in cls.strides else 1
    first, second = (1 if 1 in cls.strides else 2), (2 if 2 in cls.strides else 1)
    spec = NetSpec(
        stem=StemSpec("cifar", 32),
        stages=(StageSpec(block, depth, 64, first), StageSpec(block, depth, 128, second)),
        input_size=8,
    )
    try:
        spec.validate()
    except SpecError:
        return None
    return spec


@pytest.mark.parametrize("block", BLOCKS.names())
def test_piecewise_trace_equals_the_full_trace_for_every_block(block: str) -> None:
    spec = _small_spec(block)
    if spec is None:
        pytest.skip(f"{block}: no 64/128-wide two-stage net with default params")
    _same(measure(spec), measure(spec, full_trace=True))
    _same(measure(build_net(spec)), measure(spec, full_trace=True))


def test_uncounted_ops_are_multiplied_out_with_their_block() -> None:
    spec = get_preset("resnet1202")
    adds = sum(isinstance(m, ResidualAdd) for m in build_net(spec, device="meta").modules())
    assert adds == 600
    result = measure(spec)
    assert result.uncounted_ops["aten::add"] == adds
    assert result.uncounted_ops["aten::pad"] == 2
    assert result.params == analytic(spec).params == 19_421_274
    # Scaled residuals: one aten::mul per scaled branch (all but the last Inception-ResNet C).
    v2 = measure(get_preset("inception_resnet_v2"))
    assert v2.uncounted_ops["aten::mul"] == 10 + 20 + 9
    assert v2.uncounted_ops["aten::add"] == 10 + 20 + 10


class _ValidConvBlock(Block):
    """Test plugin: an unpadded 3x3 conv, so every block shrinks the map by 2 at stride 1."""

    block_name = "test_valid_conv"
    strides = (1,)

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__(w_in, w_out, stride, **params)
        self.conv = nn.Conv2d(w_in, w_out, 3, bias=False)

    def output_size(self, size: int) -> int:
        return size - 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_a_block_that_reshapes_its_input_is_traced_block_by_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with BLOCKS.registered("test_valid_conv", _ValidConvBlock, family="test"):
        spec = NetSpec(
            stem=StemSpec("cifar", 8), stages=(StageSpec("test_valid_conv", 4, 8),), input_size=12
        )
        with caplog.at_level("DEBUG", logger="archbench.models.complexity"):
            result = measure(spec)
        full = measure(spec, full_trace=True)
    assert "changes its input's shape" in caplog.text
    _same(result, full)
    # 12 -> 10 -> 8 -> 6 -> 4: four different convs, not four copies of the second one.
    stem = 8 * 3 * 9 * 12 * 12
    assert result.macs_by_operator["conv"] == stem + 8 * 8 * 9 * (10 * 10 + 8 * 8 + 6 * 6 + 4 * 4)
    assert result.stages[1].output_shape == (1, 8, 4, 4)


def test_a_net_edited_after_building_is_counted_as_it_is() -> None:
    spec = get_preset("resnet20")
    net = build_net(spec)
    net.stages[0][2].conv2 = nn.Conv2d(16, 16, 5, padding=2, bias=False)  # 3x3 -> 5x5
    edited = measure(net)
    _same(edited, measure(net, full_trace=True))
    assert edited.macs_by_operator["conv"] - measure(spec).macs_by_operator["conv"] == (
        16 * 16 * (25 - 9) * 32 * 32
    )


class _DoubledNet(Net):
    """A Net whose forward computes outside its parts (one aten::mul)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2.0


def test_a_net_subclass_with_its_own_forward_is_traced_whole() -> None:
    spec = get_preset("resnet20")
    net = _DoubledNet(spec)
    result = measure(net)
    assert result.uncounted_ops.get("aten::mul") == 1
    assert "aten::mul" not in measure(spec).uncounted_ops
    _same(result, measure(net, full_trace=True))


def test_traces_run_on_one_thread_and_restore_the_count() -> None:
    net = build_net(get_preset("resnet20"))
    seen: list[int] = []
    net.stem.register_forward_pre_hook(lambda _m, _i: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        measure(net)
        measure(net, full_trace=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 2 and set(seen) == {1}
