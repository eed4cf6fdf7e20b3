"""The small things archbench does in exactly one place: canonical hashes, the positive-int
check, seed derivation. Their numbers are pinned: stored identities and results depend on them."""

from __future__ import annotations

import dataclasses

import pytest

from archbench.canonical import canonical_hash, canonical_json
from archbench.data.seeds import derive_seed, mix_seed
from archbench.models.presets import get_preset
from archbench.store.values import canonical_hash as store_hash
from archbench.training.device import derive_seed as trainer_seed
from archbench.validation import is_positive_int


def test_canonical_json_and_hash() -> None:
    assert canonical_json({"b": [1, 2], "a": 1}) == '{"a":1,"b":[1,2]}'
    assert (
        store_hash({"a": 1, "b": [1, 2]})
        == "8baa73198470"
        == canonical_hash({"a": 1, "b": [1, 2]}, 12)
    )
    spec = get_preset("resnet20")
    assert spec.spec_hash() == "70925bfa1dd47701"
    data = spec.to_dict()
    del data["name"]
    assert canonical_hash(data) == spec.spec_hash()
    with pytest.raises(TypeError):
        canonical_json({"x": object()})
    assert canonical_json({"x": 1.5j}, default=str) == '{"x":"1.5j"}'


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (7, True),
        (0, False),
        (-3, False),
        (True, False),
        (2.0, False),
        ("3", False),
        (None, False),
    ],
)
def test_one_positive_int_check(value: object, ok: bool) -> None:
    assert is_positive_int(value) is ok


def test_seed_derivations_keep_their_numbers() -> None:
    assert trainer_seed is derive_seed
    assert derive_seed(0, "data") == 132241202
    assert derive_seed(0, "data") != derive_seed(0, "dropout") != derive_seed(1, "data")
    assert mix_seed(0, 1) == 8514611595815388268
    assert mix_seed(0, 1) != mix_seed(1, 0)


def test_config_key_hashes_through_the_canonical_hash() -> None:
    from archbench.canonical import canonical_hash
    from archbench.runner.identity import config_key
    from archbench.runner.spec import parse_spec

    spec = parse_spec(
        {
            "name": "t",
            "dataset": {"name": "digits", "val_size": 200},
            "recipe": {"epochs": 1},
            "variants": [{"family": "resnet", "depth": 8, "width": 8}],
            "budget": {"target": "20K", "tolerance": 0.5},
        }
    )
    recipe = spec.recipe.to_dict()
    key = config_key("abc", recipe, budget=spec.budget, dataset=spec.dataset)
    rest = {
        "recipe": recipe,
        "budget": dataclasses.asdict(spec.budget),
        "dataset": dataclasses.asdict(spec.dataset),
    }
    assert key == f"abc-{canonical_hash(rest, default=str)}"
