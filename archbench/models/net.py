"""``NetSpec`` (stem, stages, head) and the one ``Net`` module built from it.

Every architecture archbench knows is a ``NetSpec``: presets are data, not classes. A spec is
frozen, serialises to a canonical JSON (sorted keys, no whitespace, no ``name``), and its
hash of that JSON is the variant's identity in the results store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archbench.canonical import canonical_json, text_hash
from archbench.errors import SpecError
from archbench.models.spec_bounds import check_bounds, check_stage_count, read_json_bounded
from archbench.registry import BLOCKS, HEADS, STEMS
from archbench.validation import is_positive_int


def _params(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(value or {}).items()}


def _stage_params(block: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stage's params as they define the net: those written, plus every param the block's
    ``Params`` lists in ``PINNED`` at its default when not written. A block whose default
    changed the net it builds pins that param, so the new form gets a new spec hash (and
    config key) instead of sharing the old form's stored runs and weights."""
    params = _params(value)
    if block not in BLOCKS:  # an unknown block fails where the net is built
        return params
    params_cls = getattr(BLOCKS.get(block), "Params", None)
    pinned = getattr(params_cls, "PINNED", ())
    if pinned:
        fields = {f.name: f for f in dataclasses.fields(params_cls)}
        for name in pinned:
            params.setdefault(name, fields[name].default)
    return params


