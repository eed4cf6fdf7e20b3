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
    kwargs: Callable[..., dict[str, Any]]  # (ExperimentSpec[, worker]) -> keyword arguments
    per_worker: bool = False  # kwargs takes the worker too (samplers: a seed per worker)

    def build(self, spec: Any, worker: int | str = 0) -> Any:
        kwargs = self.kwargs(spec, worker) if self.per_worker else self.kwargs(spec)
        return self.resolve()(**kwargs)

    def resolve(self) -> type:
        import importlib

        return getattr(importlib.import_module(f"optuna.{self.module}"), self.cls)


def worker_seed(seed: int | None, worker: int | str = 0) -> int | None:
    """The sampler seed of one worker: worker 0 keeps the spec's seed (a one-worker study is
    reproducible from it); any other worker gets a seed derived from (seed, worker), so
    parallel workers do not all draw the same configurations. ``None`` stays unseeded."""
    if seed is None or worker == 0:
        return seed
    import hashlib

    digest = hashlib.sha256(f"archbench-sampler:{seed}:{worker}".encode()).digest()
    return int.from_bytes(digest[:4], "big")  # numpy's RandomState takes < 2**32


def _seed(spec: Any, worker: int | str = 0) -> dict[str, Any]:
    return {"seed": worker_seed(spec.sampler.seed, worker)}


def _nsga2(spec: Any, worker: int | str = 0) -> dict[str, Any]:
    size = spec.sampler.population_size
    return {**_seed(spec, worker), **({"population_size": size} if size else {})}


SAMPLERS: dict[str, Algorithm] = {
    # A grid study enqueues every configuration (prepare_study), in the spec's order: workers
    # pop them one at a time, so no two get the same one and the sampler is never asked.
    # (Optuna's GridSampler shuffles the grid and, with several workers, can hand out a point
    # twice.)
    "grid": Algorithm("samplers", "RandomSampler", _seed, per_worker=True),
    "random": Algorithm("samplers", "RandomSampler", _seed, per_worker=True),
    "tpe": Algorithm("samplers", "TPESampler", _seed, per_worker=True),
    "nsga2": Algorithm("samplers", "NSGAIISampler", _nsga2, per_worker=True),
}

PRUNERS: dict[str, Algorithm] = {
    "none": Algorithm("pruners", "NopPruner", lambda spec: {}),
    "median": Algorithm(
        "pruners",
        "MedianPruner",
        lambda spec: {
            "n_startup_trials": spec.pruner.startup_trials,
            # Epochs are reported from 1 and Optuna may prune at step == n_warmup_steps:
            # + 1 keeps the first warmup_epochs epochs unprunable.
            "n_warmup_steps": spec.pruner.warmup_epochs + 1,
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
