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
    question(rng, max(args.experiments // 2, 50))
    print(f"\n({time.perf_counter() - start:.0f} s)")


def question(rng: np.random.Generator, e: int) -> None:
    """A whole question through the replay the runner uses: six configurations against a
    reference, gaps -2 (better than it: racing must not stop the reference), 0, 0.5, 1, 2
    and 4 pp (seed spread 1 pp), Holm over the six; seeds spent by all seven configurations
    (the reference too) vs a fixed design of ``MAX`` seeds each."""
    gaps = {"ref": 0.0, "g-2": -0.02, "g0": 0.0, "g0.5": 0.005, "g1": 0.01, "g2": 0.02, "g4": 0.04}
    pairs = [(c, "ref") for c in gaps if c != "ref"]
    seeds = list(range(MAX))
    design = sq.Design(ALPHA, DELTA, sq.plan_looks(MIN, MAX, PER_ROUND), "obrien-fleming")
    states: dict[str, list[str]] = {c: [] for c, _ in pairs}
    spent = []
    for _ in range(e):
        shared = rng.normal(0.2, 0.01, MAX)  # what a seed does to every configuration
        metric = {
            c: dict(zip(seeds, shared + gap + rng.normal(0, SPREAD / np.sqrt(2), MAX)))
            for c, gap in gaps.items()
        }
        val = {c: {s: v + 0.001 for s, v in m.items()} for c, m in metric.items()}
        result = sq.replay(design, pairs, metric, val, seeds)
        used = {c: 0 for c in gaps}
        for comp in result.comparisons:
            states[comp.a].append(comp.state)
            used[comp.a] = max(used[comp.a], comp.n)
            used["ref"] = max(used["ref"], comp.n)
        spent.append(sum(used.values()))
    print(
        f"\nA question of {len(pairs)} comparisons against a reference ({e} simulated "
        f"experiments, obrien-fleming, Holm over the {len(pairs)}):"
    )
    print("\n| configuration | a - ref | resolved | equivalent | open | stopped (raced) |")
    print("|---|---|---|---|---|---|")
    for c, _ in pairs:
        got = np.array(states[c])
        print(
            f"| {c} | {gaps[c] * 100:+g} pp | {(got == sq.RESOLVED).mean():.3f} | "
            f"{(got == sq.EQUIVALENT).mean():.3f} | {(got == sq.OPEN).mean():.3f} | "
            f"{(got == sq.STOPPED).mean():.3f} |"
        )
    fixed = len(gaps) * MAX
    print(
        f"\nseeds trained, all configurations: {np.mean(spent):.1f} on average vs {fixed} for "
        f"{MAX} seeds each ({1 - np.mean(spent) / fixed:.0%} fewer)"
    )


if __name__ == "__main__":
    main()
