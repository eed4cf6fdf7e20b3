"""Families (parametric architectures) and presets (published points in them).

A **family** turns ``(depth, width, **params)`` into a :class:`~archbench.models.net.NetSpec`; the
budget solver varies its ``width`` (or ``depth``) to meet a parameter or MAC target. What
``width`` means is the family's to say (usually the first stage's width) and is shown in
listings. A **preset** is a named ``NetSpec``: data, not a class. Generic names such as
``resnet<6n+2>`` or ``wrn_<d>_<k>`` resolve through patterns.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archbench.errors import SpecError, UnknownNameError
from archbench.models.net import NetSpec
from archbench.registry import FAMILIES, PRESETS
from archbench.validation import is_positive_int

# -- depth rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearDepth:
    """Depth ``= per_block * blocks_per_stage * stages + extra`` (e.g. 6n+2: 2 layers x 3 stages)."""

    per_block: int  # weighted layers per block
    stages: int
    extra: int  # stem conv + classifier, usually 2

    @property
    def rule(self) -> str:
        return f"{self.per_block * self.stages}n+{self.extra}"

    def blocks_per_stage(self, depth: int, what: str) -> int:
        step = self.per_block * self.stages
        n, rem = divmod(depth - self.extra, step)
        if isinstance(depth, bool) or not isinstance(depth, int) or rem or n < 1:
            raise SpecError(
                f"{what}: depth must be {self.rule} with n >= 1 "
                f"(e.g. {', '.join(str(step * k + self.extra) for k in (1, 2, 3, 9))}), got {depth!r}"
            )
        return n

    def valid_depths(self, lo: int, hi: int) -> list[int]:
        step = self.per_block * self.stages
        return [d for d in range(self.extra + step, hi + 1, step) if d >= lo]


@dataclass(frozen=True)
class TableDepth:
    """Depths from a fixed table of blocks per stage (ImageNet ResNets)."""

    table: dict[int, tuple[int, ...]]

    @property
    def rule(self) -> str:
        return "one of " + ", ".join(map(str, sorted(self.table)))

    def layout(self, depth: int, what: str) -> tuple[int, ...]:
        if depth not in self.table:
            raise SpecError(f"{what}: depth must be {self.rule}, got {depth!r}")
        return self.table[depth]

    def valid_depths(self, lo: int, hi: int) -> list[int]:
        return [d for d in sorted(self.table) if lo <= d <= hi]


# -- families ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A parametric architecture: ``build(depth, width, **params) -> NetSpec``."""

    name: str
    build_fn: Callable[..., NetSpec]
    description: str
    depth: LinearDepth | TableDepth
    default_depth: int
    default_width: int
    width_meaning: str = "width of the first stage"
    width_step: Callable[[dict[str, Any]], int] = field(default=lambda params: 1)
    params_doc: str = ""

    def build(
        self,
        depth: int | None = None,
        width: int | None = None,
        *,
        num_classes: int | None = None,
        in_channels: int | None = None,
        input_size: int | None = None,
        **params: Any,
    ) -> NetSpec:
        """The family's spec; data-shape arguments left as None keep the family's defaults."""
        depth = self.default_depth if depth is None else depth
        width = self.default_width if width is None else width
        if not is_positive_int(width):
            raise SpecError(
                f"family {self.name!r}: width must be a positive integer, got {width!r}"
            )
        step = self.width_step(params)
        if width % step:
            raise SpecError(
                f"family {self.name!r}: width {width} must be a multiple of {step} "
                f"(params {params})"
            )
        self._check_params(params)
        spec = self.build_fn(depth, width, **params)
        shape = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
        return spec.replace(**{k: v for k, v in shape.items() if v is not None})

    def _check_params(self, params: dict[str, Any]) -> None:
        """Unknown keyword params fail with the allowed names, not a bare TypeError."""
        signature = inspect.signature(self.build_fn)
        if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            return  # the family forwards params to a block, which validates them itself
        allowed = [n for n in signature.parameters if n not in ("depth", "width")]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise SpecError(
                f"family {self.name!r}: unknown param {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(allowed) or 'none'}"
            )


def register_family(
    name: str,
    *,
    description: str,
    depth: LinearDepth | TableDepth,
    default_depth: int,
    default_width: int,
    width_meaning: str = "width of the first stage",
    width_step: Callable[[dict[str, Any]], int] | None = None,
    params_doc: str = "",
) -> Callable[[Callable[..., NetSpec]], Callable[..., NetSpec]]:
    """Decorator registering ``fn(depth, width, **params) -> NetSpec`` as a family."""

    def decorate(fn: Callable[..., NetSpec]) -> Callable[..., NetSpec]:
        family = Family(
            name,
            fn,
            description,
            depth,
            default_depth,
            default_width,
            width_meaning,
            width_step or (lambda params: 1),
            params_doc,
        )
        FAMILIES.add(name, family, description=description)
        return fn

    return decorate


def get_family(name: str) -> Family:
    return FAMILIES.get(name)


# -- presets ----------------------------------------------------------------------------------

_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], NetSpec], str]] = []


def register_preset(name: str, spec: NetSpec, *, description: str = "", **meta: Any) -> None:
    """Register a named preset; ``meta`` may carry ``paper_params`` (published count),
    ``depth`` (the depth its family or paper counts: 20 for ``resnet20``; see
    :func:`preset_depth`) etc."""
    PRESETS.add(name, spec.replace(name=name), description=description, **meta)


def register_pattern(
    pattern: str, factory: Callable[[re.Match[str]], NetSpec], example: str
) -> None:
    """Resolve names matching ``pattern`` (full match) with ``factory(match)``; the pattern's
    first group is the depth (:func:`preset_depth`)."""
    _PATTERNS.append((re.compile(pattern), factory, example))


def pattern_examples() -> list[str]:
    _ = PRESETS.names()  # make sure built-ins are loaded
    return [example for _, _, example in _PATTERNS]


def preset_depth(name: str) -> int | None:
    """The depth a preset stands for (``resnet20``: 20, ``wrn_28_10``: 28), as its family
    counts it; ``None`` for a preset registered without one. ``NetSpec.depth`` counts blocks."""
    if name in PRESETS:
        depth = PRESETS.entry(name).meta.get("depth")
        return None if depth is None else int(depth)
    for pattern, _, _ in _PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            return int(match.group(1))
    return None


def get_preset(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
) -> NetSpec:
    """The spec of a named preset or generic name, with optional data-shape overrides."""
    if name in PRESETS:
        spec = PRESETS.get(name)
    else:
        for pattern, factory, _ in _PATTERNS:
            match = pattern.fullmatch(name)
            if match:
                spec = factory(match).replace(name=name)
                break
        else:
            examples = ", ".join(pattern_examples())
            raise UnknownNameError(f"{PRESETS.unknown_message(name)}; generic forms: {examples}")
    changes = {
        k: v
        for k, v in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("input_size", input_size),
        )
        if v is not None
    }
    return spec.replace(**changes) if changes else spec


_PRESET_MODULES = [
    "resnet",
    "inception_resnet",
    "vgg",
    "preact",
    "wide",
    "resnext",
]

for _module in _PRESET_MODULES:
    importlib.import_module(f"archbench.models.presets.{_module}")
