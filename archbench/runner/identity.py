"""What a configuration *is*: the net it builds, the recipe it trains with, the data and the
budget. Not its label, not its position in the spec.

:func:`config_key` names one configuration; the runs of its seeds share the key, the store
keys runs by it, and a grid trial carries it (a user attribute) instead of a label. So a grid
can grow (new keys are queued, stored ones are reused), an edited variant is a new key (it is
trained, its old numbers stay under the old key), and entries the user wrote differently that
build one net under one recipe are one key, trained once and shown under every label
(:class:`GridEntry`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from archbench.canonical import canonical_hash
from archbench.runner.spec import BudgetSection, DatasetSection, ExperimentSpec
from archbench.runner.variants import ResolvedVariant, dataset_shape, resolve

#: Joins the labels of grid entries that build the same net under the same recipe.
SAME = " = "


def config_key(
    spec_hash: str,
    recipe: Mapping[str, Any],
    *,
    budget: BudgetSection | None,
    dataset: DatasetSection,
) -> str:
    """``<net hash>-<hash of recipe, data, budget>``: what one configuration trains.

    ``spec_hash`` is the canonical NetSpec hash (its name is not part of it); ``recipe`` the
    full recipe (sampled hyperparameters applied). Seeds are not part of it. The dash tells a
    key from the label-based keys of stores made before (:func:`is_current_key`).
    """
    rest = {
        # As the store keeps it (JSON): a key computed from a stored row is the same.
        "recipe": json.loads(json.dumps(dict(recipe), default=str)),
        "budget": dataclasses.asdict(budget) if budget is not None else None,
        "dataset": json.loads(json.dumps(dataclasses.asdict(dataset), default=str)),
    }
    return f"{spec_hash}-{canonical_hash(rest, default=str)}"


def is_current_key(key: Any) -> bool:
    """Whether ``key`` is a :func:`config_key` (stores before issue 16 keyed by the config)."""
    return isinstance(key, str) and "-" in key


def entry_label(config: Mapping[str, Any]) -> str:
    """The label a grid configuration shows: the variant's, plus its recipe choices."""
    extra = ",".join(f"{k}={v}" for k, v in sorted(config["recipe"].items()))
    return f"{config['label']}|{extra}" if extra else str(config["label"])


def config_recipe(spec: ExperimentSpec, config: Mapping[str, Any]) -> Any:
    """The spec's recipe with the configuration's own choices (a grid's recipe space)."""
    return replace(spec.recipe, **config["recipe"]) if config["recipe"] else spec.recipe


@dataclass(frozen=True)
class GridEntry:
    """One configuration of a grid: every entry of the spec that trains it."""

    key: str
    labels: tuple[str, ...]  # as the user wrote them, in the spec's order
    config: Mapping[str, Any]  # the first entry's
    variant: ResolvedVariant

    @property
    def label(self) -> str:
        return SAME.join(self.labels)


Resolver = Callable[[Mapping[str, Any]], ResolvedVariant]


def grid_entries(spec: ExperimentSpec, resolver: Resolver | None = None) -> list[GridEntry]:
    """The grid's configurations in the spec's order, entries that coincide merged.

    ``spec`` must be bound (:func:`~archbench.runner.variants.bind`); ``resolver`` solves a
    config (default: :func:`~archbench.runner.variants.resolve`, cached per spec here).
    Raises :class:`~archbench.errors.SpecError` for an entry that cannot be built.
    """
    if resolver is None:
        cached = _CACHE.get(repr(spec))
        if cached is not None:
            return cached
        shape = dataset_shape(spec)
        solved: dict[str, ResolvedVariant] = {}

        def resolver(config: Mapping[str, Any]) -> ResolvedVariant:
            arch = json.dumps(
                {k: config.get(k) for k in ("preset", "family", "depth", "width", "params")},
                sort_keys=True,
                default=str,
            )
            if arch not in solved:
                solved[arch] = resolve(config, shape, spec.budget)
            return replace(solved[arch], label=config["label"], config=config)

        entries = grid_entries(spec, resolver)
        if len(_CACHE) > 16:
            _CACHE.clear()
        _CACHE[repr(spec)] = entries
        return entries
    merged: dict[str, GridEntry] = {}
    for config in spec.grid():
        variant = resolver(config)
        recipe = config_recipe(spec, config)
        key = config_key(
            variant.spec.spec_hash(), recipe.to_dict(), budget=spec.budget, dataset=spec.dataset
        )
        label = entry_label(config)
        if key in merged:
            old = merged[key]
            if label not in old.labels:
                merged[key] = replace(old, labels=(*old.labels, label))
        else:
            merged[key] = GridEntry(key, (label,), config, variant)
    return list(merged.values())


_CACHE: dict[str, list[GridEntry]] = {}


def coinciding(entries: list[GridEntry]) -> list[str]:
    """One line per configuration that several grid entries build (trained once)."""
    return [
        f"grid entries {', '.join(repr(label) for label in e.labels)} build the same net under "
        f"the same recipe: trained once, shown as {e.label!r}"
        for e in entries
        if len(e.labels) > 1
    ]
