"""``--log tensorboard:DIR``: one TensorBoard run folder per archbench run.

Layout: ``DIR/<experiment>/<profile>/run<id>_<label>_seed<seed>`` (``DIR/train/<model>_seed<s>``
for ``archbench train``). Each holds the per-epoch scalars (``train_loss``, ``val_err``,
``test_err``, ``lr``, ``images_per_s``, ... at step = epoch), the config as JSON text
(``config``), and at the end the final metrics as ``final/<name>`` scalars plus the run's
hyperparameters and final metrics in the HPARAMS tab. Events are flushed after every epoch.

A run resumed from its checkpoint after epoch k writes into the same folder with
``purge_step=k+1``: TensorBoard drops whatever an earlier attempt logged after epoch k (a run
trained again from scratch replaces the earlier attempt's curves).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archbench.tracking.base import ExperimentLogger, TrackerError, flatten, run_name, safe_name


class TensorBoardLogger(ExperimentLogger):
    """TensorBoard event files (torch.utils.tensorboard), one folder per run."""

    modules = ("tensorboard",)
    install = "pip install 'archbench[tensorboard]'"

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.root = Path(target).expanduser()
        self.writer: Any = None
        self.config: dict[str, Any] = {}

    @classmethod
    def check_target(cls, target: str) -> None:
        path = Path(target).expanduser()
        if path.exists() and not path.is_dir():
            raise TrackerError(f"--log tensorboard:{target}: {target!r} is a file; give a folder")

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, config: Mapping[str, Any]) -> Path:
        """Where a run's events go."""
        experiment = safe_name(config.get("experiment") or "train")
        profile = config.get("profile")
        base = self.root / experiment
        if profile:
            base = base / safe_name(profile)
        return base / run_name(config)

    def start_run(self, config: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.finish_writer()
        self.config = dict(config)
        resumed = int(config.get("resumed_after_epoch") or 0)
        # purge_step: whatever an earlier attempt of this run logged after the epoch this one
        # resumes from (all of it, for a fresh start) is dropped by TensorBoard's readers.
        self.writer = SummaryWriter(log_dir=str(self.folder(config)), purge_step=resumed + 1)
        text = json.dumps(dict(config), indent=2, sort_keys=True, default=str)
        # Indented by four spaces: TensorBoard renders text as Markdown (a code block).
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)
        self.writer.flush()

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def finish_run(self, final: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        if self.writer is None:
            return
        step = int(final.get("epochs_done") or 0)
        numbers = {
            f"final/{k}": float(v)
            for k, v in final.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for name, value in numbers.items():
            self.writer.add_scalar(name, value, step)
        self.writer.add_text("status", str(final.get("status")), step)
        hp = {k: _hparam(v) for k, v in flatten(self.config).items()}
        hp["status"] = str(final.get("status"))
        exp, start, end = hparams(hp, numbers)
        for summary in (exp, start, end):
            self.writer.file_writer.add_summary(summary)
        self.finish_writer()

    def finish_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        self.finish_writer()


def _hparam(value: Any) -> int | float | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return "None" if value is None else json.dumps(value, default=str)
