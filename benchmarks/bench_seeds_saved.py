"""Seeds (and training time) a question's rounds saved on a real, stored experiment.

Reads one experiment's store (no training): the seeds each configuration was trained on and
their wall times, against the fixed design that could answer the same question without
looking in between (every configuration at ``question.max_seeds``, the most the rounds may
spend). A configuration's missing seeds are priced at its mean wall time per seed.

    python benchmarks/bench_seeds_saved.py experiments/degradation.yaml --profile cpu

The "seeds saved on one real experiment" in benchmarks/README.md come from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from archbench.analysis.data import load_experiment, scored_runs
from archbench.analysis.questions import display, question_table
from archbench.runner.spec import load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "spec", nargs="?", default="experiments/degradation.yaml", help="the experiment's spec"
    )
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec, args.profile)
    if spec.question is None:
        print(f"{args.spec}: profile {spec.profile!r} states no question", file=sys.stderr)
        return 2
    if not Path(spec.storage).exists() and "://" not in spec.storage:
        print(
            f"skipped: no store {spec.storage} (run `archbench run {args.spec} --profile "
            f"{spec.profile}` first)"
        )
        return 0
    data = load_experiment(spec.storage, spec.name, spec.profile)
    runs = scored_runs(data.runs)
    max_seeds = spec.question.max_seeds
    rows, spent_n, spent_s, fixed_n, fixed_s = [], 0, 0.0, 0, 0.0
    for label, group in runs.groupby("name", sort=False):
        n, wall = len(group), float(group["wall_time_s"].sum())
        per_seed = wall / n
        rows.append([label, n, max_seeds, f"{wall:.0f}", f"{per_seed * max_seeds:.0f}"])
        spent_n, spent_s = spent_n + n, spent_s + wall
        fixed_n, fixed_s = fixed_n + max_seeds, fixed_s + per_seed * max_seeds
    print(f"{spec.name} ({spec.profile}): {len(rows)} configurations")
    print(
        tabulate(
            rows,
            headers=["configuration", "seeds trained", "fixed design", "wall s", "wall s, fixed"],
            tablefmt="github",
        )
    )
    print(
        f"\nseeds: {spent_n} trained vs {fixed_n} fixed ({1 - spent_n / fixed_n:.0%} fewer); "
        f"training wall time (sum over runs): {spent_s:.0f} s vs {fixed_s:.0f} s "
        f"({1 - spent_s / fixed_s:.0%} less)"
    )
    table = question_table(data)
    print()
    print(tabulate(display(table), headers="keys", tablefmt="github", showindex=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
