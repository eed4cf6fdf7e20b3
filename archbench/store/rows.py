"""What each write stores, built from the caller's input and checked before its transaction
starts (so a bad call writes nothing): variant rows, run budgets, final values, epoch and
diagnostics rows."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from archbench.store.schema import (
    DIAGNOSTIC_METRICS,
    EPOCH_METRICS,
    FINAL_METRICS,
    FINISHED_STATUSES,
)
from archbench.store.values import (
    StoreError,
    as_mapping,
    check_keys,
    to_float,
    to_int,
    to_json,
    to_name,
)
from archbench.store.values import config_key as make_config_key

log = logging.getLogger(__name__)

BUDGET_METRICS = ("params", "macs")
DEFAULT_PROFILE = "default"


def variant_row(
    spec: Any,
    family: str,
    complexity: Any,
    *,
    depth: int | None = None,
    width: float | None = None,
    name: str | None = None,
    block_family: str | None = None,
) -> dict[str, Any]:
    """The variants row of a NetSpec (see ``ResultsStore.record_variant``)."""
    for attr in ("canonical_json", "spec_hash", "stages"):
        if not hasattr(spec, attr):
            raise StoreError(f"record_variant: expected a NetSpec, got {type(spec).__name__}")
    if not spec.stages:
        raise StoreError("record_variant: the spec has no stages")
    spec_hash = spec.spec_hash()
    stored = counts(complexity)
    num_blocks = int(spec.depth)
    family = to_name(family, "family")
    block = main_block(spec)
    if block_family is None:
        block_family = registered_family(block, family)
    return {
        "spec_hash": spec_hash,
        "name": to_name(name or spec.name or f"{family}_{spec_hash[:8]}", "variant name"),
        "spec_json": spec.canonical_json(),
        "family": family,
        "block": block,
        "block_family": to_name(block_family, "block_family"),
        "depth": to_int(num_blocks if depth is None else depth, "depth", minimum=1),
        "width": to_float(spec.stages[0].width if width is None else width, "width"),
        "num_blocks": num_blocks,
        **stored,
        "flops": 2 * stored["macs"],
    }


def main_block(spec: Any) -> str:
    """The block type of most blocks (the first stage's on a tie)."""
    tally: Counter[str] = Counter()
    for stage in spec.stages:
        tally[stage.block] += stage.depth
    return tally.most_common(1)[0][0]


def registered_family(block: str, fallback: str) -> str:
    """The block registry's family of ``block``, or ``fallback`` (the variant's family) for a
    block not registered in this process (a plugin not installed).

    Reading the registry imports every block, hence torch: only writers (which have built the
    net already) and the schema 1 migration call this, never a reader.
    """
    from archbench.errors import ArchbenchError
    from archbench.registry import BLOCKS

    try:
        found = BLOCKS.entry(block).meta.get("family")
    except ArchbenchError:
        found = None
    if isinstance(found, str) and found:
        return found
    log.debug("block %r is not registered here; its family is taken as %r", block, fallback)
    return fallback


def run_key_fields(
    spec_hash: str,
    *,
    experiment: str,
    profile: str | None,
    seed: int,
    config_key: str | None,
    study_name: str | None,
    trial_number: int | None,
    hyperparameters: Mapping[str, Any] | None,
    recipe: Mapping[str, Any] | None,
    device: str | None,
    env: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's key (experiment, profile, config_key, seed) and its other opening columns."""
    hp = to_json(hyperparameters, "hyperparameters")
    rec = to_json(recipe, "recipe")
    key = {
        "experiment": to_name(experiment, "experiment"),
        "profile": DEFAULT_PROFILE if profile is None else to_name(profile, "profile"),
        "config_key": to_name(
            config_key if config_key is not None else make_config_key(spec_hash, rec, hp),
            "config_key",
        ),
        "seed": to_int(seed, "seed"),
    }
    fields = {
        "study_name": None if study_name is None else to_name(study_name, "study_name"),
        "trial_number": to_int(trial_number, "trial_number", minimum=0, optional=True),
        "hyperparameters": hp,
        "recipe": rec,
        "device": None if device is None else str(device),
        "env": to_json(env, "env"),
    }
    return key, fields


def counts(complexity: Any) -> dict[str, int]:
    """``params``, ``macs``, ``acts`` of a mapping or an object with those attributes."""
    if isinstance(complexity, Mapping):
        get = complexity.get
    else:
        get = lambda key: getattr(complexity, key, None)  # noqa: E731
    found = {}
    for key in ("params", "macs", "acts"):
        value = get(key)
        if value is None:
            raise StoreError(f"complexity: missing {key!r} (need params, macs and acts)")
        found[key] = to_int(value, f"complexity {key}", minimum=0)
    return found


def parse_budget(budget: Mapping[str, Any] | None) -> tuple[str | None, float | None]:
    """(metric, target) of a run's budget mapping, checked; (None, None) without one."""
    if budget is None:
        return None, None
    data = as_mapping(budget, "budget")
    check_keys(data, ("metric", "target", "tolerance", "error"), "budget")
    metric = data.get("metric")
    if metric not in BUDGET_METRICS:
        raise StoreError(f"budget metric {metric!r} is not one of {list(BUDGET_METRICS)}")
    target = to_float(data.get("target"), "budget target")
    if target is None or target <= 0:
        raise StoreError(f"budget target must be a positive number, got {target!r}")
    to_float(data.get("error"), "budget error")  # checked, not stored: see start_run
    return metric, target


def final_values(
    status: str,
    final: Mapping[str, Any] | Any | None,
    wall_time_s: float | None,
    diverged_at: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The run columns ``finish_run`` sets (status, final metrics, wall time, divergence)."""
    if status not in FINISHED_STATUSES:
        raise StoreError(f"finish_run: status {status!r} is not one of {list(FINISHED_STATUSES)}")
    values: dict[str, Any] = dict.fromkeys(FINAL_METRICS)
    if final is not None:
        data = as_mapping(final, "final metrics")
        check_keys(data, {*FINAL_METRICS, "epoch", *EPOCH_METRICS}, "final metrics")
        if "epoch" in data:
            data.setdefault("epochs_done", data["epoch"])
        for key, value in data.items():
            if key not in FINAL_METRICS:
                continue
            if key == "epochs_done":
                values[key] = to_int(value, key, minimum=0, optional=True)
            else:
                values[key] = to_float(value, f"final {key}")
    wall = to_float(wall_time_s, "wall_time_s")
    if wall is not None and wall < 0:
        raise StoreError(f"wall_time_s must be >= 0, got {wall}")
    values.update(
        status=status,
        wall_time_s=wall,
        diverged_at=to_json(diverged_at, "diverged_at", optional=True),
    )
    return values


def epoch_row(run_id: int, metrics: Any) -> dict[str, Any]:
    """One epoch's row: ``epoch`` plus any of ``EPOCH_METRICS`` (the rest NULL)."""
    data = as_mapping(metrics, "epoch metrics")
    if data.get("run_id", run_id) != run_id:
        raise StoreError(f"epoch metrics: run_id {data['run_id']} != {run_id}")
    data.pop("run_id", None)
    check_keys(data, ("epoch", *EPOCH_METRICS), "epoch metrics")
    if "epoch" not in data:
        raise StoreError("epoch metrics: missing 'epoch'")
    row = {"run_id": run_id, "epoch": to_int(data["epoch"], "epoch", minimum=0)}
    row.update({k: to_float(data.get(k), k) for k in EPOCH_METRICS})
    return row


def diagnostic_rows(run_id: int, items: Iterable[Any]) -> list[dict[str, Any]]:
    """Checked diagnostics rows of one run; the last of duplicate (epoch, block) rows wins."""
    clean: dict[tuple[int, str], dict[str, Any]] = {}
    allowed = ("epoch", "block", "index", "block_index", "run_id", *DIAGNOSTIC_METRICS)
    for i, item in enumerate(items):
        what = f"diagnostics row {i}"
        data = as_mapping(item, what)
        check_keys(data, allowed, what)
        if data.get("run_id", run_id) != run_id:
            raise StoreError(f"{what}: run_id {data['run_id']} != {run_id}")
        for needed in ("epoch", "block"):
            if needed not in data:
                raise StoreError(f"{what}: missing {needed!r}")
        index = data.get("block_index", data.get("index"))
        if index is None:
            raise StoreError(f"{what}: missing 'index' (the block's position)")
        row = {
            "run_id": run_id,
            "epoch": to_int(data["epoch"], f"{what} epoch", minimum=0),
            "block": to_name(data["block"], f"{what} block"),
            "block_index": to_int(index, f"{what} index", minimum=0),
        }
        row.update({k: to_float(data.get(k), f"{what} {k}") for k in DIAGNOSTIC_METRICS})
        clean[(row["epoch"], row["block"])] = row  # the last of duplicates wins
    return list(clean.values())
