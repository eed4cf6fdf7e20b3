"""Statistics over seeds: t-intervals (descriptive, clipped to a metric's bounds), exact
sign-flip paired comparisons with their inverted intervals, Holm correction, weighted EDFs.

Everything here is plain numbers in, plain numbers out (no store, no plotting), so each
function can be checked against a hand computation or scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

#: Error rates are fractions: no interval of one may leave [0, 1].
ERROR_BOUNDS = (0.0, 1.0)
#: Below this many seeds a t-interval rests on one or no degree of freedom of spread (with
#: 2 seeds the 95% t quantile is 12.7): it is shown, and flagged as too few seeds.
FEW_SEEDS = 3
#: How intervals of error rates are made, for captions and table notes.
INTERVAL_METHOD = "t-interval over seeds, clipped to 0-100%"


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1) and a two-sided t confidence interval of the mean
    (``clipped``: an end was cut to the metric's bounds)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    level: float = 0.95
    clipped: bool = False

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def t_interval(
    values: Sequence[float],
    level: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> Summary:
    """Mean and ``level`` t-interval of ``values`` (NaNs dropped).

    With one value the std and interval are NaN: one seed says nothing about seed noise.
    ``bounds`` (e.g. :data:`ERROR_BOUNDS`) clip the interval to the metric's range: with few
    seeds a t-interval of an error rate reaches below 0% or above 100%, values no seed can
    have. Clipping keeps the t-interval where it is informative and says so (``clipped``);
    the mean and std are unchanged.
    """
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, level)
    mean = float(x.mean())
    if n == 1:
        nan = float("nan")
        return Summary(1, mean, nan, nan, nan, level)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is None:
        return Summary(n, mean, std, low, high, level)
    lo, hi = bounds
    clipped = low < lo or high > hi
    return Summary(n, mean, std, max(low, lo), min(high, hi), level, clipped)


def interval_caption(n_seeds: Sequence[int], level: float) -> str:
    """How the intervals of error rates over ``n_seeds`` (one count per point) were made."""
    counts = [int(n) for n in n_seeds]
    lo, hi = min(counts), max(counts)
    if hi < 2:
        return "1 seed per point: no confidence interval"
    seeds = f"{lo}" if lo == hi else f"{lo}-{hi}"
    text = f"mean of {seeds} seeds, {level:.0%} {INTERVAL_METHOD}"
    if lo < FEW_SEEDS:
        text += f"; {max(lo, 2)} seeds are too few for a reliable interval"
    return text


#: Up to this many pairs the sign-flip test enumerates all 2^n sign vectors (exact); above
#: it draws :data:`SIGN_FLIP_DRAWS` random ones (Monte Carlo, p = (1 + k) / (1 + B)).
EXACT_MAX_N = 20
SIGN_FLIP_DRAWS = 100_000
#: For captions and table notes: the test behind every paired verdict.
PAIRED_TEST = (
    "exact sign-flip permutation test on the mean paired difference (all 2^n sign vectors; "
    f"Monte Carlo with {SIGN_FLIP_DRAWS:,} draws above {EXACT_MAX_N} pairs), two-sided as twice "
    "the smaller one-sided p, so p >= 2/2^n; its interval is the inverted test (the shifts it "
    "does not reject), unbounded when n seeds cannot reject at all"
)


@dataclass(frozen=True)
class PairedResult:
    """``a - b`` over the seeds both have.

    ``p`` is the two-sided sign-flip permutation p-value of the mean difference
    (:func:`sign_flip_test`), ``p_min`` the smallest p that ``n`` pairs can give, and
    ``ci_low``/``ci_high`` the inverted test at the same ``alpha``: exactly the shifts it does
    not reject (infinite ends when ``n`` is too small to reject anything). ``std_diff`` is
    descriptive (sample std of the differences, ddof=1).
    """

    n: int
    seeds: tuple[int, ...]
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    p: float
    p_min: float
    method: str


@dataclass(frozen=True)
class SignFlip:
    """One sign-flip test: p-value, smallest attainable p, the ``1 - alpha`` interval of
    shifts not rejected, and how the sign vectors were chosen."""

    p: float
    p_min: float
    ci_low: float
    ci_high: float
    method: str


def _subset_sums(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums of every subset of each row of ``d`` (shape ``(k, n)``) and the subsets' sizes:
    ``(k, 2^n)`` and ``(2^n,)``, built by doubling (subset 0 is the empty one)."""
    k, n = d.shape
    sums = np.zeros((k, 1))
    sizes = np.zeros(1, dtype=np.int64)
    for i in range(n):
        sums = np.concatenate([sums, sums + d[:, i : i + 1]], axis=1)
        sizes = np.concatenate([sizes, sizes + 1])
    return sums, sizes


def _max_count(alpha: float, total: int) -> int:
    """The largest tail count c with ``2 c / total < alpha`` (a rejection at ``p < alpha``)."""
    c = math.floor(alpha * total / 2)
    while c >= 0 and 2 * c / total >= alpha:
        c -= 1
    return c


