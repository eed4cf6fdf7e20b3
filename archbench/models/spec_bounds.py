"""Bounds on a NetSpec, checked before anything is built or traced.

A NetSpec may come from a JSON file anyone wrote. Every check here costs time proportional to
the size of the spec as written (never to the net it describes), so a hostile file (100k-deep
nesting, ``num_classes: 10**400``, 100,000 stages, a 60,000-block variant) is refused in one
line and in milliseconds, instead of a RecursionError, a C++ trace or minutes of building.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archbench.errors import SpecError
from archbench.validation import check_tree, too_long_int

#: Bytes of a NetSpec JSON file (a 600-block ResNet-1202 written out is ~100 KB).
MAX_SPEC_BYTES = 1_000_000
#: Nesting levels of a NetSpec document (a describe/train result wraps the spec in two).
MAX_SPEC_NESTING = 12
MAX_STAGES = 64
#: Blocks in all (ResNet-1202 has 600, PreAct ResNet-1001 333).
MAX_BLOCKS = 2_000
#: The largest value of each integer field.
LIMITS = {
    "num_classes": 1_000_000,
    "in_channels": 1_024,
    "input_size": 8_192,
    "width": 1_048_576,  # the budget solver tries base widths up to 65,536 (x4 in later stages)
    "stride": 64,
    "depth": MAX_BLOCKS,
}
#: Any other integer in block, stem or head params (group counts, kernel sizes, ...).
MAX_PARAM_INT = 2**31 - 1


def read_json_bounded(path: str | Path) -> Any:
    """``json.loads`` of a NetSpec file whose size and nesting are bounded first."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} does not exist") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            f"spec file {str(path)!r} is larger than {MAX_SPEC_BYTES:,} bytes; a NetSpec is a "
            "few kilobytes"
        )
    _check_nesting(raw, str(path))
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"spec file {str(path)!r} is not valid JSON: {exc}") from None
    except RecursionError:  # guarded above; kept for safety
        raise SpecError(f"spec file {str(path)!r} nests too deeply") from None
    except ValueError as exc:  # Python's limit on int parsing (sys.get_int_max_str_digits)
        raise SpecError(f"spec file {str(path)!r} holds {too_long_int(exc)}") from None
    check_tree(data, f"spec file {str(path)!r}", max_depth=MAX_SPEC_NESTING)
    return data


def _check_nesting(raw: bytes, where: str) -> None:
    """Refuse deep nesting by counting brackets outside strings, before the parser recurses."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_SPEC_NESTING:
                    raise SpecError(
                        f"spec file {where!r} nests deeper than {MAX_SPEC_NESTING} levels; a "
                        "NetSpec is a few levels deep"
                    )
        elif byte in (0x5D, 0x7D):
            depth -= 1


def check_stage_count(stages: Any) -> None:
    """Before one StageSpec is made from a document's ``stages`` list."""
    if isinstance(stages, list | tuple) and len(stages) > MAX_STAGES:
        raise SpecError(
            f"net spec: {len(stages):,} stages, at most {MAX_STAGES} are allowed (a ResNet has 3 or 4)"
        )


def _check_int(what: str, value: Any, limit: int) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        shown = f"{value:,}" if value < 10**30 else f"a {len(str(value))}-digit number"
        raise SpecError(f"net spec: {what} is {shown}, at most {limit:,} is allowed")


def _check_params(what: str, params: Any) -> None:
    if not isinstance(params, Mapping):
        raise SpecError(f"net spec: {what} params must be a mapping, got {type(params).__name__}")
    stack: list[tuple[str, Any]] = [(f"{what} params.{k}", v) for k, v in params.items()]
    while stack:
        name, value = stack.pop()
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            if abs(value) > MAX_PARAM_INT:
                _check_int(name, abs(value), MAX_PARAM_INT)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise SpecError(f"net spec: {name} is {value}, a finite number is required")
        elif isinstance(value, Mapping):
            stack += [(f"{name}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(f"{name}[{i}]", v) for i, v in enumerate(value)]


def check_bounds(spec: Any) -> None:
    """Refuse a NetSpec whose sizes no real net has, in time linear in the spec as written."""
    try:
        _check_bounds(spec)
    except SpecError as exc:
        name = getattr(spec, "name", "")
        if not name or not isinstance(name, str) or len(name) > 100:
            raise
        raise SpecError(str(exc).replace("net spec:", f"net spec {name!r}:", 1)) from None


def _check_bounds(spec: Any) -> None:
    check_stage_count(spec.stages)
    for key in ("num_classes", "in_channels", "input_size"):
        _check_int(key, getattr(spec, key), LIMITS[key])
    _check_int("stem width", spec.stem.width, LIMITS["width"])
    _check_params("stem", spec.stem.params)
    _check_params("head", spec.head.params)
    total = 0
    for i, stage in enumerate(spec.stages):
        for key in ("depth", "width", "stride"):
            _check_int(f"stage {i} {key}", getattr(stage, key), LIMITS[key])
        _check_params(f"stage {i}", stage.params)
        if isinstance(stage.depth, int) and stage.depth > 0:
            total += stage.depth
    if total > MAX_BLOCKS:
        raise SpecError(
            f"net spec: {total:,} blocks in all, at most {MAX_BLOCKS:,} are allowed "
            "(ResNet-1202 has 600)"
        )