@dataclass(frozen=True)
class StemSpec:
    """The stem: a registered stem ``kind`` with output width ``width``."""

    kind: str = "cifar"
    width: int = 16
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageSpec:
    """``depth`` blocks of type ``block``, all ``width`` channels wide; the first has ``stride``."""

    block: str
    depth: int
    width: int
    stride: int = 1
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeadSpec:
    """The classifier head: a registered head ``kind``."""

    kind: str = "linear"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NetSpec:
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec = HeadSpec()
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    zero_init_last: bool = False
    name: str = ""  # human-readable; not part of the identity

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stem": {
                "kind": self.stem.kind,
                "width": self.stem.width,
                "params": _params(self.stem.params),
            },
            "stages": [
                {
                    "block": s.block,
                    "depth": s.depth,
                    "width": s.width,
                    "stride": s.stride,
                    "params": _stage_params(s.block, s.params),
                }
                for s in self.stages
            ],
            "head": {"kind": self.head.kind, "params": _params(self.head.params)},
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "zero_init_last": self.zero_init_last,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetSpec:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SpecError(f"net spec: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        check_stage_count(data.get("stages"))
        try:
            stem = StemSpec(**data.get("stem", {}))
            stages = tuple(StageSpec(**s) for s in data["stages"])
            head = HeadSpec(**data.get("head", {}))
        except KeyError as exc:
            raise SpecError(f"net spec: missing key {exc}") from None
        except TypeError as exc:
            raise SpecError(f"net spec: {exc}") from None
        rest = {k: v for k, v in data.items() if k not in ("stem", "stages", "head")}
        spec = cls(stem=stem, stages=stages, head=head, **rest)
        check_bounds(spec)
        return spec

    def canonical_json(self) -> str:
        """Stable JSON of everything that defines the architecture (not its name)."""
        data = self.to_dict()
        del data["name"]
        return canonical_json(data)

    def spec_hash(self) -> str:
        return text_hash(self.canonical_json())

    def replace(self, **changes: Any) -> NetSpec:
        return dataclasses.replace(self, **changes)

    @property
    def depth(self) -> int:
        """Number of blocks (not layers; presets carry their paper depth in the name)."""
        return sum(s.depth for s in self.stages)

    def validate(self) -> None:
        """Check names, sizes and strides without allocating a model.

        Blocks after a stage's second have the same arguments and input size as the second, so
        two per stage are built (a 60,000-block net takes minutes to build even on meta),
        unless a stride-1 block changes the feature map (then every block is built). Sizes
        beyond any real net's (:mod:`archbench.models.spec_bounds`) are refused first.
        """
        check_bounds(self)
        short = self.replace(
            stages=tuple(
                dataclasses.replace(s, depth=2) if _is_int(s.depth) and s.depth > 2 else s
                for s in self.stages
            )
        )
        net = build_net(short, device="meta")
        if short == self:
            return
        size = net.stem.output_size(self.input_size)
        for stage, blocks in zip(self.stages, net.stages, strict=True):
            size = blocks[0].output_size(size)
            if len(blocks) > 1 and blocks[1].output_size(size) != size and stage.depth > 2:
                build_net(self, device="meta")  # the copies differ: check them all
                return
            size = blocks[-1].output_size(size) if len(blocks) > 1 else size


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_spec_file(name: str) -> bool:
    """Whether a model argument names a NetSpec JSON file rather than a preset."""
    from pathlib import Path

    return name.endswith(".json") or Path(name).is_file()


def read_spec_file(path: str) -> NetSpec:
    """A NetSpec from a JSON file: the spec itself (``NetSpec.to_dict``), or the output of
    ``archbench describe --json`` or ``archbench train --json``, which carry it."""
    data = read_json_bounded(path)
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and "stages" not in data:
        data = data["model"]  # a train result
    if isinstance(data, dict) and isinstance(data.get("spec"), dict) and "stages" not in data:
        data = data["spec"]  # a describe result
    if not isinstance(data, dict):
        raise SpecError(f"spec file {path!r}: expected a JSON object (a NetSpec)")
    return NetSpec.from_dict(data)


def _check_positive(what: str, value: Any) -> None:
    if not is_positive_int(value):
        raise SpecError(f"{what} must be a positive integer, got {value!r}")


class Net(nn.Module):
    """stem -> stages (``nn.Sequential`` of blocks) -> head, built from a :class:`NetSpec`."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        check_bounds(spec)
        for what in ("num_classes", "in_channels", "input_size"):
            _check_positive(f"net spec: {what}", getattr(spec, what))
        if not spec.stages:
            raise SpecError("net spec: at least one stage is required")
        self.spec = spec
        _check_positive("stem width", spec.stem.width)
        self.stem = STEMS.get(spec.stem.kind)(spec.in_channels, spec.stem.width, **spec.stem.params)
        size = self.stem.output_size(spec.input_size)
        if size < 1:
            raise SpecError(
                f"input size {spec.input_size} is too small for stem {spec.stem.kind!r}"
            )
        width = spec.stem.width
        stages = []
        for i, stage in enumerate(spec.stages):
            where = f"stage {i} ({stage.block})"
            _check_positive(f"{where}: depth", stage.depth)
            _check_positive(f"{where}: width", stage.width)
            _check_positive(f"{where}: stride", stage.stride)
            block_cls = BLOCKS.get(stage.block)
            blocks = []
            for j in range(stage.depth):
                stride = stage.stride if j == 0 else 1
                block = block_cls(width, stage.width, stride, **stage.params)
                new_size = block.output_size(size)
                # size / stride < 1: padding would keep one pixel, but the stride means nothing.
                if new_size < 1 or size < stride:
                    raise SpecError(
                        f"{where}: stride {stride} shrinks the {size}x{size} feature map below "
                        f"one pixel (input size {spec.input_size}); use a larger input or fewer "
                        "strided stages"
                    )
                size, width = new_size, stage.width
                blocks.append(block)
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = HEADS.get(spec.head.kind)(width, spec.num_classes, **spec.head.params)
        self.feature_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def blocks(self) -> Iterator[tuple[str, nn.Module]]:
        """``("stages.i.j", block)`` for every block, input to output."""
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                yield f"stages.{i}.{j}", block

    def init_weights(self) -> None:
        """He (fan-out) init for convs, BN to (1, 0), as the ResNet papers and torchvision."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Components that need a special init (gates, scales) expose ``reset_special()``.
        for m in self.modules():
            hook = getattr(m, "reset_special", None)
            if callable(hook):
                hook()
        if self.spec.zero_init_last:
            for _, block in self.blocks():
                hook = getattr(block, "zero_init_last", None)
                if callable(hook):
                    hook()


def build_net(spec: NetSpec, device: str | torch.device | None = None) -> Net:
    """Build and initialise a :class:`Net`; ``device="meta"`` builds without memory."""
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            return Net(spec)
    net = Net(spec)
    net.init_weights()
    return net.to(device) if device is not None else net