def sign_flip_pvalues(d: np.ndarray) -> np.ndarray:
    """Exact two-sided sign-flip p-values of the mean, one per row of ``d`` (``(k, n)``,
    ``n <= EXACT_MAX_N``): ``min(1, 2 min(U, L) / 2^n)`` where ``U`` counts the sign vectors
    whose flipped sum is at least the observed one and ``L`` those at most it (ties count,
    which keeps the test valid for discrete error rates). Vectorised over rows, for
    simulations; :func:`sign_flip_test` gives the interval too."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    n = d.shape[1]
    if n > EXACT_MAX_N:
        raise ValueError(f"exact enumeration is for n <= {EXACT_MAX_N} pairs, got {n}")
    sums, sizes = _subset_sums(d)
    upper, lower = _tail_counts(d, _snap(d, sums), sizes, base=1)
    return np.minimum(1.0, 2.0 * np.minimum(upper, lower) / 2.0**n)


def _tol(d: np.ndarray) -> np.ndarray:
    """Per-row tolerance under which a subset sum counts as 0 (float noise in sums of
    multiples of 1/100 must not break a tie in the test's favour)."""
    return 1e-9 * np.abs(d).sum(axis=1, keepdims=True)


def _snap(d: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Subset sums within float noise of 0 set to exactly 0 (a tie, counted in both tails)."""
    return np.where(np.abs(sums) <= _tol(d), 0.0, sums)


def _tail_counts(
    d: np.ndarray, sums: np.ndarray, sizes: np.ndarray, base: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flipping subset A changes the sum by ``-2 sum_A d``: the flipped sum is >= the
    observed one iff ``sum_A d <= 0``. ``base`` counts the sign vectors that flip nothing;
    ``sums`` are snapped (:func:`_snap`)."""
    some = sizes > 0
    upper = base + (sums[:, some] <= 0).sum(axis=1)
    lower = base + (sums[:, some] >= 0).sum(axis=1)
    return upper, lower


def sign_flip_test(
    diffs: Sequence[float], alpha: float = 0.05, *, draws: int = SIGN_FLIP_DRAWS, seed: int = 0
) -> SignFlip:
    """Two-sided sign-flip permutation test of "the paired differences are symmetric about 0"
    with its inverted ``1 - alpha`` interval for the shift.

    Up to :data:`EXACT_MAX_N` pairs every one of the 2^n sign vectors is enumerated, so the
    smallest p is ``2 / 2^n`` (0.25 at 3 seeds, 0.0625 at 5, 0.031 at 6): fewer than 6 seeds
    cannot give ``p < 0.05`` whatever the data. Above it ``draws`` random sign vectors (fixed
    ``seed``) give ``p = (1 + k) / (1 + draws)`` per tail, doubled.

    The interval is exactly the set of shifts ``d0`` the test on ``d - d0`` does not reject at
    ``p < alpha``: its ends are order statistics of the subset means (Hartigan 1969), so 0
    lies outside it exactly when ``p < alpha``. It is ``(-inf, inf)`` when no shift can be
    rejected (too few pairs).
    """
    d = np.asarray([v for v in diffs if not math.isnan(v)], dtype=float)
    n = len(d)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n == 0:
        nan = float("nan")
        return SignFlip(nan, nan, nan, nan, "no pairs")
    row = d[None, :]
    if n <= EXACT_MAX_N:
        sums, sizes = _subset_sums(row)
        total, base = 2**n, 1
        method = f"exact ({total} sign vectors)"
    else:
        rng = np.random.default_rng(seed)
        flips = rng.integers(0, 2, size=(draws, n)).astype(bool)  # True: flipped (in A)
        sums = (flips * d).sum(axis=1)[None, :]
        sizes = flips.sum(axis=1)
        total, base = draws + 1, 1 + int((sizes == 0).sum())
        sums, sizes = sums[:, sizes > 0], sizes[sizes > 0]
        method = f"Monte Carlo ({draws:,} random sign vectors)"
    sums = _snap(row, sums)
    upper, lower = _tail_counts(row, sums, sizes, base)
    p = float(min(1.0, 2.0 * min(int(upper[0]), int(lower[0])) / total))
    p_min = min(1.0, 2.0 / total)
    # Rejecting d0 from below needs base + #{A: mean_A <= d0} <= c: d0 below the
    # (c - base + 1)-th smallest subset mean; likewise from above.
    j = _max_count(alpha, total) - base  # subset means allowed on the rejected side
    if j < 0:
        low, high = -math.inf, math.inf
    else:
        means = sums[0][sizes > 0] / sizes[sizes > 0]
        k = len(means) - 1 - j
        means = np.partition(means, [j, k])  # the two order statistics, no full sort
        low, high = float(means[j]), float(means[k])
    return SignFlip(p, p_min, low, high, method)


def smallest_p(n: int) -> float:
    """The smallest two-sided p the sign-flip test can give from ``n`` pairs."""
    if n < 1:
        return float("nan")
    return min(1.0, 2.0 / 2**n) if n <= EXACT_MAX_N else 2.0 / (SIGN_FLIP_DRAWS + 1)


def paired_difference(
    a: dict[int, float], b: dict[int, float], alpha: float = 0.05
) -> PairedResult:
    """Compare two variants on their shared seeds (``{seed: metric}`` each) with the
    sign-flip test (:func:`sign_flip_test`) at ``alpha``."""
    seeds = tuple(
        sorted(
            s
            for s in set(a) & set(b)
            if a[s] is not None
            and b[s] is not None
            and not math.isnan(a[s])
            and not math.isnan(b[s])
        )
    )
    diff = np.array([a[s] - b[s] for s in seeds], dtype=float)
    nan = float("nan")
    mean = float(diff.mean()) if len(diff) else nan
    std = float(diff.std(ddof=1)) if len(diff) > 1 else nan
    test = sign_flip_test(diff.tolist(), alpha)
    return PairedResult(
        len(seeds), seeds, mean, std, test.ci_low, test.ci_high, test.p, test.p_min, test.method
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaNs stay NaN, not counted).

    Sorted ascending, the i-th (1-based) of m gets ``(m - i + 1) * p``, made monotone with a
    running maximum and capped at 1.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out.tolist()


# -- design-space EDFs ------------------------------------------------------------------------


def log_bins(values: Sequence[float], n_bins: int = 8) -> np.ndarray:
    """Bin edges equally spaced in log10 over the range of ``values`` (all positive)."""
    x = np.log10(np.asarray(values, dtype=float))
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return 10 ** np.linspace(lo, hi, n_bins + 1)


def bin_index(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Index of each value's bin (the last bin is closed on the right)."""
    idx = np.searchsorted(edges, np.asarray(values, dtype=float), side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


def complexity_weights(
    groups: Sequence[str],
    complexity: Sequence[float],
    edges: np.ndarray,
    target: Sequence[float] | None = None,
) -> np.ndarray:
    """Per-model weights that give every group the same complexity distribution.

    Radosavovic et al. (2019, "On Network Design Spaces for Visual Recognition") compare
    design spaces by error EDFs after reweighting models so that the spaces' complexity
    distributions match, since a space with bigger models wins an unnormalised EDF. Here the
    complexity axis is cut into ``edges``; ``target`` (one mass per bin; default: uniform) is
    restricted to the bins that *every* group populates (elsewhere it cannot be matched) and
    renormalised. A model in bin b of group g gets ``target[b] / count_g[b]``: each group's
    weights sum to 1 and its weighted histogram equals the restricted target. Models outside
    the common bins get weight 0. Raises ValueError when the groups share no bin.
    """
    groups = np.asarray(groups, dtype=object)
    n_bins = len(edges) - 1
    bins = bin_index(complexity, edges)
    names = list(dict.fromkeys(groups.tolist()))
    counts = {g: np.bincount(bins[groups == g], minlength=n_bins) for g in names}
    common = np.all([counts[g] > 0 for g in names], axis=0)
    if not common.any():
        raise ValueError("the groups share no complexity bin; nothing to normalise against")
    mass = np.ones(n_bins) if target is None else np.asarray(target, dtype=float)
    if mass.shape != (n_bins,) or np.any(mass < 0):
        raise ValueError(f"target needs {n_bins} non-negative masses, got {mass.tolist()}")
    mass = np.where(common, mass, 0.0)
    if mass.sum() <= 0:
        raise ValueError("the target puts no mass on the bins every group populates")
    mass = mass / mass.sum()
    weights = np.zeros(len(groups))
    for i, (g, b) in enumerate(zip(groups, bins)):
        weights[i] = mass[b] / counts[g][b] if common[b] else 0.0
    return weights


def weighted_edf(
    values: Sequence[float], weights: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Step points ``(x, F(x))`` of the (weighted) empirical distribution of ``values``.

    ``F(x)`` is the weighted fraction of values <= x; weights are normalised to sum to 1.
    """
    x = np.asarray(values, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    keep = ~np.isnan(x) & (w > 0)
    x, w = x[keep], w[keep]
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    total = w.sum()
    return x, (np.cumsum(w) / total if total > 0 else np.zeros_like(w))


def pareto_front(cost: Sequence[float], error: Sequence[float]) -> np.ndarray:
    """Indices of the configurations no other beats on both cost and error (sorted by cost)."""
    cost = np.asarray(cost, dtype=float)
    error = np.asarray(error, dtype=float)
    order = np.lexsort((error, cost))
    front, best = [], np.inf
    for i in order:
        if error[i] < best:
            front.append(i)
            best = error[i]
    return np.asarray(front, dtype=int)
