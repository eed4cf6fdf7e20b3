"""archbench's ImageNet presets are torchvision's architectures: same parameter count, and with
torchvision's weights loaded, the same outputs."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

from archbench.errors import SpecError
from archbench.models.net import build_net
from archbench.models.presets import get_preset
from archbench.models.torchvision_compat import (
    load_torchvision_weights,
    torchvision_state_dict_to_archbench,
)
from archbench.registry import PRESETS

ALL = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]
FAST_FORWARD = {"resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2"}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def torchvision_model(name: str, device: str | None = None) -> nn.Module:
    if device == "meta":
        with torch.device("meta"):
            return getattr(torchvision.models, name)(weights=None)
    return getattr(torchvision.models, name)(weights=None)


def randomise_bn(model: nn.Module) -> None:
    """Give every BN its own scale, shift and statistics, so a swapped BN changes the output."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)


def test_every_torchvision_resnet_preset_is_listed_here() -> None:
    resnets = re.compile(r"(resnet|resnext|wide_resnet)\d.*")
    listed = {
        n
        for n in PRESETS.names()
        if resnets.fullmatch(PRESETS.entry(n).meta.get("torchvision", ""))
    }
    assert listed == set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_param_count_equals_torchvision(name: str) -> None:
    ours = n_params(build_net(get_preset(name), device="meta"))
    theirs = n_params(torchvision_model(name, device="meta"))
    assert ours == theirs
    assert PRESETS.entry(name).meta["torchvision_params"] == theirs  # the recorded count


def _forward_identity(name: str) -> None:
    tv = torchvision_model(name)
    randomise_bn(tv)
    tv.eval()
    net = load_torchvision_weights(build_net(get_preset(name), device="meta"), tv)
    net.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = tv(x), net(x)
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(FAST_FORWARD))
def test_forward_equals_torchvision(name: str) -> None:
    _forward_identity(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(ALL) - FAST_FORWARD))
def test_forward_equals_torchvision_slow(name: str) -> None:
    _forward_identity(name)


def test_rename_maps_prefixes() -> None:
    sd = {
        k: torch.zeros(1) for k in ("conv1.weight", "bn1.bias", "layer4.2.conv3.weight", "fc.bias")
    }
    assert set(torchvision_state_dict_to_archbench(sd)) == {
        "stem.conv.weight",
        "stem.bn.bias",
        "stages.3.2.conv3.weight",
        "head.fc.bias",
    }


def test_rename_rejects_foreign_keys() -> None:
    sd = {"module.conv1.weight": torch.zeros(1), "classifier.weight": torch.zeros(1)}
    with pytest.raises(SpecError, match=r"2 key\(s\) .*module\.conv1\.weight.*classifier\.weight"):
        torchvision_state_dict_to_archbench(sd)


def test_load_into_cpu_net_from_state_dict() -> None:
    tv = torchvision_model("resnet18")
    randomise_bn(tv)
    net = build_net(get_preset("resnet18"))  # initialised on the CPU, then overwritten
    load_torchvision_weights(net, tv.state_dict())
    assert torch.equal(net.stages[3][1].bn2.running_var, tv.layer4[1].bn2.running_var)
    assert torch.equal(net.head.fc.weight, tv.fc.weight)
    assert net.head.fc.weight.data_ptr() != tv.fc.weight.data_ptr()


def test_wrong_architecture_lists_keys_and_leaves_net_unchanged() -> None:
    net = build_net(get_preset("resnet34"))
    before = net.stem.conv.weight.clone()
    with pytest.raises(
        SpecError, match=r"do not fit 'resnet34'.*missing in the torchvision"
    ) as err:
        load_torchvision_weights(net, torchvision_model("resnet18"))
    assert "stages.0.2.conv1.weight" in str(err.value)
    assert torch.equal(net.stem.conv.weight, before)


def test_shape_mismatch_is_named() -> None:
    net = build_net(get_preset("resnext50_32x4d"), device="meta")
    with pytest.raises(SpecError, match=r"shape mismatch .*stages\.0\.0\.conv1\.weight"):
        load_torchvision_weights(net, torchvision_model("resnet50", device="meta"))
