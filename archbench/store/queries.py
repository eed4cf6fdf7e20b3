"""Read queries over the store, each returning a pandas DataFrame with stable columns and dtypes.

Columns come from the tables' own definitions, so an empty result has the same columns and
dtypes as a full one: integer columns are ``int64`` (``Int64`` where NULL is allowed), floats
``float64``, times UTC ``datetime64``, JSON columns Python objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from archbench.store import schema as db
from archbench.store.schema import RUN_STATUSES

EXPORT_TABLES = ("variants", "runs", "epochs", "diagnostics", "summary", "experiments")

#: Variant columns joined onto runs, epochs and diagnostics.
VARIANT_COLUMNS = (
    "name",
    "family",
    "block",
    "block_family",
    "depth",
    "width",
    "num_blocks",
    "params",
    "macs",
    "flops",
    "acts",
)
#: Run columns joined onto epochs and diagnostics.
RUN_KEY_COLUMNS = (
    "experiment",
    "profile",
    "study_name",
    "trial_number",
    "config_key",
    "seed",
    "status",
    "spec_hash",
    *db.BUDGET_COLUMNS,
)


def _frame(conn: sa.Connection, query: sa.Select) -> pd.DataFrame:
    result = conn.execute(query)
    # Plain tuples: pandas inspects SQLAlchemy Row objects one by one, ~10x slower.
    frame = pd.DataFrame.from_records(
        [tuple(row) for row in result.fetchall()], columns=list(result.keys())
    )
    for col in query.selected_columns:
        name = col.key
        kind = col.type
        if isinstance(kind, sa.DateTime):
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif isinstance(kind, sa.Float):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        elif isinstance(kind, sa.Integer):
            nullable = getattr(col, "nullable", True) and not getattr(col, "primary_key", False)
            frame[name] = frame[name].astype("Int64" if nullable else "int64")
        elif isinstance(kind, sa.JSON):
            frame[name] = frame[name].astype(object)
        else:
            frame[name] = frame[name].astype(object)
    return frame


def _variant_cols() -> list[sa.ColumnElement]:
    return [db.variants.c[name] for name in VARIANT_COLUMNS]


def variants(conn: sa.Connection) -> pd.DataFrame:
    return _frame(
        conn, sa.select(db.variants).order_by(db.variants.c.created_at, db.variants.c.spec_hash)
    )


def _filter(query: sa.Select, experiment: str | None, profile: str | None) -> sa.Select:
    if experiment is not None:
        query = query.where(db.runs.c.experiment == experiment)
    if profile is not None:
        query = query.where(db.runs.c.profile == profile)
    return query


def runs(
    conn: sa.Connection,
    experiment: str | None = None,
    profile: str | None = None,
    statuses: Sequence[str] | None = None,
) -> pd.DataFrame:
    query = sa.select(db.runs, *_variant_cols()).join_from(db.runs, db.variants)
    query = _filter(query, experiment, profile)
    if statuses is not None:
        query = query.where(db.runs.c.status.in_(list(statuses)))
    frame = _frame(conn, query.order_by(db.runs.c.run_id))
    return _with_hyperparameters(frame)


def _with_hyperparameters(frame: pd.DataFrame) -> pd.DataFrame:
    """Scalar hyperparameters as ``hp_<name>`` columns, like Optuna's ``params_<name>``."""
    names: dict[str, None] = {}
    for hp in frame["hyperparameters"]:
        for key, value in (hp or {}).items():
            if value is None or isinstance(value, (bool, int, float, str)):
                names.setdefault(key, None)
    if not names:
        return frame
    columns = {
        f"hp_{key}": [(hp or {}).get(key) for hp in frame["hyperparameters"]] for key in names
    }
    return pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)


def _detail(
    table: sa.Table,
    experiment: str | None,
    run_ids: Sequence[int] | None,
    profile: str | None,
    order: Sequence[str],
) -> sa.Select:
    run_cols = [db.runs.c[name] for name in RUN_KEY_COLUMNS]
    # In diagnostics "block" names the block ("stages.0.1"); the variant's type is block_type.
    variant_cols = [
        c.label("block_type") if c.key == "block" and table is db.diagnostics else c
        for c in _variant_cols()
    ]
    query = (
        sa.select(table, *run_cols, *variant_cols)
        .join_from(table, db.runs, table.c.run_id == db.runs.c.run_id)
        .join(db.variants, db.runs.c.spec_hash == db.variants.c.spec_hash)
    )
    query = _filter(query, experiment, profile)
    if run_ids is not None:
        query = query.where(table.c.run_id.in_(list(run_ids)))
    return query.order_by(*(table.c[name] for name in order))


