"""The one table from a spec's sampler/pruner name to the Optuna class the study gets.

Spec validation reads the names from here and :mod:`archbench.runner.study` builds the
objects from here, so a name cannot mean one thing to the validator and another to the study.
Classes are named, not imported: parsing a spec does not import Optuna.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Algorithm:
    """An Optuna class (by name, in ``optuna.<module>``) and its keyword arguments."""

    module: str  # "samplers" or "pruners"
    cls: str
    kwargs: Callable[[Any], dict[str, Any]]  # ExperimentSpec -> keyword arguments

    def build(self, spec: Any) -> Any:
        return self.resolve()(**self.kwargs(spec))

    def resolve(self) -> type:
        import importlib

        return getattr(importlib.import_module(f"optuna.{self.module}"), self.cls)


def _seed(spec: Any) -> dict[str, Any]:
    return {"seed": spec.sampler.seed}


SAMPLERS: dict[str, Algorithm] = {
    # A grid study enqueues every configuration (prepare_study), in the spec's order: workers
    # pop them one at a time, so no two get the same one and the sampler is never asked.
    # (Optuna's GridSampler shuffles the grid and, with several workers, can hand out a point
    # twice.)
    "grid": Algorithm("samplers", "RandomSampler", _seed),
    "random": Algorithm("samplers", "RandomSampler", _seed),
    "tpe": Algorithm("samplers", "TPESampler", _seed),
    "nsga2": Algorithm("samplers", "NSGAIISampler", _seed),
}

PRUNERS: dict[str, Algorithm] = {
    "none": Algorithm("pruners", "NopPruner", lambda spec: {}),
    "median": Algorithm(
        "pruners",
        "MedianPruner",
        lambda spec: {
            "n_startup_trials": spec.pruner.startup_trials,
            "n_warmup_steps": spec.pruner.warmup_epochs,
        },
    ),
    "hyperband": Algorithm(
        "pruners",
        "HyperbandPruner",
        lambda spec: {"min_resource": 1, "max_resource": spec.recipe.epochs},
    ),
}


def one_of(table: dict[str, Algorithm], name: Any) -> str | None:
    """``None`` when ``name`` is in ``table``, else the message naming what is allowed."""
    if name in table:
        return None
    return f"key 'name' must be one of {', '.join(map(repr, table))}, got {name!r}"
