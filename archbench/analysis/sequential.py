"""Seeds until the question is answered: group-sequential decisions over rounds of seeds.

Plain numbers in, plain numbers out (no store, no runner): the runner
(:mod:`archbench.runner.rounds`) and the tables replay the same looks over the same numbers,
so what ``run`` decided and what ``stats`` shows cannot differ.

The method (see the README, "Questions, rounds and racing"):

- **Looks** are planned: after ``n_1 < n_2 < ... < n_K`` seeds (``min``, ``min + per_round``,
  ..., ``max``). Look ``k`` tests on the first ``n_k`` seeds of the plan.
- **Alpha spending.** Look ``k`` gets the fraction ``w_k = g(t_k) - g(t_{k-1})`` of alpha,
  ``t_k = n_k / n_K`` (``g``: Pocock-type ``log(1 + (e - 1) t)`` or O'Brien-Fleming-type
  ``t^3``, Kim-DeMets). A look whose exact test cannot reach its share even with the whole
  family's alpha divided by the ``m`` comparisons (the sign-flip test's smallest p,
  ``2 / 2^n``, is above it) spends nothing and passes its share on to the next look: fixed by
  the plan before any data, so valid.
- **Each look** tests every open comparison with the exact sign-flip test
  (:func:`archbench.analysis.stats.sign_flip_test`) and Holm's step-down across the
  question's ``m`` comparisons at ``alpha * w_k``, where comparisons resolved at earlier
  looks pass their share on (the group-sequential Holm procedure of Ye et al. 2013, with
  Bonferroni across looks). Before the first false rejection every rejection so far is a
  true difference, so each true null is tested at most at ``alpha * w_k / m0`` per look:
  the chance of any false 'resolved' over all looks and comparisons is at most
  ``sum_k alpha * w_k = alpha``, whatever the correlation between looks (a union bound, no
  normal approximation).
- **States.** *resolved*: the difference excludes 0 at the look's corrected level;
  *equivalent*: the look's interval at the plan's Bonferroni level ``alpha * w_k / m`` (the
  inverted sign-flip test) lies inside ``+-delta`` (two one-sided tests). A false
  'equivalent' needs that interval to miss the true difference on one side (at most half its
  level, for paired differences symmetric about their mean), so over all looks and
  comparisons it happens with probability at most ``alpha / 2``: a union bound over levels
  fixed before any data. (Holm's stepped-up level is not fixed: it rises when *other*
  comparisons resolve, which a shared reference correlates with this one's error.)
  *open*: neither; *stopped*: open, but a configuration of it was raced out (shown worse
  than the current best).
- **Racing.** After a look, the current best is the active configuration with the lowest
  mean *validation* error on the look's seeds; a configuration whose comparison with it is
  resolved against it stops receiving seeds, and its other open comparisons stop. The
  reference (a configuration every comparison of its connected group names) is never raced
  out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from archbench.analysis import stats

SPENDING = ("pocock", "obrien-fleming")
RESOLVED, EQUIVALENT, OPEN, STOPPED = "resolved", "equivalent", "open", "stopped"

#: The power an estimate of the seeds still needed aims at.
TARGET_POWER = 0.8

#: Interval ends within this of +-delta count as touching it (not inside): error rates are
#: k/N, and 0.21 - 0.20 is 0.00999...98 in floats, which would read as inside +-0.01.
BOUNDARY_TOL = 1e-9


@dataclass(frozen=True)
class Design:
    """The planned looks of a question. ``delta``: the smallest difference that matters, in
    the metric's units (a fraction for error rates); ``looks``: seeds at each look."""

    alpha: float
    delta: float
    looks: tuple[int, ...]
    spending: str = "pocock"
    race: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.delta > 0:
            raise ValueError(f"the smallest difference must be > 0, got {self.delta}")
        if self.spending not in SPENDING:
            raise ValueError(f"unknown spending {self.spending!r}; allowed: {', '.join(SPENDING)}")
        n = self.looks
        if not n or n[0] < 1 or any(b <= a for a, b in itertools.pairwise(n)):
            raise ValueError(f"looks must be increasing seed counts >= 1, got {list(n)}")


def plan_looks(min_seeds: int, max_seeds: int, per_round: int) -> tuple[int, ...]:
    """Seeds at each look: ``min``, ``min + per_round``, ... and ``max`` last."""
    looks = list(range(min_seeds, max_seeds + 1, per_round))
    if looks[-1] != max_seeds:
        looks.append(max_seeds)
    return tuple(looks)


