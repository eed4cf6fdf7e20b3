"""``archbench results | export``: read an experiment's results from the store (never write it).

``--json`` output of ``results`` (a ``"schema"`` key first; keys are only added within a version):

``archbench.results/1``::

    {"schema", "experiment", "profile", "rows": [{column: value}]}   (errors as fractions)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from archbench.cli.exit_codes import OK
from archbench.errors import ArchbenchError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="the results table of an experiment")
    p.add_argument("experiment", help="an experiment spec file, or an experiment name")
    p.add_argument("--profile", help="profile (default: every profile)")
    p.add_argument("--storage", help="database (default: the spec's storage)")
    p.add_argument("--runs", action="store_true", help="one row per run instead of per variant")
    p.add_argument(
        "--all-configs",
        action="store_true",
        help="every stored configuration, also those no longer in the spec (removed or edited)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the rows as JSON (errors as fractions)"
    )
    p.add_argument(
        "--format",
        choices=("text", "markdown", "latex"),
        default="text",
        help="table as text (default), Markdown or LaTeX (booktabs; errors as mean ± std)",
    )
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("export", help="export the results store to CSV or Parquet")
    p.add_argument("experiment", help="an experiment spec file, or an experiment name")
    p.add_argument("--storage", help="database (default: the spec's storage)")
    p.add_argument(
        "--format",
        choices=("csv", "parquet"),
        help="file format (default: from the --out suffix, .csv or .parquet)",
    )
    p.add_argument("--table", choices=("runs", "epochs", "variants", "diagnostics"), default="runs")
    p.add_argument("--out", required=True, help="output file")
    p.set_defaults(func=cmd_export)


def _experiment_and_storage(
    experiment: str, storage: str | None, profile: str | None = None
) -> tuple[str, str]:
    """An experiment given as a spec file or a name, and where its results are."""
    if experiment.endswith((".yaml", ".yml")) or Path(experiment).is_file():
        from archbench.runner.spec import load_spec

        spec = load_spec(experiment, profile)
        return spec.name, storage or spec.storage
    if storage is None:
        default = Path("results") / f"{experiment}.db"
        if not default.exists():
            raise ArchbenchError(
                f"no storage given for experiment {experiment!r} and {default} does not exist; "
                "pass the spec file or --storage"
            )
        storage = str(default)
    return experiment, storage


def _open_store(storage: str) -> Any:
    from archbench.store import ResultsStore
    from archbench.store.storage import resolve_storage

    resolved = resolve_storage(storage)
    if resolved.kind == "sqlite":
        path = Path(resolved.store_url.removeprefix("sqlite:///"))
        if not path.exists():
            raise ArchbenchError(f"no results database at {path}")
    return ResultsStore(resolved.store_url, create=False)  # a reader never creates tables


_RUN_COLUMNS = (
    "run_id", "profile", "name", "seed", "status", "params", "macs", "val_err", "test_err",
    "epochs_done", "wall_time_s",
)  # fmt: skip
_SUMMARY_COLUMNS = (
    "profile", "name", "family", "depth", "width", "params", "macs", "budget_error", "n_seeds",
    "val_err_mean", "val_err_std", "test_err_mean", "test_err_std", "n_diverged", "n_pruned",
    "n_failed",
)  # fmt: skip


def _as_percent(table: Any) -> Any:
    """Errors (fractions in the store) as percent, like `archbench train` and `stats` show."""
    changes = {}
    for col in table.columns:
        if col.endswith(("_err", "_err_mean", "_err_std")):
            changes[f"{col} %"] = [
                "" if v is None or v != v else f"{100 * v:.2f}" for v in table[col]
            ]
        elif col == "budget_error":  # signed: over or under the target
            changes["budget_error"] = [
                "" if e is None or e != e else f"{e:+.2%}" for e in table[col]
            ]
    renamed = table.assign(**changes)
    order = [f"{c} %" if f"{c} %" in changes else c for c in table.columns]
    return renamed[order]


def _current(store: Any, storage: str, experiment: str, frame: Any, *, every: bool) -> Any:
    """Rows of the configurations each profile's study last ran, under its labels (a study
    without that record, e.g. a sampled one, keeps every row); ``every``: the others too,
    marked as not in the spec."""
    from archbench.analysis.data import current_configs, load_study, mark_current
    from archbench.analysis.seeds import study_seeds
    from archbench.store.storage import resolve_storage

    if frame.empty:
        return frame
    resolved = resolve_storage(storage)
    parts = []
    for profile, part in frame.groupby("profile", sort=False):
        study, _ = load_study(resolved, store.engine, f"{experiment}:{profile}")
        configs = current_configs(study)
        if configs is not None:
            part = mark_current(
                part if every else part[part["config_key"].isin(list(configs))], configs
            )
        seeds = study_seeds(study, str(profile))
        if seeds and not every and "seed" in part.columns:  # seeds removed from the spec
            part = part[part["seed"].isin(seeds)]
        parts.append(part)
    import pandas as pd

    return pd.concat(parts).reset_index(drop=True) if parts else frame


def print_results(
    experiment: str,
    profile: str | None,
    storage: str,
    *,
    runs: bool,
    as_json: bool = False,
    fmt: str = "text",
    all_configs: bool = False,
) -> int:
    """The results table of an experiment: the configurations of the spec it last ran,
    or (``all_configs``) every stored one."""
    with _open_store(storage) as store:
        known = store.experiments()
        names = sorted(set(known["experiment"])) if len(known) else []
        if experiment not in names:
            raise ArchbenchError(
                f"no results for experiment {experiment!r}; known: {', '.join(names) or 'none'}"
            )
        if runs:
            frame = store.runs(experiment=experiment, profile=profile)
            frame = _current(store, storage, experiment, frame, every=all_configs)
            table = frame[[c for c in _RUN_COLUMNS if c in frame.columns]]
        else:
            from archbench.store.queries import summarize

            frame = store.runs(experiment=experiment, profile=profile)
            frame = _current(store, storage, experiment, frame, every=all_configs)
            # Summarised after the filter: runs of seeds removed from the spec do not count.
            summary = summarize(frame) if len(frame) else store.summary(experiment, profile)
            if len(summary):
                from archbench.analysis.data import unique_labels

                # A search that sampled one architecture with several recipes: say which.
                summary["name"] = unique_labels(summary)
            # Ranked by validation error: the test set is reported, never used to select.
            table = summary[[c for c in _SUMMARY_COLUMNS if c in summary.columns]]
            if "val_err_mean" in table.columns:
                table = table.sort_values("val_err_mean")
    if as_json:
        from archbench.cli.format import emit, frame_records, to_json

        payload = {"experiment": experiment, "profile": profile, "rows": frame_records(table)}
        emit(to_json("archbench.results/1", payload))
        return 0
    if fmt != "text":
        from archbench.cli.paper import results_table

        print(results_table(table, fmt))
        return 0
    from archbench.cli.format import frame_table

    print(frame_table(_as_percent(table)))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    experiment, storage = _experiment_and_storage(args.experiment, args.storage, args.profile)
    if args.json and args.format != "text":
        raise ArchbenchError("--json and --format are alternatives; give one")
    return print_results(
        experiment,
        args.profile,
        storage,
        runs=args.runs,
        as_json=args.json,
        fmt=args.format,
        all_configs=args.all_configs,
    )


def check_output_file(value: str, flag: str) -> Path:
    """A file the command will write: not a folder, in a folder that exists and is writable."""
    import os

    path = Path(value).expanduser()
    if path.is_dir():
        raise ArchbenchError(f"{flag} {value!r} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ArchbenchError(f"{flag} {value!r}: folder {str(folder)!r} {what}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ArchbenchError(f"{flag} {value!r}: permission denied")
    return path


def cmd_export(args: argparse.Namespace) -> int:
    out = check_output_file(args.out, "--out")
    experiment, storage = _experiment_and_storage(args.experiment, args.storage)
    with _open_store(storage) as store:
        known = store.experiments()
        names = sorted(set(known["experiment"])) if len(known) else []
        if experiment not in names:
            raise ArchbenchError(
                f"no results for experiment {experiment!r}; known: {', '.join(names) or 'none'}"
            )
        try:
            path = store.export(out, format=args.format, table=args.table, experiment=experiment)
        except OSError as exc:
            raise ArchbenchError(f"--out {args.out!r}: cannot write: {exc.strerror}") from None
    print(f"wrote {path}", file=sys.stdout)
    return OK
