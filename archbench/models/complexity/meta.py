"""Analytic counts (:func:`analytic`): fvcore's formulas applied by forward hooks on a
meta-device model, so no memory and a few milliseconds per spec (see the package docstring)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archbench.models.complexity.counts import (
    AnalyticCounts,
    StageCount,
    check_input_size,
    top_level_parts,
)
from archbench.models.net import NetSpec, build_net

log = logging.getLogger(__name__)

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def _module_cost(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> tuple[str, int, int]:
    """``(label, macs, acts)`` of one hooked module, with fvcore's formulas (see module doc)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        spatial = x.shape[2:] if module.transposed else out.shape[2:]
        macs = x.shape[0] * module.weight.numel() * math.prod(spatial)
        return "conv", macs, out.numel()
    if isinstance(module, nn.Linear):
        return "linear", x.numel() * module.out_features, out.numel()
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        affine = module.weight is not None
        training = module.training or module.running_mean is None
        per_element = (5 if affine else 4) if training else (2 if affine else 1)
        return "batch_norm", x.numel() * per_element, 0
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return "instance_norm", x.numel() * (5 if module.affine else 4), 0
    if isinstance(module, nn.GroupNorm):
        return "group_norm", x.numel() * (5 if module.affine else 4), 0
    if isinstance(module, nn.LayerNorm):
        return "layer_norm", x.numel() * (5 if module.elementwise_affine else 4), 0
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "adaptive_avg_pool2d", x.numel(), 0
    raise TypeError(type(module))  # only hooked types reach here


_COUNTED = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.AdaptiveAvgPool2d,
)


def _part_of(name: str) -> str:
    """``stem.conv`` -> ``stem``; ``stages.1.3.conv1`` -> ``stages.1.3``; ``head.fc`` -> ``head``"""
    bits = name.split(".")
    return ".".join(bits[:3]) if bits[0] == "stages" else bits[0]


def _identity(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return x


@dataclass
class _PartCount:
    params: int = 0
    trainable: int = 0
    macs: Counter[str] = dataclasses.field(default_factory=Counter)
    acts: Counter[str] = dataclasses.field(default_factory=Counter)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def scaled(self, k: int) -> _PartCount:
        return _PartCount(
            self.params * k,
            self.trainable * k,
            Counter({op: v * k for op, v in self.macs.items()}),
            Counter({op: v * k for op, v in self.acts.items()}),
            self.in_shape,
            self.out_shape,
        )


def _count_parts(spec: NetSpec, *, forward: bool) -> dict[str, _PartCount]:
    """Counts per part (``stem``, ``stages.i.j``, ``head``) of ``spec`` built on meta."""
    net = build_net(spec, device="meta").eval()
    parts: dict[str, _PartCount] = {}
    for name, _ in top_level_parts(net):
        if name.startswith("stages."):
            for j in range(len(net.stages[int(name.split(".")[1])])):
                parts[f"{name}.{j}"] = _PartCount()
        else:
            parts[name] = _PartCount()
    for pname, p in net.named_parameters():
        part = parts.setdefault(_part_of(pname), _PartCount())
        part.params += p.numel()
        part.trainable += p.numel() if p.requires_grad else 0
    if not forward:
        return parts

    def cost_hook(key: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            label, macs, acts = _module_cost(module, args[0], out)
            parts[key].macs[label] += macs
            parts[key].acts[label] += acts

        return hook

    def shape_hook(key: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            parts[key].in_shape = tuple(args[0].shape) if args else ()
            parts[key].out_shape = tuple(out.shape)

        return hook

    for mname, module in net.named_modules():
        if isinstance(module, _COUNTED):
            module.register_forward_hook(cost_hook(_part_of(mname)))
            if isinstance(module, _NORMS):
                # Meta-device norms run Python decompositions (slow); the shape is unchanged.
                module.forward = _identity  # type: ignore[method-assign]
        if mname in parts:
            module.register_forward_hook(shape_hook(mname))
    x = torch.empty(1, spec.in_channels, spec.input_size, spec.input_size, device="meta")
    with torch.no_grad():
        net(x)
    return parts


def _count_spec(spec: NetSpec, *, forward: bool) -> dict[str, _PartCount]:
    """Like :func:`_count_parts` on the full spec, building at most two blocks per stage."""
    if all(stage.depth <= 2 for stage in spec.stages):
        return _count_parts(spec, forward=forward)
    short = spec.replace(
        stages=tuple(dataclasses.replace(s, depth=min(s.depth, 2)) for s in spec.stages)
    )
    parts = _count_parts(short, forward=forward)
    full: dict[str, _PartCount] = {}
    for key, part in parts.items():
        if not key.startswith("stages."):
            full[key] = part
            continue
        _, i, j = key.split(".")
        stage = spec.stages[int(i)]
        if j == "0":
            full[key] = part
        elif forward and part.in_shape != part.out_shape:
            # A stride-1 block that reshapes its input: its copies would differ. Count all.
            log.debug("stage %s block 1 changes shape; counting the full net", i)
            return _count_parts(spec, forward=forward)
        else:
            # Blocks 1..depth-1 have the same arguments and input shape as block 1.
            full[f"stages.{i}.1+"] = part.scaled(stage.depth - 1)
    return full


_CACHE: OrderedDict[tuple[str, bool], AnalyticCounts] = OrderedDict()
_CACHE_SIZE = 4096


def analytic(spec: NetSpec, input_size: int | None = None, *, macs: bool = True) -> AnalyticCounts:
    """Analytic counts of ``spec`` on the meta device (cached by the spec's canonical JSON).

    ``macs=False`` skips the forward pass (params only; ``macs``/``acts`` are then 0).
    """
    if input_size is not None:
        spec = spec.replace(input_size=input_size)
    check_input_size(spec.input_size)
    key = (spec.canonical_json(), macs)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    parts = _count_spec(spec, forward=macs)
    result = _summarise(spec, parts)
    _CACHE[key] = result
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def _summarise(spec: NetSpec, parts: Mapping[str, _PartCount]) -> AnalyticCounts:
    macs: Counter[str] = Counter()
    acts: Counter[str] = Counter()
    for part in parts.values():
        macs.update(part.macs)
        acts.update(part.acts)
    names = ["stem", *(f"stages.{i}" for i in range(len(spec.stages))), "head"]
    stages = []
    for name in names:
        members = [p for k, p in parts.items() if k == name or k.startswith(name + ".")]
        last = members[-1].out_shape if members else ()
        stages.append(
            StageCount(
                name,
                sum(p.params for p in members),
                sum(sum(p.macs.values()) for p in members),
                sum(sum(p.acts.values()) for p in members),
                last,
            )
        )
    return AnalyticCounts(
        params=sum(p.params for p in parts.values()),
        trainable_params=sum(p.trainable for p in parts.values()),
        macs=sum(macs.values()),
        acts=sum(acts.values()),
        input_size=spec.input_size,
        macs_by_operator={k: v for k, v in macs.items() if v},
        acts_by_operator={k: v for k, v in acts.items() if v},
        stages=tuple(stages),
    )


def analytic_counts(spec: NetSpec, input_size: int | None = None) -> tuple[int, int]:
    """``(params, macs)`` of ``spec`` from the analytic counter (fast; see :func:`analytic`)."""
    counts = analytic(spec, input_size)
    return counts.params, counts.macs


def analytic_params(spec: NetSpec) -> int:
    """Parameter count of ``spec`` without running a forward pass (fastest)."""
    return analytic(spec, macs=False).params


def clear_cache() -> None:
    """Forget cached analytic counts (for benchmarks)."""
    _CACHE.clear()