def spending_shape(name: str, t: float) -> float:
    """The fraction of alpha spent by information fraction ``t`` (0 at 0, 1 at 1)."""
    t = min(max(t, 0.0), 1.0)
    if name == "pocock":
        return math.log(1 + (math.e - 1) * t)
    if name == "obrien-fleming":
        return t**3
    raise ValueError(f"unknown spending {name!r}; allowed: {', '.join(SPENDING)}")


def look_weights(design: Design, m: int = 1) -> tuple[float, ...]:
    """The fraction of alpha each look may spend (sum <= 1): the spending function's
    increments, a look that cannot use its share (smallest attainable p of its seed count at
    or above ``alpha / m`` times its share: Holm's first step over ``m`` comparisons)
    passing it on to the next. Fixed by the plan and ``m`` before any data is seen."""
    n_max = design.looks[-1]
    out, carried, spent = [], 0.0, 0.0
    for n in design.looks:
        g = spending_shape(design.spending, n / n_max)
        share = carried + g - spent
        spent = g
        if stats.smallest_p(n) >= design.alpha * share / max(m, 1):
            out.append(0.0)
            carried = share
        else:
            out.append(share)
            carried = 0.0
    return tuple(out)


@dataclass(frozen=True)
class ComparisonState:
    """One comparison ``a - b`` of the question after the looks so far."""

    a: str
    b: str
    state: str = OPEN
    look: int = 0  # the look (1-based) of the numbers below; 0: none yet
    n: int = 0  # seeds used
    mean_diff: float = math.nan
    std_diff: float = math.nan
    ci_low: float = math.nan  # the inverted sign-flip test at ``level``
    ci_high: float = math.nan
    p: float = math.nan
    level: float = math.nan  # the look's corrected level for this comparison
    reason: str = ""
    seeds_needed: int | None = None  # open ones: normal-approximation estimate (total)

    @property
    def decided(self) -> bool:
        return self.state != OPEN


@dataclass(frozen=True)
class Replay:
    """The looks replayed over the stored numbers: where the question stands."""

    comparisons: tuple[ComparisonState, ...]
    looks_done: int  # looks evaluated
    active: tuple[str, ...]  # configurations that still receive seeds
    raced_out: Mapping[str, str] = field(default_factory=dict)  # config -> why
    needs: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # config -> seeds
    finished: bool = False
    round: int = 1  # the round being trained (1-based; looks_done + 1 while not finished)

    @property
    def open(self) -> list[ComparisonState]:
        return [c for c in self.comparisons if c.state == OPEN]


Values = Mapping[str, Mapping[int, float]]


def replay(
    design: Design,
    pairs: Sequence[tuple[str, str]],
    metric: Values,
    val: Values,
    seeds: Sequence[int],
) -> Replay:
    """Replay the planned looks over ``metric`` (config -> {seed: value}, lower is better;
    a diverged seed already at its worst value) and ``val`` (validation error, for racing).

    ``seeds`` is the planned seed order (``len >= design.looks[-1]``); look ``k`` uses its
    first ``n_k``. A look is evaluated when every active configuration has a value for each
    of its seeds; the first look that cannot be is the round being trained (``needs``).
    """
    if len(seeds) < design.looks[-1]:
        raise ValueError(f"{len(seeds)} planned seeds for looks up to {design.looks[-1]}")
    for config, values in metric.items():
        bad = sorted(s for s, v in values.items() if not math.isfinite(v))
        if bad:  # a diverged seed is scored at its worst value by the caller, not NaN
            raise ValueError(f"{config}: non-finite values at seeds {bad}")
    m = len(pairs)
    weights = look_weights(design, m)
    states = [ComparisonState(a, b) for a, b in pairs]
    rejected = 0
    raced: dict[str, str] = {}
    active = _active(states)
    looks_done = 0
    for k, n in enumerate(design.looks):
        use = tuple(seeds[:n])
        if any(not all(s in metric.get(c, {}) for s in use) for c in active):
            needs = {c: use for c in active}
            return Replay(tuple(states), looks_done, tuple(active), raced, needs, False, k + 1)
        open_idx = [i for i, c in enumerate(states) if c.state == OPEN]
        diffs = {
            i: np.array([metric[states[i].a][s] - metric[states[i].b][s] for s in use])
            for i in open_idx
        }
        pvals = {i: _pvalue(diffs[i]) for i in open_idx}
        # Holm's step-down at this look's share; resolved comparisons pass theirs on.
        share = design.alpha * weights[k]
        order = sorted(open_idx, key=lambda i: (pvals[i], i))
        levels: dict[int, float] = {}
        for j, i in enumerate(order):
            threshold = share / (m - rejected - j)
            if share > 0 and pvals[i] < threshold:
                levels[i] = threshold
            else:
                break
        rejected += len(levels)
        for i in open_idx:
            # Not rejected: the interval at the look's Bonferroni level, fixed by the plan.
            # Equivalence reads this interval; Holm's stepped-up level (share / (m - rejected))
            # depends on the other comparisons' data and, with a shared reference, let false
            # 'equivalent' claims reach ~4.4% (tests/test_sequential.py).
            level = levels.get(i, share / m)
            states[i] = _look_state(
                states[i], diffs[i], pvals[i], level, k + 1, i in levels, design, m
            )
        looks_done = k + 1
        if design.race:
            _race(states, val, use, active, raced)
        active = _active(states)
        if not active:
            return Replay(tuple(states), looks_done, (), raced, {}, True, looks_done)
    last = design.looks[-1]
    final = [
        replace(c, reason=f"still open after the planned maximum of {last} seeds")
        if c.state == OPEN
        else c
        for c in states
    ]
    return Replay(tuple(final), looks_done, (), raced, {}, True, looks_done)


