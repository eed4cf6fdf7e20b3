"""Experiment trackers: every run's config, per-epoch metrics and final results logged to
TensorBoard, MLflow or a plugin's tracker (``--log KIND:TARGET``).

:mod:`.base` is the interface (:class:`ExperimentLogger`) and the ``--log`` parser,
:mod:`.fanout` runs several trackers with their errors kept from the training, and one module
per backend (:mod:`.tensorboard_logger`, :mod:`.mlflow_logger`) implements it. Trackers are
registered in :data:`archbench.registry.LOGGERS`; plugins add theirs from an
``archbench.loggers`` entry point. Nothing here imports torch, TensorBoard or MLflow until a
run is logged.
"""

from archbench.tracking.base import (
    ExperimentLogger,
    LogTarget,
    TrackerError,
    parse_target,
    parse_targets,
)
from archbench.tracking.fanout import TrackedRun, Trackers, epoch_values

__all__ = [
    "ExperimentLogger",
    "LogTarget",
    "TrackedRun",
    "TrackerError",
    "Trackers",
    "epoch_values",
    "parse_target",
    "parse_targets",
]
