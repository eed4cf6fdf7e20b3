"""What the runner tells experiment trackers about a run, and where it keeps a run's weights.

Kept apart from :mod:`archbench.runner.objective` so that the objective's hooks stay a few
lines: one tracked run around each seed's training, one weights file after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archbench.tracking.base import safe_name


def track_config(
    spec: Any,
    plan: Any,
    *,
    seed: int,
    run_id: int,
    resumed_after_epoch: int,
    device: Any,
) -> dict[str, Any]:
    """The run as trackers see it: identity, architecture, cost, recipe, data."""
    variant, cost = plan.variant, plan.cost
    budget = variant.budget
    return {
        "experiment": spec.name,
        "profile": spec.profile,
        "study_name": spec.study_name,
        "run_id": run_id,
        "run_key": f"{spec.name}:{spec.profile}:{plan.ckey}:seed{seed}",
        "label": variant.label,
        "seed": seed,
        "config_key": plan.ckey,
        "spec_hash": plan.spec_hash,
        "family": variant.family or variant.config.get("preset"),
        "depth": variant.depth,
        "width": budget.width if budget else variant.config.get("width"),
        "params": cost.params,
        "macs": cost.macs,
        "budget_error": budget.rel_error if budget else None,
        "hyperparameters": dict(plan.hyperparameters),
        "recipe": plan.recipe.to_dict(),
        "dataset": spec.dataset.name,
        "device": str(device),
        "resumed_after_epoch": resumed_after_epoch,
    }


def weights_file(results_dir: Path, study_name: str, config_key: str, seed: int) -> Path:
    """``results_dir/weights/<study>/<config_key>/seed<seed>.pt``."""
    return (
        results_dir / "weights" / safe_name(study_name) / safe_name(config_key) / f"seed{seed}.pt"
    )