def _active(states: Sequence[ComparisonState]) -> list[str]:
    """Configurations in open comparisons, in the order the question names them."""
    out: dict[str, None] = {}
    for c in states:
        if c.state == OPEN:
            out.setdefault(c.a)
            out.setdefault(c.b)
    return list(out)


def _look_state(
    old: ComparisonState,
    d: np.ndarray,
    p: float,
    level: float,
    look: int,
    rejected: bool,
    design: Design,
    m: int,
) -> ComparisonState:
    n = len(d)
    mean = float(d.mean())
    std = float(d.std(ddof=1)) if n > 1 else math.nan
    if level > 0:
        test = stats.sign_flip_test(d.tolist(), min(level, 0.999))
        low, high = test.ci_low, test.ci_high
    else:
        low, high = -math.inf, math.inf
    state, reason = OPEN, ""
    if rejected:
        state = RESOLVED
        better = old.a if mean < 0 else old.b
        reason = f"{better} lower"
        if _inside(low, high, design.delta):
            reason += f" (by less than the smallest difference, {design.delta * 100:g} pp)"
    elif _inside(low, high, design.delta):
        state, reason = EQUIVALENT, f"within +-{design.delta * 100:g} pp"
    out = replace(
        old,
        state=state,
        look=look,
        n=n,
        mean_diff=mean,
        std_diff=std,
        ci_low=low,
        ci_high=high,
        p=p,
        level=level,
        reason=reason,
    )
    return _with_estimate(out, design, m)


def _inside(low: Any, high: Any, delta: float) -> Any:
    """The interval lies strictly inside +-delta (ends within float error of it do not);
    floats or arrays of interval ends (:func:`simulate`)."""
    return (low > -delta + BOUNDARY_TOL) & (high < delta - BOUNDARY_TOL)


def _anchors(states: Sequence[ComparisonState]) -> set[str]:
    """Configurations named by every comparison of their connected group of comparisons
    (the reference of ``compare: reference``; both ends of a lone pair)."""
    group: dict[str, str] = {}

    def root(c: str) -> str:
        while group.setdefault(c, c) != c:
            c = group[c]
        return c

    for c in states:
        group[root(c.a)] = root(c.b)
    members: dict[str, list[set[str]]] = {}
    for c in states:
        members.setdefault(root(c.a), []).append({c.a, c.b})
    return set().union(*(set.intersection(*pairs) for pairs in members.values()))


