"""Seeds until the question is answered, on simulated seed outcomes (no training).

For one comparison (paired differences of two configurations' test error, seed by seed):

- false-positive rate with no difference (continuous errors, and errors out of 100 test
  images: many ties) of the sequential design, looked at after every round, against alpha;
- power and mean seeds spent per configuration at real differences, against a fixed-seed
  design (the same exact sign-flip test once, at alpha) of the same power: the fewest seeds
  whose power is at least the sequential design's.

    python benchmarks/bench_sequential.py [--experiments 2000] [--seed 0]

The numbers in benchmarks/README.md ("Seeds until the question is answered") come from it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from archbench.analysis import sequential as sq
from archbench.analysis import stats

ALPHA = 0.05
DELTA = 0.005  # 0.5 pp: the smallest difference that matters
SPREAD = 0.01  # 1 pp: std of the paired difference over seeds
MIN, MAX, PER_ROUND = 3, 15, 2


def fixed_power(diffs: np.ndarray, n: int, chunk: int = 64) -> float:
    """Power of the exact sign-flip test on the first ``n`` seeds, once, at alpha."""
    hits = 0
    for start in range(0, len(diffs), chunk):
        p = stats.sign_flip_pvalues(diffs[start : start + chunk, :n])
        hits += int((p < ALPHA).sum())
    return hits / len(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    e = args.experiments
    looks = sq.plan_looks(MIN, MAX, PER_ROUND)
    print(
        f"{e} simulated experiments per row; alpha {ALPHA}, smallest difference "
        f"{DELTA * 100:g} pp, seed spread {SPREAD * 100:g} pp, looks at {list(looks)} seeds"
    )
    start = time.perf_counter()
    print(
        "\n| spending | outcomes, no difference | P(resolved) | bound | P(equivalent) | "
        "mean seeds |"
    )
    print("|---|---|---|---|---|---|")
    null = {
        "continuous": rng.normal(0, SPREAD, (e, MAX)),
        "1/100 (ties)": (rng.binomial(100, 0.2, (e, MAX)) - rng.binomial(100, 0.2, (e, MAX))) / 100,
    }
    for spending in sq.SPENDING:
        design = sq.Design(ALPHA, DELTA, looks, spending)
        for name, diffs in null.items():
            out = sq.simulate(diffs, design)
            fp = float((out["state"] == sq.RESOLVED).mean())
            eq = float((out["state"] == sq.EQUIVALENT).mean())
            print(
                f"| {spending} | {name} | {fp:.4f} | {ALPHA} | {eq:.3f} | {out['n'].mean():.2f} |"
            )
    print(
        "\n| spending | a - b | power (resolved, right sign) | mean seeds | fixed design, "
        "same power | seeds saved |"
    )
    print("|---|---|---|---|---|---|")
    for effect in (0.005, 0.01, 0.015, 0.02):
        diffs = rng.normal(-effect, SPREAD, (e, MAX))
        powers = {n: fixed_power(diffs, n) for n in range(6, MAX + 1)}
        for spending in sq.SPENDING:
            design = sq.Design(ALPHA, DELTA, looks, spending)
            out = sq.simulate(diffs, design)
            right = (out["state"] == sq.RESOLVED) & (diffs[:, :MAX].mean(axis=1) < 0)
            power = float(right.mean())
            mean_n = float(out["n"].mean())
            fixed = next((n for n, p in powers.items() if p >= power), None)
            fixed_txt = f"{fixed} seeds ({powers[fixed]:.3f})" if fixed else f"> {MAX} seeds"
            saved = f"{1 - mean_n / fixed:+.0%}" if fixed else "-"
            print(
                f"| {spending} | {-effect * 100:+.1f} pp | {power:.3f} | {mean_n:.2f} | "
                f"{fixed_txt} | {saved} |"
            )
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
