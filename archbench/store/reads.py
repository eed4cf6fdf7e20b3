"""The results store's read API: every query returns a pandas DataFrame (see
:mod:`archbench.store.queries` for the SQL and the column types), plus CSV/Parquet export.

A mixin of :class:`~archbench.store.store.ResultsStore`, which provides ``_read`` (one read
transaction, retried on transient lock errors) and ``url``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from archbench.errors import UnknownNameError
from archbench.store import queries
from archbench.store.schema import RUN_STATUSES
from archbench.store.values import StoreError, to_int

T = TypeVar("T")

EXPORT_FORMATS = ("csv", "parquet")


class StoreReads:
    """Queries over the store (DataFrames with stable columns and dtypes)."""

    _read: Callable[..., Any]

    def variants(self) -> pd.DataFrame:
        """One row per stored variant, with its canonical spec JSON."""
        return self._read(queries.variants)

    def runs(
        self,
        experiment: str | None = None,
        profile: str | None = None,
        status: str | Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Runs joined with their variant's columns; hyperparameters also as ``hp_<name>``."""
        statuses = _statuses(status)
        return self._read(lambda c: queries.runs(c, experiment, profile, statuses))

    def epochs(
        self,
        experiment: str | None = None,
        run_ids: Iterable[int] | None = None,
        profile: str | None = None,
    ) -> pd.DataFrame:
        """Per-epoch metrics with the run's and the variant's columns (ready to plot)."""
        ids = None if run_ids is None else [to_int(r, "run_id") for r in run_ids]
        return self._read(lambda c: queries.epochs(c, experiment, ids, profile))

    def diagnostics(
        self,
        experiment: str | None = None,
        run_ids: Iterable[int] | None = None,
        profile: str | None = None,
        epoch: int | None = None,
    ) -> pd.DataFrame:
        """Per-block gradient norms and branch ratios with run and variant columns."""
        ids = None if run_ids is None else [to_int(r, "run_id") for r in run_ids]
        return self._read(lambda c: queries.diagnostics(c, experiment, ids, profile, epoch))

    def experiments(self) -> pd.DataFrame:
        """One row per (experiment, profile): variant and run counts by status, times."""
        return self._read(queries.experiments)

    def summary(self, experiment: str, profile: str | None = None) -> pd.DataFrame:
        """Per configuration (variant + recipe): seeds, mean/std of test and val error.

        Means and standard deviations (ddof=1) are over completed and diverged runs, a
        diverged one at error 1.0 (as the objective scores it); pruned, failed and running
        runs are counted beside them. Raises for an experiment with no runs.
        """
        frame = self.runs(experiment=experiment, profile=profile)
        if frame.empty:
            known = self._read(queries.experiment_names)
            where = f"experiment {experiment!r}" + (f", profile {profile!r}" if profile else "")
            raise UnknownNameError(f"no runs recorded for {where}; known experiments: {known}")
        return queries.summarize(frame)

    def export(
        self,
        path: str | Path,
        format: str | None = None,
        table: str = "runs",
        experiment: str | None = None,
    ) -> Path:
        """Write one table (``queries.EXPORT_TABLES``) as CSV or Parquet; returns the path.

        ``format`` defaults to the file's suffix; a format that contradicts a ``.csv`` or
        ``.parquet`` suffix is refused (a CSV file named .parquet would mislead every reader).
        JSON columns are written as JSON text.
        """
        path = Path(path)
        suffix = path.suffix.lstrip(".").lower()
        fmt = format or suffix
        if fmt not in EXPORT_FORMATS:
            raise StoreError(
                f"export format {fmt or path.name!r} is not one of {list(EXPORT_FORMATS)} "
                "(give the format or a .csv/.parquet file name)"
            )
        if suffix in EXPORT_FORMATS and suffix != fmt:
            raise StoreError(
                f"export format {fmt!r} does not match the file name {path.name!r}; "
                f"name it .{fmt} or leave the format out to write {suffix}"
            )
        if table not in queries.EXPORT_TABLES:
            raise StoreError(f"export table {table!r} is not one of {list(queries.EXPORT_TABLES)}")
        if table == "summary":
            if experiment is None:
                raise StoreError("export table 'summary' needs an experiment")
            frame = self.summary(experiment)
        elif table in ("runs", "epochs", "diagnostics"):
            frame = getattr(self, table)(experiment=experiment)
        else:
            frame = getattr(self, table)()
        frame = queries.flatten_json(frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            try:
                frame.to_parquet(path, index=False)
            except ImportError as exc:
                raise StoreError(
                    f"Parquet export needs pyarrow ({exc}); pip install 'archbench[parquet]'"
                ) from None
        return path


def _statuses(status: str | Iterable[str] | None) -> list[str] | None:
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    bad = [s for s in items if s not in RUN_STATUSES]
    if bad:
        raise StoreError(f"unknown run status {bad}; allowed: {list(RUN_STATUSES)}")
    return items