def _race(
    states: list[ComparisonState],
    val: Values,
    seeds: Sequence[int],
    looked: Sequence[str],
    raced: dict[str, str],
) -> None:
    """Stop the open comparisons of configurations resolved worse than the current best:
    the configuration with the lowest mean validation error among those this look saw. A
    configuration every comparison of its group names (the reference) is never raced out:
    that would stop all those comparisons, however far from answered."""
    scored = [c for c in looked if c not in raced and all(s in val.get(c, {}) for s in seeds)]
    if not scored:
        return
    hubs = _anchors(states)
    best = min(scored, key=lambda c: (float(np.mean([val[c][s] for s in seeds])), c))
    for c in states:
        if c.state != RESOLVED or best not in (c.a, c.b):
            continue
        worse = c.b if c.mean_diff < 0 else c.a
        if worse != best and worse not in raced and worse not in hubs:
            raced[worse] = f"worse than the current best, {best} (look {c.look})"
    for i, c in enumerate(states):
        if c.state == OPEN and (c.a in raced or c.b in raced):
            who = c.a if c.a in raced else c.b
            states[i] = replace(c, state=STOPPED, reason=f"{who} raced out: {raced[who]}")


def seeds_needed(std: float, mean: float, design: Design, m: int) -> int:
    """Seeds a comparison would need in all (normal approximation): the two-sided level
    ``alpha / m`` with :data:`TARGET_POWER` at the larger of ``|mean|`` and ``delta`` (a
    difference that large resolves; the interval of a smaller one shrinks inside +-delta at
    about the same n), and never fewer than the exact test needs to reach that level."""
    a = design.alpha / max(m, 1)
    floor = math.floor(math.log2(2 / a)) + 1  # the fewest n with 2 / 2^n < a
    if not math.isfinite(std) or std <= 0:
        return floor
    target = max(abs(mean), design.delta) if math.isfinite(mean) else design.delta
    z = sps.norm.ppf(1 - a / 2) + sps.norm.ppf(TARGET_POWER)
    return max(floor, math.ceil((z * std / target) ** 2))


def _pvalue(d: np.ndarray) -> float:
    if len(d) <= stats.EXACT_MAX_N:
        return float(stats.sign_flip_pvalues(d[None, :])[0])
    return stats.sign_flip_test(d.tolist(), 0.5).p


def _with_estimate(c: ComparisonState, design: Design, m: int) -> ComparisonState:
    if c.state != OPEN:
        return c
    need = seeds_needed(c.std_diff, c.mean_diff, design, m)
    if c.look < len(design.looks):
        # Open with looks to come: it takes at least the next one (a fixed-n estimate at
        # or below the seeds already used would read as "answered by now").
        need = max(need, design.looks[c.look])
    return replace(c, seeds_needed=need)


# -- simulation (benchmarks, tests): one comparison, many experiments, vectorised -----------


def simulate(diffs: np.ndarray, design: Design, chunk: int = 256) -> dict[str, np.ndarray]:
    """Run one comparison's sequential design on each row of ``diffs`` (``(E, n_max)``:
    simulated paired differences, seed by seed); the same rule as :func:`replay` with one
    comparison and no racing. Returns ``state`` (str per row), ``look`` and ``n`` (seeds
    spent)."""
    diffs = np.asarray(diffs, dtype=float)
    e = diffs.shape[0]
    weights = look_weights(design)
    state = np.full(e, OPEN, dtype=object)
    look = np.zeros(e, dtype=int)
    n_used = np.zeros(e, dtype=int)
    for k, n in enumerate(design.looks):
        todo = np.flatnonzero(state == OPEN)
        if len(todo) == 0:
            break
        level = design.alpha * weights[k]
        look[todo], n_used[todo] = k + 1, n
        if level <= 0:
            continue
        for start in range(0, len(todo), chunk):
            rows = todo[start : start + chunk]
            d = diffs[rows, :n]
            p, low, high = _batch_test(d, level)
            res = p < level
            eq = ~res & _inside(low, high, design.delta)
            state[rows[res]] = RESOLVED
            state[rows[eq]] = EQUIVALENT
    return {"state": state, "look": look, "n": n_used}


def _batch_test(d: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sign-flip p-values and inverted ``1 - alpha`` intervals for each row (exact)."""
    k, n = d.shape
    p = stats.sign_flip_pvalues(d)
    total = 2**n
    j = stats._max_count(alpha, total) - 1
    if j < 0:
        inf = np.full(k, np.inf)
        return p, -inf, inf
    sums, sizes = stats._subset_sums(d)
    sums = stats._snap(d, sums)
    means = sums[:, 1:] / sizes[1:]
    hi_idx = means.shape[1] - 1 - j
    part = np.partition(means, [j, hi_idx], axis=1)
    return p, part[:, j], part[:, hi_idx]
