"""``archbench plot``, ``archbench report`` and ``archbench stats``: read a results store.

Each takes an experiment name (or its spec YAML, which supplies the name, profile and
storage), ``--storage`` (default ``results/<experiment>.db``, the specs' default) and
``--profile`` (needed only when the experiment ran several).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from archbench.errors import SpecError

METRIC_CHOICES = ("test_err", "val_err", "train_err", "test_top5_err")


def _common(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
    p.add_argument(
        "experiment", nargs="?" if optional else None, help="experiment name, or its spec YAML file"
    )
    p.add_argument(
        "--storage",
        help="results storage: a SQLite path, sqlite:///..., journal:path.log or "
        "postgresql://... (default: the spec's storage, else results/<experiment>.db)",
    )
    p.add_argument("--profile", help="profile to analyse (needed when several ran)")
    p.add_argument(
        "--all-configs",
        action="store_true",
        help="every stored configuration, also those no longer in the spec (removed or edited)",
    )
    p.add_argument(
        "--metric",
        default="test_err",
        choices=METRIC_CHOICES,
        help="final metric of the tables and trade-off plots (default test_err)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw trade-off plots from a results store",
        # The kinds come from the plot registry, read only when the command runs (importing
        # the plot modules loads matplotlib and seaborn: too slow for every CLI start).
        description="Draw one plot kind (or all) as PNG files; 'archbench plot list' lists "
        "the kinds.",
    )
    p.add_argument("kind", metavar="KIND", help="a plot kind, 'all', or 'list' (print the kinds)")
    _common(p, optional=True)  # 'archbench plot list' needs no experiment
    p.add_argument("--out", help="output folder (default results/plots/<experiment>/<profile>)")
    p.add_argument(
        "--family",
        help="family of the depth x width heatmap (default: fullest grid); for gradflow, "
        "a comma-separated list of up to 4 families to compare; for preact, the two "
        "families to draw, 'original,other'",
    )
    p.set_defaults(func=cmd_plot)

    p = subparsers.add_parser(
        "report",
        help="write one self-contained HTML report of an experiment",
        description="Tables, every plot that has its data, and the spec, in one HTML file "
        "that opens in a browser without a server.",
    )
    _common(p)
    p.add_argument("--out", help="HTML file (default results/<experiment>-<profile>-report.html)")
    p.add_argument(
        "--pairs",
        choices=("best", "all"),
        default="best",
        help="paired comparisons: each vs the best by validation error (complete configurations only), or all pairs",
    )
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser(
        "stats",
        help="print per-configuration statistics and paired comparisons",
        description="Mean, std and 95% t-interval over seeds per configuration; paired "
        "differences on shared seeds with Holm-corrected tests; the fairness facts.",
    )
    _common(p)
    p.add_argument(
        "--pairs",
        choices=("best", "all"),
        default="best",
        help="each configuration vs the best by validation error, or all pairs",
    )
    p.add_argument("--csv", metavar="DIR", help="also write facts/summary/comparisons CSVs here")
    p.add_argument(
        "--format",
        choices=("text", "markdown", "latex"),
        default="text",
        help="tables as text (default), Markdown or LaTeX (booktabs), with mean ± CI cells and "
        "the paired verdicts, ready to paste",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print facts, per-configuration rows and comparisons as JSON (archbench.stats/1)",
    )
    p.set_defaults(func=cmd_stats)


def _load(args: argparse.Namespace) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # before anything draws: no display needed, ever
    from archbench.analysis.data import load_experiment
    from archbench.store import StoreError

    experiment, profile, storage = args.experiment, args.profile, args.storage
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SpecError(f"no spec file {experiment!r}")
        from archbench.runner.spec import load_spec

        spec = load_spec(path, profile)
        experiment, profile = spec.name, spec.profile
        storage = storage or spec.storage
    default = storage is None
    storage = storage or f"results/{experiment}.db"
    try:
        return load_experiment(
            storage, experiment, profile, all_configs=getattr(args, "all_configs", False)
        )
    except StoreError as exc:
        if default:
            raise StoreError(f"{exc}; give the store with --storage PATH") from None
        raise


def _check_folder(value: str | None, flag: str) -> None:
    """An output folder: may be created, but not where a file is."""
    if value is None:
        return
    path = Path(value).expanduser()
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise SpecError(f"{flag} {value!r}: {str(p)!r} is a file, not a folder")


def cmd_plot(args: argparse.Namespace) -> int:
    from archbench.analysis.plots import PlotOptions, make_plots, plot_kinds
    from archbench.errors import UnknownNameError

    kinds = plot_kinds()
    if args.kind == "list":
        from archbench.registry import PLOTS

        width = max(map(len, kinds))
        print("\n".join(f"{k.ljust(width)}  {PLOTS.get(k).title}" for k in kinds))
        return 0
    if args.experiment is None:
        raise SpecError("archbench plot KIND EXPERIMENT: give the experiment (or its spec YAML)")
    if args.kind != "all" and args.kind not in kinds:
        raise UnknownNameError(f"unknown plot kind {args.kind!r}; known: {', '.join(kinds)}, all")
    _check_folder(args.out, "--out")
    data = _load(args)
    out = Path(args.out or Path("results") / "plots" / data.experiment / data.profile)
    options = PlotOptions(metric=args.metric, family=args.family)
    results = make_plots(
        data,
        None if args.kind == "all" else [args.kind],
        options=options,
        out_dir=out,
        keep_figures=False,
    )
    for r in results:
        if r.path is not None:
            print(f"{r.kind:18s} {r.path}")
            for note in r.notes:
                print(f"{'':18s}   note: {note}")
        else:
            print(f"{r.kind:18s} skipped: {r.skipped}")
    drawn = sum(r.path is not None for r in results)
    if drawn == 0:
        reason = results[0].skipped if len(results) == 1 else "no plot had its data"
        print(f"archbench: no plot drawn: {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from archbench.analysis.plots import PlotOptions
    from archbench.analysis.report import write_report

    if args.out is not None:
        if Path(args.out).is_dir():
            raise SpecError(f"--out {args.out!r} is a folder; give an HTML file name")
        _check_folder(str(Path(args.out).parent), "--out")
    data = _load(args)
    out = Path(args.out or Path("results") / f"{data.experiment}-{data.profile}-report.html")
    result = write_report(
        data, out, metric=args.metric, pairs=args.pairs, options=PlotOptions(metric=args.metric)
    )
    drawn = len(result.plots) - len(result.skipped)
    print(f"report: {result.path} ({drawn} figures, {len(result.skipped)} plot kinds skipped)")
    for r in result.skipped:
        print(f"  skipped {r.kind}: {r.skipped}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from archbench.analysis.tables import (
        comparisons_table,
        fairness_facts,
        summary_table,
        to_text,
    )

    _check_folder(args.csv, "--csv")
    if args.json and args.format != "text":
        raise SpecError("--json and --format are alternatives; give one")
    data = _load(args)
    facts = fairness_facts(data)
    summary = summary_table(data, args.metric)
    comparisons = comparisons_table(data, args.metric, args.pairs)
    from archbench.analysis.questions import display as question_display
    from archbench.analysis.questions import question_table

    question = question_table(data)
    if args.json:
        # archbench.stats/1: {"schema", "experiment", "profile", "metric", "facts": {fact:
        # value}, "configurations": [row], "comparisons": [row]}; percent columns end in _pct.
        from archbench.cli.format import emit, frame_records, to_json

        payload = {
            "experiment": data.experiment,
            "profile": data.profile,
            "metric": args.metric,
            "facts": dict(zip(facts["fact"], facts["value"])),
            "configurations": frame_records(summary),
            "comparisons": frame_records(comparisons),
            "comparisons_note": comparisons.attrs.get("note", ""),
            # With a question in the spec: its comparisons as the rounds decided them.
            "question": frame_records(question),
            "question_note": question.attrs.get("note", ""),
        }
        emit(to_json("archbench.stats/1", payload))
    elif args.format != "text":
        from archbench.cli import paper

        title = f"{data.title}"
        blocks = [
            paper.section(
                f"{title}: fairness facts", paper.facts_table(facts, args.format), args.format
            ),
            paper.section(
                f"{title}: per configuration ({args.metric}, percent; best first)",
                paper.stats_table(summary, args.format),
                args.format,
            ),
            *(
                []
                if question.empty
                else [
                    paper.section(
                        f"{title}: the spec's question (sequential: the verdicts)",
                        f"{question.attrs['note']}\n\n"
                        + paper.question_table(question, args.format),
                        args.format,
                    )
                ]
            ),
            paper.section(
                f"{title}: "
                + (
                    "exploratory paired comparisons (a - b over shared seeds, Holm-corrected; "
                    "all stored seeds once, without the sequential correction)"
                    if not question.empty
                    else "paired comparisons (a - b over shared seeds, Holm-corrected)"
                ),
                paper.stats_table(comparisons, args.format)
                if not comparisons.empty
                else "(fewer than two configurations)",
                args.format,
            ),
        ]
        print("\n\n".join(blocks))
    else:
        print(f"== {data.title}: fairness facts")
        width = int(facts["fact"].str.len().max())
        for fact, value in zip(facts["fact"], facts["value"]):
            print(f"{fact:>{width}s}  {value}")
        print(f"\n== per configuration ({args.metric}, percent; complete first, best first)")
        print(to_text(summary))
        if not question.empty:
            print("\n== the spec's question (sequential: seeds spent round by round)")
            print(question.attrs["note"])
            print(question_display(question).to_string(index=False))
        print(
            f"\n== {'exploratory ' if not question.empty else ''}paired comparisons (a - b "
            "over shared seeds; exact sign-flip test, Holm-corrected)"
        )
        if comparisons.attrs.get("note"):
            print(comparisons.attrs["note"])
        print(to_text(comparisons) if not comparisons.empty else "(fewer than two configurations)")
    if args.csv:
        out = Path(args.csv)
        out.mkdir(parents=True, exist_ok=True)
        frames: dict[str, pd.DataFrame] = {
            "facts": facts,
            "summary": summary,
            "comparisons": comparisons,
        }
        if not question.empty:
            frames["question"] = question
        for name, frame in frames.items():
            path = out / f"{data.experiment}-{data.profile}-{name}.csv"
            frame.to_csv(path, index=False)
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)  # JSON stays clean
    return 0
