"""What makes a training run bad, and how it is noticed: data that does not fit the net
(refused before training) and divergence (a non-finite loss, evaluation loss, parameter or
BatchNorm statistic, which ends the run as ``"diverged"`` with where it happened).

Kept apart from :mod:`archbench.training.train` (the loop) because the unfused loop and the
fused one (:mod:`archbench.training.fused`) share these checks: each ``_Run`` inherits
:class:`DivergenceChecks`, and both raise :class:`_Diverged`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from archbench.data import LoadedData
from archbench.errors import SpecError

CHECK_EVERY = 25  # steps between finiteness checks (each check synchronises the device)


def _check_data_fits(net: nn.Module, data: LoadedData) -> None:
    if len(data.train) == 0 or len(data.test) == 0:
        raise SpecError(
            f"dataset {data.info.name!r}: train and test splits must not be empty "
            f"(train {len(data.train)}, test {len(data.test)})"
        )
    spec = getattr(net, "spec", None)
    if spec is None:
        return
    info = data.info
    for what, model_value, data_value in (
        ("num_classes", spec.num_classes, info.num_classes),
        ("in_channels", spec.in_channels, info.channels),
    ):
        if model_value != data_value:
            raise SpecError(
                f"model {spec.name or 'net'!r} has {what}={model_value} but dataset "
                f"{info.name!r} has {data_value}; build the net for the dataset "
                f"(get_preset(..., num_classes=, in_channels=, input_size=))"
            )


class _Diverged(Exception):
    def __init__(self, where: dict[str, Any]) -> None:
        super().__init__(where)
        self.where = where


class DivergenceChecks:
    """The divergence checks of a training run (``_Run`` in :mod:`archbench.training.train`,
    its subclass): they read the run's ``net`` and LR ``schedule``."""

    net: nn.Module
    schedule: Any

    def _check_finite(self, losses: list[torch.Tensor], epoch: int, first_step: int) -> None:
        finite = torch.isfinite(torch.stack(losses))
        if bool(finite.all()):
            return
        i = int((~finite).nonzero()[0, 0])
        step = first_step + i
        raise _Diverged(
            {
                "epoch": epoch,
                "step": step,
                "epoch_step": step - (epoch - 1) * self.schedule.steps_per_epoch,
                "lr": self.schedule.lr_at(step),
                "loss": float(losses[i].item()),
            }
        )

    def _where(self, epoch: int, loss: float) -> dict[str, Any]:
        """``diverged_at`` for a blow-up found after the epoch's last step."""
        step = self.schedule.step - 1
        return {
            "epoch": epoch,
            "step": step,
            "epoch_step": step - (epoch - 1) * self.schedule.steps_per_epoch,
            "lr": self.schedule.lr_at(step),
            "loss": float(loss),
        }

    def _check_weights(self, epoch: int, train_loss: float) -> None:
        """Raise :class:`_Diverged` when a parameter or floating buffer (BatchNorm running
        statistics) is not finite after the epoch's steps."""
        tensors = [
            t for t in (*self.net.parameters(), *self.net.buffers()) if t.is_floating_point()
        ]
        if not tensors:
            return
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        if not bool(finite):
            raise _Diverged(
                self._where(epoch, math.nan if math.isfinite(train_loss) else train_loss)
            )
