"""Budget matching: the width (or depth) at which a family meets a params or MACs target.

Counts come from the fast analytic counter (:func:`archbench.models.complexity.analytic`, cached by
spec), which the tests cross-check against fvcore. Widths are snapped to multiples of the
family's ``width_step(params)``; depths come from the family's depth rule.

Search: counts are assumed non-decreasing in width (and depth). Each step fits a model to the
counts seen so far (power law through one or two points, then a quadratic through the three
nearest the target: parameter and MAC counts of these families are close to quadratic in
width and linear in depth), evaluates the two grid points either side of the model's root,
and keeps a bracket ``count(lo) <= target < count(hi)``; bisection takes over when the model
stops helping. It stops when the bracket's ends are neighbours on the grid, so the answer is
the closest achievable value: usually after 3 to 5 counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from archbench.errors import BudgetError, SpecError
from archbench.models.complexity import analytic, analytic_params
from archbench.models.net import NetSpec
from archbench.models.presets import Family, get_family
from archbench.units import int_count

Metric = Literal["params", "macs"]
METRICS: tuple[str, ...] = ("params", "macs")
MATCH_SCHEMA = "archbench.budget_match/1"
MAX_WIDTH = 1 << 16
MAX_DEPTH = 10_000
_MAX_STEPS = 64
_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}
_NUMBER = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?|\.[0-9]+)\s*([KMG]?)\s*$", re.IGNORECASE)


def parse_count(value: str | int | float) -> int:
    """``"1.7M" -> 1_700_000``, ``"250K"``, ``"4.1G"``, ``"270_000"``, ``"270,000"``, ``270000``.

    Suffixes K/M/G (any case) are powers of 1000; the result is rounded to an integer and must
    be positive.
    """
    if isinstance(value, bool):
        raise BudgetError(f"invalid count {value!r}: use a positive number such as 1.7M or 250K")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BudgetError(f"invalid count {value!r}: use a positive finite number")
        number = Decimal(repr(value))
    else:
        match = _NUMBER.match(str(value))
        if not match:
            raise BudgetError(
                f"invalid count {value!r}: use an integer or a number with a K, M or G suffix "
                "(e.g. 270000, 1.7M, 250K, 4.1G)"
            )
        try:
            digits = match.group(1).replace("_", "").replace(",", "")
            number = Decimal(digits) * _SUFFIXES[match.group(2).upper()]
        except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
            raise BudgetError(f"invalid count {value!r}") from None
    result = int(number.to_integral_value())
    if result < 1:
        raise BudgetError(f"invalid count {value!r}: a budget must be at least 1")
    return result


@dataclass(frozen=True)
class BudgetMatch:
    """A solved variant: ``spec`` at ``depth``/``width`` achieves ``achieved`` of ``metric``.

    ``rel_error = (achieved - target) / target`` (signed: negative means under budget).
    """

    spec: NetSpec
    family: str
    depth: int
    width: int
    metric: str
    target: int
    achieved: int
    rel_error: float
    tolerance: float
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    vary: str = "width"
    evaluations: int = field(default=0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, schema ``archbench.budget_match/1``: ``schema``, ``family``,
        ``vary`` ("width"|"depth"), ``depth``, ``width``, ``params`` (family params),
        ``metric`` ("params"|"macs"), ``target``, ``achieved``, ``rel_error`` (signed),
        ``tolerance``, ``name``, ``spec_hash``, ``spec`` (the NetSpec dict)."""
        return {
            "schema": MATCH_SCHEMA,
            "family": self.family,
            "vary": self.vary,
            "depth": self.depth,
            "width": self.width,
            "params": dict(self.params),
            "metric": self.metric,
            "target": self.target,
            "achieved": self.achieved,
            "rel_error": self.rel_error,
            "tolerance": self.tolerance,
            "name": self.spec.name,
            "spec_hash": self.spec.spec_hash(),
            "spec": self.spec.to_dict(),
        }


