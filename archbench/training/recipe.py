"""The training recipe (everything that defines how a net is trained) and what it builds.

A :class:`Recipe` is frozen and recorded with every run. :func:`build_optimizer` turns it into
SGD with one or two parameter groups, and :class:`LRSchedule` gives the learning rate of every
optimizer step: the schedule is a pure function of the global step, so milestones given as
fractions of training work for any epoch count and resuming needs only the step counter.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from archbench.errors import SpecError
from archbench.validation import _check_type as check_type
from archbench.validation import did_you_mean, is_positive_int

if TYPE_CHECKING:  # a Recipe is plain data: parsing a spec must not import torch
    import torch
    from torch import nn

Schedule = Literal["step", "cosine", "constant"]
Warmup = Literal["linear", "constant"]


@dataclass(frozen=True)
class Recipe:
    """How to train: SGD with momentum, a per-step learning-rate schedule, regularisation.

    * ``schedule``: ``step`` multiplies the rate by ``gamma`` at each of ``milestones``
      (fractions of all training steps; (0.5, 0.75) is the ResNet paper's 32k/48k of 64k),
      ``cosine`` anneals to zero over the steps after warm-up, ``constant`` keeps it.
    * warm-up over ``warmup_epochs`` (may be fractional; counted in steps): ``warmup="linear"``
      ramps from ``warmup_lr`` (default 0) to the scheduled rate (Goyal et al. 2017);
      ``warmup="constant"`` holds ``warmup_lr`` then jumps to ``lr`` (He et al. 2015 trained
      ResNet-110 at 0.01 for about one epoch, ~400 steps, before 0.1).
    * ``wd_on_norm_and_bias=False`` puts 1-D and scalar parameters (norm scales and shifts,
      biases, gates) in a group without weight decay.
    * ``amp``: bf16 autocast on CUDA (ignored elsewhere, with a warning); ``channels_last``:
      NHWC memory format for model and batches; ``compile``: ``torch.compile`` the model.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    wd_on_norm_and_bias: bool = True
    schedule: Schedule = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_lr: float | None = None
    warmup: Warmup = "linear"
    label_smoothing: float = 0.0
    amp: bool = False
    channels_last: bool = False
    compile: bool = False

    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first bad field and its allowed range."""

        def bad(field: str, allowed: str) -> SpecError:
            return SpecError(f"recipe: {field} must be {allowed}, got {getattr(self, field)!r}")

        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not is_positive_int(value):
                raise bad(name, "a positive integer")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "a finite number > 0")
        if not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "in [0, 1)")
        if self.nesterov and self.momentum == 0:
            raise SpecError("recipe: nesterov=True needs momentum > 0, got momentum 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise bad("weight_decay", "a finite number >= 0")
        if self.schedule not in ("step", "cosine", "constant"):
            raise bad("schedule", "one of 'step', 'cosine', 'constant'")
        ms = self.milestones
        if (
            not isinstance(ms, tuple)
            or any(isinstance(m, bool) or not isinstance(m, (int, float)) for m in ms)
            or any(not 0.0 < m < 1.0 for m in ms)
            or list(ms) != sorted(ms)
        ):
            raise bad("milestones", "increasing fractions of training in (0, 1)")
        if not 0.0 < self.gamma <= 1.0:
            raise bad("gamma", "in (0, 1]")
        if not (math.isfinite(self.warmup_epochs) and 0.0 <= self.warmup_epochs <= self.epochs):
            raise bad("warmup_epochs", f"in [0, epochs={self.epochs}]")
        if self.warmup_lr is not None and not (
            math.isfinite(self.warmup_lr) and self.warmup_lr >= 0
        ):
            raise bad("warmup_lr", "None or a finite number >= 0")
        if self.warmup not in ("linear", "constant"):
            raise bad("warmup", "one of 'linear', 'constant'")
        if self.warmup == "constant" and self.warmup_epochs > 0 and self.warmup_lr is None:
            raise SpecError("recipe: warmup='constant' needs warmup_lr (e.g. 0.01), got None")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", "in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``milestones`` as a list)."""
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """Build and validate a recipe; unknown keys and wrong types raise :class:`SpecError`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise SpecError(
                f"recipe: unknown field(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(fields))}" + did_you_mean(unknown, fields)
            )
        hints = typing.get_type_hints(cls)
        clean = {k: check_type("recipe", k, v, hints[k], "field") for k, v in data.items()}
        recipe = cls(**clean)
        recipe.validate()
        return recipe

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


# -- optimizer --------------------------------------------------------------------------------


def param_groups(net: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """One group with weight decay, or (``wd_on_norm_and_bias=False``) a ``decay`` group of
    weights with >= 2 dimensions and a ``no_decay`` group of 1-D/scalar parameters."""
    params = [p for p in net.parameters() if p.requires_grad]
    if recipe.wd_on_norm_and_bias:
        return [{"name": "all", "params": params, "weight_decay": recipe.weight_decay}]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [
        {"name": "decay", "params": decay, "weight_decay": recipe.weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(net: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """SGD with the recipe's momentum, Nesterov flag and weight decay (per group)."""
    import torch

    return torch.optim.SGD(
        param_groups(net, recipe),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )


# -- learning-rate schedule -------------------------------------------------------------------


class LRSchedule:
    """Learning rate per optimizer step for a recipe and ``steps_per_epoch``.

    ``lr_at(step)`` is pure (0-based global step); :meth:`apply` sets it on the optimizer and
    advances the counter, which is the whole of the state to checkpoint.
    """

    def __init__(self, recipe: Recipe, steps_per_epoch: int) -> None:
        if steps_per_epoch < 1:
            raise SpecError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.recipe = recipe
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = recipe.epochs * steps_per_epoch
        self.warmup_steps = round(recipe.warmup_epochs * steps_per_epoch)
        self.milestone_steps = tuple(round(m * self.total_steps) for m in recipe.milestones)
        self.step = 0

    def base_lr_at(self, step: int) -> float:
        """The schedule without warm-up."""
        r = self.recipe
        if r.schedule == "step":
            return r.lr * r.gamma ** sum(step >= m for m in self.milestone_steps)
        if r.schedule == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
            return 0.5 * r.lr * (1.0 + math.cos(math.pi * progress))
        return r.lr

    def lr_at(self, step: int) -> float:
        r = self.recipe
        target = self.base_lr_at(step)
        if step >= self.warmup_steps:
            return target
        start = r.warmup_lr if r.warmup_lr is not None else 0.0
        if r.warmup == "constant":
            return start
        # (step + 1): the first step already moves; the last warm-up step reaches the target.
        return start + (target - start) * (step + 1) / self.warmup_steps

    def apply(self, optimizer: torch.optim.Optimizer) -> float:
        """Set the rate of the next step on every group and advance; returns the rate."""
        lr = self.lr_at(self.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.step += 1
        return lr

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        if int(state["steps_per_epoch"]) != self.steps_per_epoch:
            raise SpecError(
                f"checkpoint was made with {state['steps_per_epoch']} steps per epoch, this run "
                f"has {self.steps_per_epoch} (different data size or batch size)"
            )
        self.step = int(state["step"])
