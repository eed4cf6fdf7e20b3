"""What a training run returns: metrics per epoch and the run's result, with their JSON form."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from archbench.training.diagnostics import BlockDiagnostics
from archbench.training.recipe import Recipe

RESULT_SCHEMA = "archbench.train/1"


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch. Errors are fractions (0.05 = 5 %); ``epoch`` counts from 1.

    ``train_loss``/``train_err``: running mean over the epoch's augmented training batches
    (train mode, the training objective including label smoothing; no extra pass).
    ``val_*``/``test_*``: eval mode, no gradients, plain cross-entropy; top-5 means top-k with
    k = min(5, classes). ``lr``: the rate of the epoch's last step. ``epoch_time_s``: training,
    evaluation and diagnostics (not the checkpoint write); ``train_time_s`` and
    ``images_per_s``: training steps only. ``peak_mem_mb``: CUDA max allocated over the epoch;
    ``None`` on CPU and MPS (no reliable peak there).
    """

    epoch: int
    lr: float
    train_loss: float
    train_err: float
    val_loss: float | None
    val_err: float | None
    val_top5_err: float | None
    test_loss: float
    test_err: float
    test_top5_err: float
    epoch_time_s: float
    train_time_s: float
    images_per_s: float
    peak_mem_mb: float | None


@dataclass
class TrainResult:
    """What a training run produced. ``final`` is the last completed epoch (``None`` when the
    run diverged during its first epoch); ``diverged_at`` holds epoch, step (0-based global
    optimizer step), lr and loss of the first non-finite loss."""

    status: Literal["completed", "diverged", "pruned"]
    epochs: list[EpochMetrics]
    diagnostics: list[BlockDiagnostics]
    final: EpochMetrics | None
    diverged_at: dict[str, Any] | None
    wall_time_s: float
    device: str
    env: dict[str, Any]
    recipe: Recipe = field(default_factory=Recipe)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (schema ``archbench.train/1``); non-finite floats become strings."""
        return _json_safe(
            {
                "schema": RESULT_SCHEMA,
                "status": self.status,
                "seed": self.seed,
                "recipe": self.recipe.to_dict(),
                "epochs": [dataclasses.asdict(m) for m in self.epochs],
                "final": dataclasses.asdict(self.final) if self.final else None,
                "diverged_at": self.diverged_at,
                "diagnostics": [dataclasses.asdict(d) for d in self.diagnostics],
                "wall_time_s": self.wall_time_s,
                "device": self.device,
                "env": self.env,
            }
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
