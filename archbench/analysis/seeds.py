"""The seeds of an experiment: which ones each configuration is owed (the spec's, its
profile's, and any seed another configuration ran) and which of them are scored.

A seed is scored by a completed run, or by a diverged one counted at :data:`DIVERGED_ERROR`;
a failed, pruned or running run leaves it open. Kept apart from :mod:`archbench.analysis.data`
(loading an experiment, summarising its configurations), which reads these to mark a
configuration complete; nothing here reads the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

#: A diverged run's error, in every metric: the objective scores it as accuracy 0, and a mean,
#: ranking or paired test that dropped it would rank a configuration on its survivors.
DIVERGED_ERROR = 1.0
#: Runs that give a configuration a value for a seed; any other status leaves the seed open.
SCORED_STATUSES = ("completed", "diverged")


def _seed_list(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list) and all(isinstance(s, int) for s in value):
        return list(value)
    return []


def spec_seeds(spec: Mapping[str, Any] | None, profile: str | None = None) -> list[int]:
    """The seeds the spec (its profile's, else its own) asks for; ``[]`` when it names none,
    or when it asks a question (its rounds add seeds past the list: runner.rounds)."""
    spec = spec or {}
    profiles = spec.get("profiles")
    wanted = _seed_list(spec.get("seeds"))
    question = spec.get("question")
    if isinstance(profiles, Mapping) and isinstance(profiles.get(profile), Mapping):
        wanted = _seed_list(profiles[profile].get("seeds")) or wanted
        question = profiles[profile].get("question", question)
    return [] if question else wanted


def study_seeds(study: Any, profile: str | None = None) -> list[int]:
    """The seeds of the spec ``study`` last ran (its ``archbench:spec`` text); ``[]``."""
    if study is None:
        return []
    text = study._storage.get_study_system_attrs(study._study_id).get("archbench:spec")
    try:
        spec = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return []
    return spec_seeds(spec if isinstance(spec, dict) else None, profile)


def expected_seeds(
    runs: pd.DataFrame, spec: Mapping[str, Any] | None = None, profile: str | None = None
) -> tuple[int, ...]:
    """The seeds each configuration is owed: those the spec (its profile's, else its own)
    asks for, and any seed another configuration of the experiment has a run for."""
    wanted = spec_seeds(spec, profile)
    seen = {int(s) for s in runs["seed"].dropna()} if "seed" in runs else set()
    return tuple(sorted(set(wanted) | seen))


def seed_status(group: pd.DataFrame, expected: tuple[int, ...]) -> tuple[bool, str]:
    """``(complete, note)`` for one configuration's runs: complete when every expected seed
    has a completed or diverged run; the note counts what is diverged, failed, pruned,
    running or missing (``"2 of 3 seeds failed"``), empty when nothing is."""
    seeds = set(expected) | {int(s) for s in group["seed"]}
    total = len(seeds)
    scored = {int(s) for s in group.loc[group["status"].isin(SCORED_STATUSES), "seed"]}
    parts = []
    n_div = int(group.loc[group["status"] == "diverged", "seed"].nunique())
    if n_div:
        parts.append(f"{n_div} of {total} seeds diverged (scored {DIVERGED_ERROR:.0%} error)")
    open_seeds = seeds - scored
    for status in ("failed", "pruned", "running"):
        hit = {int(s) for s in group.loc[group["status"] == status, "seed"]} & open_seeds
        if hit:
            parts.append(f"{len(hit)} of {total} seeds {status}")
            open_seeds -= hit
    if open_seeds:
        parts.append(f"{len(open_seeds)} of {total} seeds missing")
    complete = not (seeds - scored)
    return complete, "; ".join(parts)
