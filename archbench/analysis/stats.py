"""Statistics over seeds: t-intervals (clipped to a metric's bounds), paired comparisons, Holm correction, weighted EDFs.

Everything here is plain numbers in, plain numbers out (no store, no plotting), so each
function can be checked against a hand computation or scipy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

#: Wilcoxon's signed-rank test is reported from this many pairs on (below it, its smallest
#: attainable two-sided p-value is above 0.05: with n = 5 it is 0.0625).
WILCOXON_MIN_N = 6


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


@dataclass(frozen=True)
class PairedResult:
    """``a - b`` over the seeds both have; ``p_t`` from the paired t-test (scipy ttest_rel),
    ``p_wilcoxon`` from the signed-rank test when ``n >= WILCOXON_MIN_N`` (else NaN)."""

    n: int
    seeds: tuple[int, ...]
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    t_stat: float
    p_t: float
    p_wilcoxon: float


def paired_difference(
    a: dict[int, float], b: dict[int, float], level: float = 0.95
) -> PairedResult:
    """Compare two variants on their shared seeds (``{seed: metric}`` each)."""
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
    xa = np.array([a[s] for s in seeds], dtype=float)
    xb = np.array([b[s] for s in seeds], dtype=float)
    diff = xa - xb
    summary = t_interval(diff.tolist(), level)
    nan = float("nan")
    t_stat = p_t = p_w = nan
    n = len(seeds)
    if n >= 2:
        if np.all(diff == diff[0]):
            # Constant differences: ttest_rel divides by a zero std. Identical runs (all
            # zero) are no evidence of a difference; a constant non-zero shift is certain.
            t_stat = 0.0 if diff[0] == 0 else math.copysign(math.inf, diff[0])
            p_t = 1.0 if diff[0] == 0 else 0.0
        else:
            result = sps.ttest_rel(xa, xb)
            t_stat, p_t = float(result.statistic), float(result.pvalue)
    if n >= WILCOXON_MIN_N:
        if np.all(diff == 0):
            p_w = 1.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "exact p-value not available with ties"
                p_w = float(sps.wilcoxon(xa, xb).pvalue)
    return PairedResult(
        n, seeds, summary.mean, summary.std, summary.ci_low, summary.ci_high, t_stat, p_t, p_w
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
