"""What the counters return: per-part and whole-net counts, and their JSON form.

Shared by :mod:`.tracing` (fvcore) and :mod:`.meta` (analytic); see the package docstring
for the units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from archbench.errors import SpecError
from archbench.models.net import Net
from archbench.validation import is_positive_int

COMPLEXITY_SCHEMA = "archbench.complexity/1"
COUNTER_NOTE = (
    "fvcore FlopCountAnalysis/ActivationCountAnalysis, eval mode, batch 1; "
    "1 MAC = 1 fused multiply-add (fvcore's 'flop'); flops = 2 * macs"
)
ANALYTIC_NOTE = (
    "analytic: forward hooks on conv/linear/norm/adaptive-pool modules of a meta-device "
    "model, fvcore's formulas, eval mode, batch 1; flops = 2 * macs"
)


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageCount:
    """Counts of one top-level part of a :class:`~archbench.models.net.Net`.

    ``name`` is ``"stem"``, ``"stages.<i>"`` or ``"head"``; ``output_shape`` includes the
    batch dimension (1).
    """

    name: str
    params: int
    macs: int
    acts: int
    output_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "macs": self.macs,
            "acts": self.acts,
            "output_shape": list(self.output_shape),
        }


@dataclass(frozen=True)
class Complexity:
    """What :func:`measure` found (fvcore, eval mode, batch 1).

    ``macs`` is fvcore's total (conv, linear, batch norm, adaptive pooling);
    ``macs_by_operator`` splits it by fvcore's operator labels; ``uncounted_ops`` maps each
    operator fvcore saw but has no formula for (``aten::add``, ``aten::pad``, ...) to how many
    times it ran, so a partial count is never mistaken for a full one.
    """

    name: str
    spec_hash: str
    params: int
    trainable_params: int
    macs: int
    acts: int
    input_size: int
    in_channels: int
    num_classes: int
    macs_by_operator: Mapping[str, int] = field(default_factory=dict, hash=False)
    acts_by_operator: Mapping[str, int] = field(default_factory=dict, hash=False)
    uncounted_ops: Mapping[str, int] = field(default_factory=dict, hash=False)
    stages: tuple[StageCount, ...] = ()
    batch_size: int = 1

    @property
    def flops(self) -> int:
        """FLOPs counted as 2 per multiply-add (``2 * macs``)."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, schema ``archbench.complexity/1``.

        Keys (stable; new keys may be added, none renamed or removed within ``/1``):
        ``schema``, ``name``, ``spec_hash``, ``batch_size`` (always 1), ``input_size``,
        ``in_channels``, ``num_classes``, ``params``, ``trainable_params``, ``macs``,
        ``flops`` (= 2 * macs), ``acts``, ``macs_by_operator`` {label: int},
        ``acts_by_operator`` {label: int}, ``uncounted_ops`` {aten op: times seen},
        ``stages`` [{name, params, macs, acts, output_shape}], ``counter`` (how it was counted).
        All counts are integers.
        """
        return {
            "schema": COMPLEXITY_SCHEMA,
            "name": self.name,
            "spec_hash": self.spec_hash,
            "batch_size": self.batch_size,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "flops": self.flops,
            "acts": self.acts,
            "macs_by_operator": dict(sorted(self.macs_by_operator.items())),
            "acts_by_operator": dict(sorted(self.acts_by_operator.items())),
            "uncounted_ops": dict(sorted(self.uncounted_ops.items())),
            "stages": [s.to_dict() for s in self.stages],
            "counter": COUNTER_NOTE,
        }


@dataclass(frozen=True)
class AnalyticCounts:
    """What :func:`analytic` found (meta device, fvcore's formulas, eval mode, batch 1)."""

    params: int
    trainable_params: int
    macs: int
    acts: int
    input_size: int
    macs_by_operator: Mapping[str, int] = field(default_factory=dict, hash=False)
    acts_by_operator: Mapping[str, int] = field(default_factory=dict, hash=False)
    stages: tuple[StageCount, ...] = ()

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "flops": self.flops,
            "acts": self.acts,
            "input_size": self.input_size,
            "macs_by_operator": dict(sorted(self.macs_by_operator.items())),
            "acts_by_operator": dict(sorted(self.acts_by_operator.items())),
            "stages": [s.to_dict() for s in self.stages],
            "counter": ANALYTIC_NOTE,
        }


def top_level_parts(net: Net) -> list[tuple[str, nn.Module]]:
    """``[("stem", ...), ("stages.0", ...), ..., ("head", ...)]``: the pieces a Net runs in turn."""
    parts: list[tuple[str, nn.Module]] = [("stem", net.stem)]
    parts += [(f"stages.{i}", stage) for i, stage in enumerate(net.stages)]
    parts.append(("head", net.head))
    return parts


def check_input_size(input_size: Any) -> None:
    if not is_positive_int(input_size):
        raise SpecError(f"input size must be a positive integer, got {input_size!r}")
