"""The spec's JSON Schema: generated from the spec dataclasses, committed, and true to them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from archbench.cli import main
from archbench.cli.schema import render
from archbench.runner import sections
from archbench.runner.schema import spec_schema
from archbench.runner.spec import _TOP_KEYS
from archbench.training.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "spec.schema.json"
SPECS = sorted((ROOT / "experiments").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == render() + "\n"
    assert COMMITTED.read_text() == printed, (
        "docs/spec.schema.json is stale: archbench schema > docs/spec.schema.json"
    )


def test_every_key_of_the_spec_definitions_is_in_the_schema() -> None:
    schema = spec_schema()
    assert set(schema["properties"]) == _TOP_KEYS
    defs = schema["$defs"]
    for name, cls in [
        ("dataset", sections.DatasetSection),
        ("variant", sections.VariantSection),
        ("budget", sections.BudgetSection),
        ("sampler", sections.SamplerSection),
        ("pruner", sections.PrunerSection),
        ("distribution", sections.Distribution),
        ("recipe", Recipe),
    ]:
        assert set(defs[name]["properties"]) == {f.name for f in dataclasses.fields(cls)}, name
    assert defs["recipe"]["properties"]["schedule"]["enum"] == ["step", "cosine", "constant"]
    assert defs["recipe"]["properties"]["epochs"] == {"type": "integer", "default": 10}


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_validate(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(
        yaml.safe_load(path.read_text())
    )]  # fmt: skip
    assert not errors, errors


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"trails": 3}, []),
        ({"recipe": {"epoch": 3}}, ["recipe"]),
        ({"recipe": {"schedule": "linear"}}, ["recipe", "schedule"]),
        ({"sampler": {"name": "gird"}}, ["sampler", "name"]),
        ({"seeds": [0, 0]}, ["seeds"]),
        ({"variants": [{"family": "resnet", "widht": 3}]}, ["variants", 0]),
        ({"profiles": {"p": {"recipe": {"lr": "fast"}}}}, ["profiles", "p", "recipe", "lr"]),
    ],
)
def test_the_schema_refuses_what_archbench_refuses(
    validator: jsonschema.Draft202012Validator, change: dict, where: list
) -> None:
    spec = {"name": "x", "dataset": {"name": "digits"}, **change}
    errors = list(validator.iter_errors(spec))
    assert errors
    paths = [list(e.absolute_path) for e in errors] + [
        list(sub.absolute_path) for e in errors for sub in (e.context or [])
    ]
    assert any(p[: len(where)] == where for p in paths), paths
