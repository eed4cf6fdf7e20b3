"""The built-in trackers: importing this module registers them in ``LOGGERS``."""

from __future__ import annotations

from archbench.registry import LOGGERS
from archbench.tracking.mlflow_logger import MLflowLogger
from archbench.tracking.tensorboard_logger import TensorBoardLogger

LOGGERS.add(
    "tensorboard", TensorBoardLogger, description="TensorBoard event files: tensorboard:DIR"
)
LOGGERS.add("mlflow", MLflowLogger, description="MLflow runs: mlflow:TRACKING_URI")
