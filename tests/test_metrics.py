"""The objectives table (archbench/runner/metrics.py): spec validation and the trial's values
both read it, so a new objective is one entry."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from archbench.errors import SpecError
from archbench.runner.metrics import DIRECTIONS, METRICS, Metric, TrialOutcome, objective_values
from archbench.runner.spec import parse_spec

COST = SimpleNamespace(params=1234, macs=56_789, acts=10)


def _spec(objectives: list[str]) -> dict:
    return {
        "name": "m",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 1, "batch_size": 64},
        "variants": [],
        "space": {"family": ["resnet"], "depth": [8], "width": [4, 8]},
        "sampler": {"name": "nsga2"},
        "trials": 2,
        "objectives": objectives,
    }


@pytest.mark.parametrize("name", [n for n in METRICS if n != "val_acc"])
def test_every_metric_is_a_spec_objective_with_its_direction(name: str) -> None:
    spec = parse_spec(_spec(["val_acc", name]))
    assert spec.directions == [DIRECTIONS["val_acc"], METRICS[name].direction]


def test_values_come_from_the_table() -> None:
    outcome = TrialOutcome(val_acc=0.75, cost=COST)
    assert objective_values(["val_acc", "params", "macs"], outcome) == [0.75, 1234.0, 56789.0]


def test_a_new_objective_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpecError, match="unknown 'acts'"):
        parse_spec(_spec(["val_acc", "acts"]))
    monkeypatch.setitem(METRICS, "acts", Metric("minimize", lambda o: o.cost.acts, "acts"))
    spec = parse_spec(_spec(["val_acc", "acts"]))
    assert spec.directions == ["maximize", "minimize"]
    assert objective_values(spec.objectives, TrialOutcome(0.5, COST)) == [0.5, 10.0]
