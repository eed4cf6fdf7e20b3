"""Budget matching on every registered family: params and MAC targets, grid snapping,
optimality against the neighbours, impossible budgets, depth solving, parsing."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from archbench.errors import BudgetError, SpecError
from archbench.models.budget import (
    BudgetMatch,
    data_shape,
    parse_count,
    solve,
    solve_depth,
    solve_width,
)
from archbench.models.complexity import analytic, analytic_params
from archbench.models.net import NetSpec
from archbench.models.presets import get_family, get_preset
from archbench.registry import FAMILIES

FAMILY_NAMES = FAMILIES.names()


def _count(spec: NetSpec, metric: str) -> int:
    return analytic_params(spec) if metric == "params" else analytic(spec).macs


def _default_count(name: str, metric: str) -> int:
    fam = get_family(name)
    return _count(fam.build(**data_shape(fam)), metric)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.7M", 1_700_000),
        ("250K", 250_000),
        ("250k", 250_000),
        ("4.1G", 4_100_000_000),
        ("270000", 270_000),
        ("270_000", 270_000),
        ("1,700,000", 1_700_000),
        (" 0.27M ", 270_000),
        ("1.2345K", 1_234),  # rounded to an integer
        (1_700_000, 1_700_000),
        (2.5e6, 2_500_000),
    ],
)
def test_parse_count(text: str | int | float, value: int) -> None:
    assert parse_count(text) == value


@pytest.mark.parametrize("bad", ["1.7X", "", "M", "-5", "1e6", "0", "0.1", "abc", True])
def test_parse_count_errors(bad: object) -> None:
    with pytest.raises(BudgetError, match="count"):
        parse_count(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("metric", ["params", "macs"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_solve_width_lands_on_the_closest_grid_width(name: str, metric: str) -> None:
    fam = get_family(name)
    step = fam.width_step({})
    target = int(_default_count(name, metric) * 1.5)
    match = solve_width(name, target, metric=metric, tolerance=1.0)
    assert match.width % step == 0 and match.width >= step
    assert match.depth == fam.default_depth
    assert match.achieved == _count(match.spec, metric)  # recount from the returned spec
    assert match.rel_error == pytest.approx((match.achieved - target) / target)
    assert match.spec == fam.build(match.depth, match.width, **data_shape(fam)).replace(
        name=match.spec.name
    )
    # Closest achievable: neither grid neighbour is nearer the target.
    for width in (match.width - step, match.width + step):
        if width >= step:
            try:
                other = _count(fam.build(fam.default_depth, width, **data_shape(fam)), metric)
            except SpecError:
                continue
            assert abs(match.achieved - target) <= abs(other - target), (width, other)
    assert match.evaluations <= 8  # model-guided search: a handful of builds
    # At a 1% tolerance: the same answer, or an error naming the widths either side.
    if abs(match.rel_error) <= 0.01:
        assert solve_width(name, target, metric=metric) == dataclasses.replace(
            match, tolerance=0.01
        )
    else:
        with pytest.raises(BudgetError) as info:
            solve_width(name, target, metric=metric)
        message = str(info.value)
        assert "nearest below" in message and "nearest above" in message
        assert f"at width {match.width}" in message


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_exact_target_is_hit(name: str) -> None:
    fam = get_family(name)
    step = fam.width_step({})
    width = fam.default_width + 3 * step
    target = analytic_params(fam.build(fam.default_depth, width, **data_shape(fam)))
    match = solve_width(name, target, tolerance=0.0)
    assert match.achieved == target and match.rel_error == 0.0
    assert match.width == width


def test_cifar_resnet_budgets() -> None:
    # ResNet-110's 1.73M params at depth 110 is width 16.
    match = solve_width("resnet", "1.7M", depth=110, tolerance=0.02)
    assert (match.width, match.achieved) == (16, 1_727_962)
    assert match.spec.spec_hash() == get_preset("resnet110").spec_hash()
    # A MAC budget: ResNet-56's MACs at depth 56.
    macs = analytic(get_preset("resnet56")).macs
    assert solve_width("resnet", macs, metric="macs", depth=56, tolerance=0).width == 16
    # Params are (close to) quadratic in width: 4x the params is about 2x the width.
    wide = solve_width("resnet", 4 * 269_722, tolerance=0.05)
    assert wide.width == 32


def test_family_params_are_passed_through() -> None:
    a = solve_width("resnet", "1M", params={"shortcut": "B"}, tolerance=0.05)
    assert all(s.params.get("shortcut") == "B" for s in a.spec.stages)
    assert a.params == {"shortcut": "B"}
    with pytest.raises(SpecError, match="unknown param 'nope'"):
        solve_width("resnet", "1M", params={"nope": 1})


def test_impossible_budgets_name_the_nearest() -> None:
    with pytest.raises(BudgetError) as info:
        solve_width("resnet", 1000)
    message = str(info.value)
    assert "nearest below: none (the smallest width, 1, gives" in message
    assert re.search(r"nearest above: [\d,]+ at width 1 \(\+", message)
    with pytest.raises(BudgetError, match=r"nearest above: none \(widths stop at 65536\)"):
        solve_width("resnet", 10**14)
    with pytest.raises(BudgetError) as info:
        solve_width("resnet", "1.7M", depth=20, tolerance=0.001)
    message = str(info.value)
    assert "at width 40 (-1.38%)" in message and "at width 41 (+3.60%)" in message


def test_bad_arguments() -> None:
    with pytest.raises(BudgetError, match="unknown budget metric 'flops'"):
        solve_width("resnet", "1M", metric="flops")  # type: ignore[arg-type]
    with pytest.raises(BudgetError, match="tolerance must be a number >= 0"):
        solve_width("resnet", "1M", tolerance=-1)
    with pytest.raises(SpecError, match=r"depth must be 6n\+2"):
        solve_width("resnet", "1M", depth=21)
    with pytest.raises(Exception, match="unknown family 'resnett'"):
        solve_width("resnett", "1M")


def test_solve_depth() -> None:
    target = analytic_params(get_preset("resnet56"))
    match = solve_depth("resnet", target, tolerance=0)
    assert (match.depth, match.width, match.vary) == (56, 16, "depth")
    assert match.spec.spec_hash() == get_preset("resnet56").spec_hash()
    imagenet = solve_depth("resnet_imagenet", "25.6M", tolerance=0.01)
    assert imagenet.depth == 50 and imagenet.achieved == 25_557_032
    macs = solve_depth("resnet", "250M", metric="macs", tolerance=0.03)
    assert macs.depth == 110
    with pytest.raises(
        BudgetError, match=r"no depth \(6n\+2\).*nearest below: [\d,]+ at depth 104"
    ):
        solve_depth("resnet", "250M", metric="macs", tolerance=0.01)
    with pytest.raises(BudgetError, match=r"nearest below: none \(the smallest depth, 18"):
        solve_depth("resnet_imagenet", "1M")


def test_one_solve_varies_width_or_depth() -> None:
    # solve_width/solve_depth are solve(vary=...): the same answer, one search and one error.
    assert solve("resnet", "1.7M", depth=110, tolerance=0.02) == solve_width(
        "resnet", "1.7M", depth=110, tolerance=0.02
    )
    target = analytic_params(get_preset("resnet56"))
    assert solve("resnet", target, vary="depth", tolerance=0) == solve_depth(
        "resnet", target, tolerance=0
    )
    with pytest.raises(BudgetError, match="finds the width"):
        solve("resnet", "1M", width=16)
    with pytest.raises(BudgetError, match="finds the depth"):
        solve("resnet", "1M", vary="depth", depth=20)
    with pytest.raises(BudgetError, match="unknown vary 'both'; allowed: width, depth"):
        solve("resnet", "1M", vary="both")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_solve_depth_every_family(name: str) -> None:
    fam = get_family(name)
    depths = fam.depth.valid_depths(1, 400)[:3]
    target = analytic_params(fam.build(depths[-1], **data_shape(fam)))
    match = solve_depth(name, target, tolerance=0)
    assert match.depth in fam.depth.valid_depths(1, 10_000)
    assert match.achieved == target


def test_match_to_dict_roundtrip() -> None:
    match = solve_width("wrn", "36.5M", depth=28)
    data = json.loads(json.dumps(match.to_dict()))
    assert data["schema"] == "archbench.budget_match/1"
    assert (data["depth"], data["width"], data["metric"]) == (28, 160, "params")
    assert NetSpec.from_dict(data["spec"]) == match.spec
    assert data["spec_hash"] == match.spec.spec_hash()
    assert isinstance(match, BudgetMatch)


def test_widths_the_family_rejects_raise_the_lower_bound() -> None:
    resnet = get_family("resnet")

    def build(depth: int, width: int) -> NetSpec:
        if width < 12:  # e.g. a block needing more channels than its groups
            raise SpecError(f"width {width} is below 12")
        return resnet.build_fn(depth, width)

    fam = dataclasses.replace(resnet, name="picky", build_fn=build)
    smallest = analytic_params(resnet.build(20, 12))
    match = solve_width(fam, smallest // 2, tolerance=10.0)
    assert (match.width, match.achieved) == (12, smallest)
    with pytest.raises(BudgetError, match=r"nearest below: none \(the smallest width, 12, gives"):
        solve_width(fam, smallest // 2)
