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

from archbench.blocks.base import Block, ResidualAdd, conv3x3
from archbench.complexity import (
    COMPLEXITY_SCHEMA,
    Complexity,
    _count_parts,
    _summarise,
    analytic,
    analytic_counts,
    analytic_params,
    measure,
)
from archbench.errors import SpecError
from archbench.net import NetSpec, StageSpec, StemSpec, build_net
from archbench.presets import get_preset
from archbench.registry import BLOCKS, PRESETS

GOLDEN = Path(__file__).with_name("golden_complexity.json")
REGENERATE = "run scripts/make_golden_complexity.py"
# fvcore traces a real forward pass: keep the default suite to the cheaper presets.
SLOW_MACS = 1.2e9
SLOW_BLOCKS = 40


def _preset_params() -> list[Any]:
    params = []
    for name in PRESETS.names():
        spec = get_preset(name)
        slow = analytic(spec).macs > SLOW_MACS or spec.depth > SLOW_BLOCKS
        params.append(pytest.param(name, marks=pytest.mark.slow) if slow else name)
    return params


PRESET_PARAMS = _preset_params()


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


@pytest.mark.parametrize("name", PRESETS.names())
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
    stale = sorted(set(_golden()["presets"]) - set(PRESETS.names()))
    assert not stale, f"{GOLDEN.name} lists presets no longer registered: {stale}; {REGENERATE}"


def test_single_trace_equals_fvcore_two_analyses() -> None:
    # measure() gets flops and activations from one trace; fvcore's own two analyses agree.
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    from archbench.complexity import _fvcore_trace, _fvcore_trace_twice, _quiet_fvcore

    net = build_net(get_preset("resnet20")).eval()
    x = torch.zeros(1, 3, 32, 32)
    parts = ["stem", "stages.0", "head"]
    with torch.no_grad(), _quiet_fvcore():
        once = _fvcore_trace(net, x, parts)
        twice = _fvcore_trace_twice(net, x, parts, FlopCountAnalysis, ActivationCountAnalysis)
    assert once == twice
