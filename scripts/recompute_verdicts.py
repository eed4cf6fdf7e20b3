"""Recompute every verdict of experiments/RESULTS.md from the committed run CSVs.

Reads ``experiments/results/<experiment>_runs.csv`` (one row per run, as ``archbench export``
writes it) and the spec ``experiments/<experiment>.yaml`` (for the seeds each configuration
is owed), and runs the library's own tables on them (:func:`summary_table`,
:func:`comparisons_table`: diverged seeds at 100% error, the exact sign-flip test, Holm,
"undetermined"/"no verdict"), so the numbers in RESULTS.md can be reproduced without a store
or any training. Writes Markdown to ``--output`` (default: experiments/results/verdicts.md)
or stdout (``-``).

Usage: python scripts/recompute_verdicts.py [--output PATH] [EXPERIMENT ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml
from tabulate import tabulate

from archbench.analysis.data import ExperimentData, annotate
from archbench.analysis.questions import display as question_display
from archbench.analysis.questions import question_table
from archbench.analysis.tables import comparisons_table, display, summary_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
JSON_COLUMNS = ("hyperparameters", "recipe", "env", "diverged_at")
#: CSV stem -> spec stem where they differ (a second profile exported under its own name)
SPEC_OF = {"preact_shortcuts": "preact_orderings"}
#: (metric, pairs) per experiment: what its RESULTS.md section reports.
DEFAULT_VIEWS = (("test_err", "best"), ("test_err", "all"), ("train_err", "all"))
SUMMARY_COLUMNS = ("variant", "params", "n", "test error %", "95% CI %", "val err %", "note")
PAIR_COLUMNS = ("a", "b", "n", "a-b (pp)", "95% CI (pp)", "p (sign-flip)", "p (Holm)", "verdict")


def load_csv(experiment: str) -> dict[str, ExperimentData]:
    """One :class:`ExperimentData` per profile of ``experiment``'s runs CSV."""
    path = RESULTS / f"{experiment}_runs.csv"
    runs = pd.read_csv(path)
    for column in JSON_COLUMNS:
        if column in runs:
            runs[column] = [json.loads(v) if isinstance(v, str) else None for v in runs[column]]
    if "block_family" not in runs:  # exported before the store recorded it
        runs["block_family"] = runs["family"]
    runs = annotate(runs)
    spec_path = ROOT / "experiments" / f"{SPEC_OF.get(experiment, experiment)}.yaml"
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.exists() else {}
    empty = pd.DataFrame()
    return {
        profile: ExperimentData(
            experiment,
            profile,
            str(path.relative_to(ROOT)),
            group.reset_index(drop=True),
            empty,
            empty,
            spec=spec,
        )
        for profile, group in runs.groupby("profile", sort=True)
    }


def _markdown(frame: pd.DataFrame, columns: tuple[str, ...]) -> str:
    shown = display(frame, compact=False)
    keep = [c for c in columns if c in shown.columns]
    return tabulate(
        shown[keep], headers="keys", tablefmt="github", showindex=False, disable_numparse=True
    )


def report(experiment: str, views: tuple[tuple[str, str], ...] = DEFAULT_VIEWS) -> str:
    parts = []
    for profile, data in load_csv(experiment).items():
        parts.append(f"## {experiment}, profile {profile}\n")
        parts.append(_markdown(summary_table(data), SUMMARY_COLUMNS) + "\n")
        question = question_table(data)
        if not question.empty:  # the verdicts of a spec with a question: its rounds'
            parts.append("### the spec's question (sequential: the verdicts)\n")
            parts.append(question.attrs["note"] + "\n")
            shown = question_display(question)
            parts.append(
                tabulate(
                    shown,
                    headers="keys",
                    tablefmt="github",
                    showindex=False,
                    disable_numparse=True,
                )
                + "\n"
            )
            parts.append(
                "(the tables below test all stored seeds once, without the sequential correction)\n"
            )
        for metric, pairs in views:
            table = comparisons_table(data, metric, pairs)  # type: ignore[arg-type]
            what = "against the reference" if pairs == "best" else "all pairs"
            holm = int(table.attrs.get("holm_family", 0)) if len(table) else 0
            parts.append(f"### {metric}, {what} (Holm over {holm})\n")
            if table.attrs.get("note"):
                parts.append(table.attrs["note"] + "\n")
            parts.append(_markdown(table, PAIR_COLUMNS) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", help="default: every *_runs.csv")
    parser.add_argument("--output", default=str(RESULTS / "verdicts.md"), help="or - for stdout")
    args = parser.parse_args(argv)
    names = args.experiments or sorted(
        p.name.removesuffix("_runs.csv") for p in RESULTS.glob("*_runs.csv")
    )
    text = (
        "# Verdicts recomputed from the committed CSVs\n\n"
        "Generated by `python scripts/recompute_verdicts.py`; do not edit. Diverged seeds "
        "count at 100% error; paired verdicts from the exact sign-flip test, Holm-corrected "
        "over each table's rows (README, 'Statistics').\n\n"
        + "\n".join(report(name) for name in names)
    )
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