# -- search -----------------------------------------------------------------------------------

Point = tuple[int, int]  # (grid index, count)


class _Grid:
    """Counts at integer grid points ``k_min..k_max``, memoised; an invalid low point raises
    the lower bound (e.g. a width smaller than a block's groups)."""

    def __init__(self, count: Callable[[int], int], k_min: int, k_max: int) -> None:
        self.count, self.k_min, self.k_max = count, k_min, k_max
        self.values: dict[int, int] = {}

    def __call__(self, k: int) -> int | None:
        if k not in self.values:
            try:
                self.values[k] = self.count(k)
            except SpecError:
                valid_above = [j for j in self.values if j > k]
                if not valid_above:
                    raise
                self.k_min = max(self.k_min, k + 1)
                return None
        return self.values[k]


def _model_root(points: list[Point], target: int, degree: int) -> float | None:
    """Where a model through the points nearest the target reaches it (real-valued k)."""
    usable = [(k, v) for k, v in points if v > 0]
    if not usable:
        return None
    usable.sort(key=lambda p: abs(math.log(p[1] / target)))
    if len(usable) == 1:
        k, v = usable[0]
        return k * (target / v) ** (1.0 / degree)  # v ~ c * k**degree
    if degree == 1 or len(usable) == 2:
        (k1, v1), (k2, v2) = sorted(usable[:2])
        if v1 == v2:
            return None
        if degree == 1:
            return k1 + (target - v1) * (k2 - k1) / (v2 - v1)
        power = math.log(v2 / v1) / math.log(k2 / k1)  # v ~ c * k**power
        return k2 * (target / v2) ** (1.0 / power) if power > 0 else None
    (k1, v1), (k2, v2), (k3, v3) = sorted(usable[:3])
    # Quadratic through three points (Newton form), solved for v = target.
    d1 = (v2 - v1) / (k2 - k1)
    d2 = ((v3 - v2) / (k3 - k2) - d1) / (k3 - k1)
    # v = v1 + d1 (k - k1) + d2 (k - k1)(k - k2)  ->  a k^2 + b k + c = 0
    a = d2
    b = d1 - d2 * (k1 + k2)
    c = v1 - d1 * k1 + d2 * k1 * k2 - target
    if abs(a) < 1e-12 * max(abs(b), 1.0):
        return -c / b if b else None
    disc = b * b - 4 * a * c
    if disc < 0:
        return None
    roots = [(-b + s * math.sqrt(disc)) / (2 * a) for s in (1, -1)]
    centre = (k1 + k3) / 2
    return min(roots, key=lambda r: abs(r - centre))


