from __future__ import annotations

import json

import pytest
import torch

from archbench.errors import SpecError, UnknownNameError
from archbench.models.net import NetSpec, StageSpec, StemSpec, build_net
from archbench.models.presets import get_family, get_preset


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_spec_json_roundtrip_and_stable_hash() -> None:
    spec = get_preset("resnet20")
    again = NetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.spec_hash() == spec.spec_hash()
    assert spec.replace(name="other").spec_hash() == spec.spec_hash()  # name is not identity
    assert get_preset("resnet32").spec_hash() != spec.spec_hash()


def test_forward_shapes_and_overrides() -> None:
    spec = get_preset("resnet20", num_classes=7, in_channels=1, input_size=28)
    y = build_net(spec)(torch.randn(3, 1, 28, 28))
    assert y.shape == (3, 7)


@pytest.mark.parametrize(
    ("name", "paper"),
    [
        ("resnet20", 0.27e6),
        ("resnet32", 0.46e6),
        ("resnet44", 0.66e6),
        ("resnet56", 0.85e6),
        ("resnet110", 1.7e6),
    ],
)
def test_cifar_resnet_params_match_paper(name: str, paper: float) -> None:
    # The paper gives two significant figures.
    assert float(f"{n_params(build_net(get_preset(name), device='meta')):.2g}") == paper


def test_bad_depth_message() -> None:
    with pytest.raises(SpecError, match=r"depth must be 6n\+2 .* got 21"):
        get_family("resnet").build(21, 16)


def test_stride_below_one_pixel() -> None:
    spec = NetSpec(
        stem=StemSpec("cifar", 8),
        stages=tuple(StageSpec("basic", 1, 8, stride=2) for _ in range(4)),
        input_size=4,
    )
    with pytest.raises(SpecError, match="stride 2 shrinks the 1x1 feature map below one pixel"):
        spec.validate()


def test_unknown_preset_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'resnet110'"):
        get_preset("resnt110")


def test_unknown_block_in_spec() -> None:
    spec = NetSpec(stem=StemSpec(), stages=(StageSpec("basik", 1, 16),))
    with pytest.raises(UnknownNameError, match="did you mean 'basic'"):
        spec.validate()


def test_zero_init_last_applied() -> None:
    net = build_net(get_preset("resnet20").replace(zero_init_last=True))
    assert all(b.bn2.weight.abs().sum() == 0 for _, b in net.blocks())


def test_generic_name_with_bad_depth() -> None:
    with pytest.raises(SpecError, match=r"depth must be 6n\+2"):
        get_preset("resnet21")


@pytest.mark.parametrize(
    ("block", "pinned", "old_default"),
    [("basic_dropout_shortcut", "inverted", True), ("basic_conv_shortcut", "shortcut_bn", True)],
)
def test_a_changed_block_default_gives_the_new_form_a_new_spec_hash(
    block: str, pinned: str, old_default: bool
) -> None:
    """These blocks' defaults changed (inverted dropout -> the paper's; conv + BN -> bare
    conv): a spec that does not write the param must not share the old form's hash, or a
    resumed store would mix both forms' seeds under one config key."""
    from archbench.canonical import canonical_json, text_hash

    def spec(**params: object) -> NetSpec:
        return NetSpec(stem=StemSpec(width=8), stages=(StageSpec(block, 1, 8, params=params),))

    unwritten, written, old = spec(), spec(**{pinned: False}), spec(**{pinned: old_default})
    assert unwritten.spec_hash() == written.spec_hash() != old.spec_hash()
    assert unwritten.to_dict()["stages"][0]["params"] == {pinned: False}  # stored explicitly
    # The hash before pinning (the param left out of the JSON) is neither form's any more.
    before = unwritten.to_dict()
    del before["name"], before["stages"][0]["params"][pinned]
    assert text_hash(canonical_json(before)) not in {unwritten.spec_hash(), old.spec_hash()}
    rebuilt = NetSpec.from_dict(json.loads(json.dumps(unwritten.to_dict())))
    assert rebuilt.spec_hash() == unwritten.spec_hash()
