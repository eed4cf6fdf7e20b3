"""The objectives a study can optimise: one table ``{name: (direction, how to compute)}``.

Spec validation reads the names and directions from here (this module imports neither torch
nor Optuna, so parsing a spec stays light); the objective computes a trial's values from it.
A new objective (say, a measured latency) is one entry in :data:`METRICS`, computed from the
:class:`TrialOutcome` (add the field it needs there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class TrialOutcome:
    """What a finished trial knows: its mean validation accuracy over seeds, and the
    variant's counts (an object with ``params``, ``macs`` and ``acts``)."""

    val_acc: float
    cost: Any


@dataclass(frozen=True)
class Metric:
    direction: Direction
    compute: Callable[[TrialOutcome], float]
    description: str


METRICS: dict[str, Metric] = {
    "val_acc": Metric(
        "maximize",
        lambda o: o.val_acc,
        "validation top-1 accuracy of the final epoch, mean over seeds",
    ),
    "params": Metric("minimize", lambda o: float(o.cost.params), "parameter count"),
    "macs": Metric("minimize", lambda o: float(o.cost.macs), "multiply-accumulates, batch 1"),
}


class _Directions(Mapping[str, Direction]):
    """name -> Optuna direction: a live view of :data:`METRICS` (what specs may name)."""

    def __getitem__(self, name: str) -> Direction:
        return METRICS[name].direction

    def __iter__(self) -> Iterator[str]:
        return iter(METRICS)

    def __len__(self) -> int:
        return len(METRICS)


DIRECTIONS: Mapping[str, Direction] = _Directions()


def objective_values(names: Sequence[str], outcome: TrialOutcome) -> list[float]:
    """The trial's value for each objective in ``names``, in order."""
    return [float(METRICS[name].compute(outcome)) for name in names]
