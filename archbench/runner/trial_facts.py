"""What Optuna's own views (optuna-dashboard, ``optuna.visualization``, importances) see of a
trial: its architecture as user attrs and as *derived* params.

(Issue 16/19: the runner now passes no distributions, so the facts are user attrs only: a
derived width or depth let Optuna's importances credit a family's effect to a budget-solved
axis, and a derived categorical refused the next grown grid. What follows describes
:func:`derived_distributions`, kept for callers that want derived params.)

A grid trial's only sampled param is its opaque ``config`` label, and a sampled trial's depth
is split per family (``resnet.depth``, ``wrn.depth``). So every trial also gets ``family``,
``depth``, ``width``, ``block``, ``budget`` and ``threads`` as user attrs, and the ones
importance, slice and parallel-coordinate views read as params. Derived params are written
straight to the storage, never suggested: the sampler is not asked, a queued grid point or
baseline keeps its meaning, and the ``config`` param still identifies a grid trial.

Optuna's views drop a param whose distribution differs between trials, and fANOVA
importances depend on its range, so each derived param has one distribution per study, the
tightest that holds the study's values: a grid's own families, blocks, depths and (solved)
widths; a sampled space's depth and width ranges. A width that a budget solves inside a sampled
space has no range known in advance and stays a user attr.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from archbench.runner.spec import ExperimentSpec
from archbench.runner.variants import ResolvedVariant
from archbench.store.rows import main_block

log = logging.getLogger(__name__)


def metric_names(spec: ExperimentSpec) -> list[str]:
    """Names of the objective values, in order (``val_acc``, then ``params``/``macs``)."""
    return list(spec.objectives)


def budget_text(spec: ExperimentSpec) -> str | None:
    if spec.budget is None:
        return None
    return f"{spec.budget.target} {spec.budget.metric}"


def architecture_facts(variant: ResolvedVariant, spec: ExperimentSpec) -> dict[str, Any]:
    """Family (or preset), depth, width, main block and budget of a resolved variant."""
    config = variant.config
    match = variant.budget
    depth = match.depth if match else config.get("depth")
    width = match.width if match else config.get("width")
    return {
        "family": variant.family or config.get("preset"),
        "depth": variant.spec.depth if depth is None else depth,
        "width": width,
        "block": main_block(variant.spec),
        "budget": budget_text(spec),
    }


def derived_distributions(
    spec: ExperimentSpec, variants: Sequence[ResolvedVariant] = ()
) -> dict[str, BaseDistribution]:
    """The derived params of the study's trials and their (study-wide) distributions.

    ``variants``: a grid study's configurations, resolved (budget-solved) up front.
    """
    if spec.sampler.name == "grid":
        facts = [architecture_facts(v, spec) for v in variants]
        dists: dict[str, BaseDistribution] = {}
        for name in ("family", "block"):
            values = {f[name] for f in facts if f[name] is not None}
            if values:
                dists[name] = CategoricalDistribution(sorted(values))
        for name in ("depth", "width"):
            values = [f[name] for f in facts]
            if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                dists[name] = IntDistribution(min(values), max(values))
        if spec.space is not None:
            for key, dist in spec.space.recipe.items():
                dists[f"recipe.{key}"] = CategoricalDistribution(
                    dist.grid_values(f"space.recipe.{key}")
                )
        return dists
    # A sampled space: "family" and the recipe keys are sampled params already.
    assert spec.space is not None
    dists = {}
    for name, per_family in (("depth", spec.space.depth), ("width", spec.space.width)):
        if set(per_family) != set(spec.space.families):
            continue  # some family's value is solved, not sampled: no range known
        bounds = [_int_bounds(d) for d in per_family.values()]
        if all(b is not None for b in bounds):
            dists[name] = IntDistribution(min(b[0] for b in bounds), max(b[1] for b in bounds))
    return dists


def _int_bounds(dist: Any) -> tuple[int, int] | None:
    """(low, high) of a spec distribution over integers, else None."""
    values = list(dist.choices) if dist.choices is not None else [dist.low, dist.high]
    if dist.choices is None and not dist.is_int:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return int(min(values)), int(max(values))


def record_facts(
    trial: optuna.Trial,
    facts: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
) -> None:
    """Set ``facts`` as user attrs, and those with a distribution as derived params.

    A value outside its distribution (a grid changed since the study began, a family whose
    block depends on the depth) stays a user attr only.
    """
    for key, value in facts.items():
        trial.set_user_attr(key, value)
    present = trial.params  # a retried trial comes with its predecessor's params
    for name, dist in distributions.items():
        value = facts.get(name)
        if value is None or name in present:
            continue
        try:
            if isinstance(dist, IntDistribution) and not dist.low <= value <= dist.high:
                raise ValueError(f"{value} is outside [{dist.low}, {dist.high}]")
            internal = dist.to_internal_repr(value)
            trial.storage.set_trial_param(trial._trial_id, name, internal, dist)
        except ValueError as exc:
            log.warning(
                "trial %d: %s=%r stays a user attr only (%s)", trial.number, name, value, exc
            )