def _search(grid: _Grid, target: int, k0: int, degree: int) -> tuple[Point | None, Point | None]:
    """Bracket the target: ``(lo, hi)`` with ``count(lo) <= target < count(hi)``, neighbours
    on the grid (either may be ``None`` at the grid's ends)."""
    lo: Point | None = None
    hi: Point | None = None

    def visit(k: int) -> None:
        nonlocal lo, hi
        v = grid(k)
        if v is None:
            return
        if v <= target and (lo is None or k > lo[0]):
            lo = (k, v)
        elif v > target and (hi is None or k < hi[0]):
            hi = (k, v)

    visit(min(max(k0, grid.k_min), grid.k_max))
    for step in range(_MAX_STEPS):
        if lo is not None and lo[1] == target:
            break
        lo_k = lo[0] if lo is not None else grid.k_min - 1
        hi_k = hi[0] if hi is not None else grid.k_max + 1
        if hi_k - lo_k <= 1:
            break
        candidates: list[int] = []
        if step < 8:  # model steps first; pure bisection after that guarantees the end
            root = _model_root(list(grid.values.items()), target, degree)
            if root is not None and math.isfinite(root):
                root = min(max(root, lo_k), hi_k)
                candidates = sorted({math.floor(root), math.ceil(root)})
                candidates = [c for c in candidates if lo_k < c < hi_k and c not in grid.values]
        if not candidates:
            if hi is None:
                candidates = [min(grid.k_max, max(lo_k + 1, 2 * lo_k))]
            elif lo is None:
                candidates = [max(grid.k_min, min(hi_k - 1, hi_k // 2))]
            else:
                candidates = [(lo_k + hi_k) // 2]
        for c in candidates:
            visit(c)
    return lo, hi


def _closest(lo: Point | None, hi: Point | None, target: int) -> Point:
    options = [p for p in (lo, hi) if p is not None]
    return min(options, key=lambda p: (abs(p[1] - target), -p[1]))


def _check_common(target: Any, metric: str, tolerance: float) -> int:
    if metric not in METRICS:
        raise BudgetError(f"unknown budget metric {metric!r}; allowed: {', '.join(METRICS)}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise BudgetError(f"tolerance must be a number >= 0 (e.g. 0.01), got {tolerance!r}")
    return parse_count(target)


def _counter(metric: str) -> Callable[[NetSpec], int]:
    if metric == "params":
        return analytic_params
    return lambda spec: analytic(spec).macs


def data_shape(
    family: Family,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
) -> dict[str, int]:
    """``num_classes``/``in_channels``/``input_size`` with ``None`` replaced by the family's
    own (what its build function gives at the default depth and width: 1000 classes at 224
    for ImageNet families, 10 at 32 for CIFAR ones)."""
    native = family.build_fn(family.default_depth, family.default_width)
    return {
        "num_classes": native.num_classes if num_classes is None else num_classes,
        "in_channels": native.in_channels if in_channels is None else in_channels,
        "input_size": native.input_size if input_size is None else input_size,
    }


def _rel(value: int, target: int) -> float:
    return (value - target) / target


Vary = Literal["width", "depth"]
VARY: tuple[str, ...] = ("width", "depth")


@dataclass(frozen=True)
class _Axis:
    """What a solve varies: grid index ``k`` (1-based) -> ``(depth, width)``."""

    name: str  # "width" or "depth"
    dims: Callable[[int], tuple[int, int]]  # grid index -> (depth, width)
    k_max: int
    start: int  # the grid index of the family's default
    degree: int  # counts grow ~ value**degree (quadratic in width, linear in depth)
    grid: str  # how the values are spaced, for messages: "multiple of 8", "6n+2"
    fixed: str  # the other axis, for messages: "depth 110", "width 16"

    def value(self, k: int) -> int:
        depth, width = self.dims(k)
        return width if self.name == "width" else depth


def _axis(
    fam: Family,
    vary: str,
    depth: int | None,
    width: int | None,
    params: Mapping[str, Any],
    max_depth: int,
) -> _Axis:
    if vary == "width":
        if width is not None:
            raise BudgetError("solve(vary='width') finds the width: fix the depth, not the width")
        step = fam.width_step(params)
        d = fam.default_depth if depth is None else depth
        return _Axis(
            "width",
            lambda k: (d, k * step),
            max(1, MAX_WIDTH // step),
            max(1, round(fam.default_width / step)),
            2,
            f"multiple of {step}",
            f"depth {d}",
        )
    if vary != "depth":
        raise BudgetError(f"unknown vary {vary!r}; allowed: {', '.join(VARY)}")
    if depth is not None:
        raise BudgetError("solve(vary='depth') finds the depth: fix the width, not the depth")
    depths = fam.depth.valid_depths(1, max_depth)
    if not depths:
        raise BudgetError(f"family {fam.name!r} has no valid depth up to {max_depth}")
    w = fam.default_width if width is None else width
    start = depths.index(fam.default_depth) + 1 if fam.default_depth in depths else 1
    return _Axis(
        "depth", lambda i: (depths[i - 1], w), len(depths), start, 1, fam.depth.rule, f"width {w}"
    )


def solve(
    family: str | Family,
    target: int | float | str,
    *,
    vary: Vary = "width",
    metric: Metric = "params",
    depth: int | None = None,
    width: int | None = None,
    tolerance: float = 0.01,
    params: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    max_depth: int = MAX_DEPTH,
) -> BudgetMatch:
    """The width (``vary="width"``: a multiple of the family's width step, at ``depth``) or
    the valid depth (``vary="depth"``: ``family.depth.valid_depths``, at ``width``) whose
    count is closest to ``target``.

    The fixed one defaults to the family's own; giving the varied one is an error.
    ``num_classes``, ``in_channels`` and ``input_size`` default to the family's own (see
    :func:`data_shape`); ``params`` are the family's params; ``max_depth`` bounds a depth
    search.

    Raises :class:`BudgetError` naming the nearest achievable budgets below and above (with
    their widths or depths) when the closest is further than ``tolerance`` (relative) from
    the target.
    """
    fam = get_family(family) if isinstance(family, str) else family
    goal = _check_common(target, metric, tolerance)
    params = dict(params or {})
    axis = _axis(fam, vary, depth, width, params, max_depth)
    shape = data_shape(fam, num_classes, in_channels, input_size)
    count = _counter(metric)

    def build(k: int) -> NetSpec:
        return fam.build(*axis.dims(k), **shape, **params)

    build(axis.start)  # a bad fixed value or params: fail with the family's own error
    grid = _Grid(lambda k: count(build(k)), 1, axis.k_max)
    lo, hi = _search(grid, goal, axis.start, degree=axis.degree)
    k, achieved = _closest(lo, hi, goal)
    rel = _rel(achieved, goal)
    if abs(rel) > tolerance:
        raise _no_match(fam.name, axis, grid, lo, hi, goal, metric, tolerance, params)
    spec = build(k)
    d, w = axis.dims(k)
    return BudgetMatch(
        spec=spec.replace(name=spec.name or f"{fam.name}_d{d}_w{w}"),
        family=fam.name,
        depth=d,
        width=w,
        metric=metric,
        target=goal,
        achieved=achieved,
        rel_error=rel,
        tolerance=float(tolerance),
        params=params,
        vary=axis.name,
        evaluations=len(grid.values),
    )


def _no_match(
    family: str,
    axis: _Axis,
    grid: _Grid,
    lo: Point | None,
    hi: Point | None,
    goal: int,
    metric: str,
    tolerance: float,
    params: Mapping[str, Any],
) -> BudgetError:
    """The error of a target no grid point meets: the nearest budgets below and above."""
    name = axis.name
    where = f"family {family!r} at {axis.fixed}" + (f" with {params}" if params else "")
    smallest = int_count(grid.values[grid.k_min]) if grid.k_min in grid.values else "more"
    below = (
        f"{int_count(lo[1])} at {name} {axis.value(lo[0])} ({_rel(lo[1], goal):+.2%})"
        if lo
        else f"none (the smallest {name}, {axis.value(grid.k_min)}, gives {smallest})"
    )
    above = (
        f"{int_count(hi[1])} at {name} {axis.value(hi[0])} ({_rel(hi[1], goal):+.2%})"
        if hi
        else f"none ({name}s stop at {axis.value(grid.k_max)})"
    )
    other = "depth" if name == "width" else "width"
    return BudgetError(
        f"{where}: no {name} ({axis.grid}) gives {metric} within {tolerance:.2%} of "
        f"{int_count(goal)}; nearest below: {below}; nearest above: {above}. Loosen "
        f"--tolerance or change the {other}"
    )


def solve_width(family: str | Family, target: int | float | str, **options: Any) -> BudgetMatch:
    """:func:`solve` with ``vary="width"`` (kept: many callers and the README use it)."""
    return solve(family, target, vary="width", **options)


def solve_depth(family: str | Family, target: int | float | str, **options: Any) -> BudgetMatch:
    """:func:`solve` with ``vary="depth"`` (kept: many callers and the README use it)."""
    return solve(family, target, vary="depth", **options)
