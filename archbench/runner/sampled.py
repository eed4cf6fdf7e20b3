"""Optuna param names of a sampled study's space, so a space may grow without refusal.

Optuna fixes a param's distribution kind, and a categorical param's choices, for the whole
study (another choice set is a "dynamic value space" error). A study therefore records the
distribution each param name had when it first appeared (study system attr
:data:`DISTRIBUTIONS_ATTR`); a param whose distribution in the current spec is incompatible
with that one (a family added to ``space.family``, a categorical param with other values, a
range turned into choices) is sampled under ``<name>~<hash of its distribution>``: a new
param for the sampler, which learns it afresh, while every stored run stays reused by its
configuration key (what it trains, not how it was sampled). The same choice set always gets
the same name, so a space changed back continues the old param. Ranges that merely move
keep their name (Optuna accepts them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)

from archbench.canonical import canonical_hash
from archbench.runner.spec import ExperimentSpec

#: Study system attr: ``param name -> distribution JSON`` as each name was first sampled.
DISTRIBUTIONS_ATTR = "archbench:distributions"
#: Separates a param's name from the hash of its (changed) distribution.
SEP = "~"


def base_name(name: str) -> str:
    """A param's name without a distribution suffix (``family~3f2a1c`` -> ``family``)."""
    return name.split(SEP, 1)[0]


def to_optuna(dist: Any) -> BaseDistribution:
    """The Optuna distribution a spec :class:`~archbench.runner.sections.Distribution`
    is sampled from (as ``trial.suggest_*`` would build it)."""
    if dist.choices is not None:
        return CategoricalDistribution(list(dist.choices))
    if dist.is_int:
        return IntDistribution(
            int(dist.low), int(dist.high), step=int(dist.step or 1), log=dist.log
        )
    return FloatDistribution(dist.low, dist.high, step=dist.step, log=dist.log)


def space_distributions(spec: ExperimentSpec) -> dict[str, BaseDistribution]:
    """Every param the spec's space may sample (base names), with its distribution."""
    assert spec.space is not None
    space = spec.space
    out: dict[str, BaseDistribution] = {"family": CategoricalDistribution(list(space.families))}
    for fam in space.families:
        out[f"{fam}.depth"] = to_optuna(space.depth[fam])
        if fam in space.width:
            out[f"{fam}.width"] = to_optuna(space.width[fam])
        for k, d in space.params.get(fam, {}).items():
            out[f"{fam}.{k}"] = to_optuna(d)
    for k, d in space.recipe.items():
        out[f"recipe.{k}"] = to_optuna(d)
    return out


def recorded(study: optuna.Study) -> dict[str, BaseDistribution]:
    """The study's first distribution of each param name (:data:`DISTRIBUTIONS_ATTR`; for a
    study made before it: read from its trials)."""
    system = study._storage.get_study_system_attrs(study._study_id)
    stored = system.get(DISTRIBUTIONS_ATTR)
    if isinstance(stored, Mapping):
        return {str(k): json_to_distribution(v) for k, v in stored.items()}
    first: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            first.setdefault(name, dist)
    return first


def record(spec: ExperimentSpec, study: optuna.Study) -> dict[str, BaseDistribution]:
    """Record the distributions of the spec's params the study has not seen (kept as they
    are for the others); returns the study's record."""
    known = recorded(study)
    wanted = space_distributions(spec)
    added = {name: dist for name, dist in wanted.items() if name not in known}
    system = study._storage.get_study_system_attrs(study._study_id)
    if added or DISTRIBUTIONS_ATTR not in system:
        known = {**known, **added}
        study._storage.set_study_system_attr(
            study._study_id,
            DISTRIBUTIONS_ATTR,
            {name: distribution_to_json(dist) for name, dist in known.items()},
        )
    return known


def param_name(name: str, dist: BaseDistribution, known: Mapping[str, BaseDistribution]) -> str:
    """The name ``dist`` is sampled under: ``name`` while compatible with the study's record
    of it, else ``name~<hash of dist>``."""
    first = known.get(name)
    if first is None or _compatible(first, dist):
        return name
    return f"{name}{SEP}{canonical_hash(json.loads(distribution_to_json(dist)), 6)}"


def _compatible(old: BaseDistribution, new: BaseDistribution) -> bool:
    try:
        check_distribution_compatibility(old, new)
    except ValueError:
        return False
    return True


def current_names(spec: ExperimentSpec, known: Mapping[str, BaseDistribution]) -> dict[str, str]:
    """``base name -> name sampled now`` for every param of the spec's space."""
    return {n: param_name(n, d, known) for n, d in space_distributions(spec).items()}


def translate(
    params: Mapping[str, Any], spec: ExperimentSpec, names: Mapping[str, str]
) -> dict[str, Any] | None:
    """Sampled ``params`` (any names they were sampled under) renamed for the spec's space
    now, or ``None`` when the space can no longer produce them (a removed family or value)."""
    dists = space_distributions(spec)
    out: dict[str, Any] = {}
    for name, value in params.items():
        base = base_name(name)
        dist = dists.get(base)
        try:
            if dist is None or not dist._contains(dist.to_internal_repr(value)):
                return None
        except ValueError:  # not one of its choices
            return None
        out[names[base]] = value
    return out


def retried(trial: Any, spec: ExperimentSpec, names: Mapping[str, str]) -> Any | None:
    """A copy of an interrupted sampled trial to re-queue, its params renamed for the space
    now (so the retry trains the same configuration), or ``None`` when the space can no
    longer produce it."""
    import copy

    params = translate(trial.params, spec, names)
    if params is None:
        return None
    dists = space_distributions(spec)
    trial = copy.deepcopy(trial)
    trial.distributions = {name: dists[base_name(name)] for name in params}
    trial.params = params
    return trial