def epochs(
    conn: sa.Connection,
    experiment: str | None = None,
    run_ids: Sequence[int] | None = None,
    profile: str | None = None,
) -> pd.DataFrame:
    query = _detail(db.epochs, experiment, run_ids, profile, ("run_id", "epoch"))
    return _frame(conn, query)


def diagnostics(
    conn: sa.Connection,
    experiment: str | None = None,
    run_ids: Sequence[int] | None = None,
    profile: str | None = None,
    epoch: int | None = None,
) -> pd.DataFrame:
    query = _detail(
        db.diagnostics, experiment, run_ids, profile, ("run_id", "epoch", "block_index")
    )
    if epoch is not None:
        query = query.where(db.diagnostics.c.epoch == int(epoch))
    return _frame(conn, query)


def experiment_names(conn: sa.Connection) -> list[str]:
    query = sa.select(db.runs.c.experiment).distinct().order_by(db.runs.c.experiment)
    return [row[0] for row in conn.execute(query)]


def experiments(conn: sa.Connection) -> pd.DataFrame:
    counts = [
        sa.func.sum(sa.case((db.runs.c.status == status, 1), else_=0)).label(f"n_{status}")
        for status in RUN_STATUSES
    ]
    query = (
        sa.select(
            db.runs.c.experiment,
            db.runs.c.profile,
            sa.func.count(sa.distinct(db.runs.c.spec_hash)).label("n_variants"),
            sa.func.count(sa.distinct(db.runs.c.config_key)).label("n_configs"),
            sa.func.count().label("n_runs"),
            *counts,
            sa.func.min(db.runs.c.started_at).label("first_started_at"),
            sa.func.max(db.runs.c.finished_at).label("last_finished_at"),
        )
        .group_by(db.runs.c.experiment, db.runs.c.profile)
        .order_by(db.runs.c.experiment, db.runs.c.profile)
    )
    result = conn.execute(query)
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    for name in frame.columns:
        if name.startswith("n_"):
            frame[name] = frame[name].astype("int64")
    for name in ("first_started_at", "last_finished_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


#: Per-configuration columns of :func:`summarize`, in order.
SUMMARY_KEYS = ("experiment", "profile", "config_key", "spec_hash")
SUMMARY_FIRST = (*VARIANT_COLUMNS, *db.BUDGET_COLUMNS, "hyperparameters")
SUMMARY_METRICS = ("test_err", "val_err")


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Group runs (from :func:`runs`) by configuration: counts, mean and std over seeds.

    A diverged run counts as error 1.0 (what the objective scores it), a completed one as
    recorded: no configuration is ranked on the seeds that survived."""
    rows: list[dict[str, Any]] = []
    for key, group in frame.groupby(list(SUMMARY_KEYS), sort=False, dropna=False):
        first = group.iloc[0]
        done = group[group["status"].isin(("completed", "diverged"))]
        diverged = done["status"] == "diverged"
        row: dict[str, Any] = dict(zip(SUMMARY_KEYS, key))
        row.update({name: first[name] for name in SUMMARY_FIRST})
        row["n_runs"] = len(group)
        row["n_seeds"] = int(done["seed"].nunique())
        for status in ("diverged", "pruned", "failed", "running"):
            row[f"n_{status}"] = int((group["status"] == status).sum())
        for metric in SUMMARY_METRICS:
            values = done[metric].astype("float64").mask(diverged, 1.0).dropna()
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        completed = done[~diverged]
        row["epochs_done"] = completed["epochs_done"].max() if len(completed) else pd.NA
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(
        ["experiment", "profile", "test_err_mean", "name"], na_position="last"
    ).reset_index(drop=True)


def flatten_json(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with dict/list cells as JSON text, for CSV and Parquet files."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object and out[name].map(lambda v: isinstance(v, (dict, list))).any():
            out[name] = out[name].map(
                lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
            )
    return out
