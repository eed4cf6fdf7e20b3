"""Everything for one experiment in one folder: the PNG figures, the CSV tables, report.html.

    python analysis/make_report.py quickstart --storage results/quickstart.db --out results/qs

A thin script over :mod:`archbench.analysis` (the same code as ``archbench plot all``,
``archbench stats --csv`` and ``archbench report``), for people who prefer one command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

from archbench.analysis.data import load_experiment
from archbench.analysis.plots import PlotOptions, make_plots
from archbench.analysis.report import write_report
from archbench.analysis.tables import comparisons_table, fairness_facts, summary_table
from archbench.errors import ArchbenchError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--storage", help="default results/<experiment>.db")
    p.add_argument("--profile")
    p.add_argument("--metric", default="test_err")
    p.add_argument("--out", help="output folder (default results/<experiment>-<profile>)")
    args = p.parse_args(argv)
    matplotlib.use("Agg")  # Optuna's views draw through pyplot: never open a window
    try:
        data = load_experiment(
            args.storage or f"results/{args.experiment}.db", args.experiment, args.profile
        )
    except ArchbenchError as exc:
        print(f"make_report: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or f"results/{data.experiment}-{data.profile}")
    options = PlotOptions(metric=args.metric)
    for r in make_plots(data, options=options, out_dir=out / "figures", keep_figures=False):
        print(f"{r.kind:18s} {r.path or 'skipped: ' + str(r.skipped)}")
    tables = {
        "facts": fairness_facts(data),
        "summary": summary_table(data, args.metric),
        "comparisons": comparisons_table(data, args.metric),
    }
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv", index=False)
        print(f"{name:18s} {out / f'{name}.csv'}")
    report = write_report(data, out / "report.html", metric=args.metric, options=options)
    print(f"{'report':18s} {report.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
