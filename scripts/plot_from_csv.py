"""Redraw a plot kind from the committed CSVs (no store, no training).

Reads ``experiments/results/<experiment>_runs.csv`` and ``<experiment>_epochs.csv`` (as
``archbench export`` writes them) into an :class:`ExperimentData` and renders one registered
plot kind with the library's own code. Kinds that need what the CSVs do not hold (per-block
diagnostics for ``gradflow``/``branch``, the Optuna study for ``optuna-*``) are skipped with
the reason.

Usage: python scripts/plot_from_csv.py KIND EXPERIMENT [--profile cpu] [--output PATH]
  e.g. python scripts/plot_from_csv.py preact preact_orderings \\
           --output experiments/figures/preact_orderings_curves.png
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recompute_verdicts import RESULTS, load_csv

from archbench.analysis.data import ExperimentData, annotate
from archbench.analysis.plots import PlotOptions, render


def load_with_epochs(experiment: str, profile: str) -> ExperimentData:
    """``load_csv``'s runs of one profile plus its epochs CSV; the epochs' ``block_family``
    (recorded per run) replaces the runs CSV's fallback so roles are the store's."""
    data = load_csv(experiment)[profile]
    epochs = pd.read_csv(RESULTS / f"{experiment}_epochs.csv")
    epochs = epochs[epochs["profile"] == profile]
    runs = data.runs
    if "block_family" in epochs:
        family_of = dict(zip(epochs["run_id"], epochs["block_family"]))
        runs = runs.assign(
            block_family=[family_of.get(r, f) for r, f in zip(runs["run_id"], runs["block_family"])]
        )
        runs = annotate(runs.drop(columns=["group", "role"]))
    else:
        epochs = epochs.assign(block_family=epochs["family"])
    epochs = annotate(epochs)
    return dataclasses.replace(
        data, runs=runs.reset_index(drop=True), epochs=epochs.reset_index(drop=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind")
    parser.add_argument("experiment")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--metric", default="test_err")
    parser.add_argument("--output", help="default: experiments/figures/<experiment>_<kind>.png")
    args = parser.parse_args(argv)
    data = load_with_epochs(args.experiment, args.profile)
    result = render(data, args.kind, PlotOptions(metric=args.metric))
    if result.figure is None:
        print(f"skipped: {result.skipped}")
        return 1
    out = Path(args.output or RESULTS.parent / "figures" / f"{args.experiment}_{args.kind}.png")
    result.figure.savefig(out)
    print(f"wrote {out}" + "".join(f"\nnote: {n}" for n in result.notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
