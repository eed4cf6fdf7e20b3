"""The results store: variants, runs, epochs and diagnostics beside Optuna's tables.

>>> store = ResultsStore("results/quick.db")            # doctest: +SKIP
>>> store.summary("quickstart")                           # doctest: +SKIP
"""

from __future__ import annotations

from archbench.store.lease import LeaseLostError
from archbench.store.schema import (
    EPOCH_METRICS,
    FINAL_METRICS,
    FINISHED_STATUSES,
    RUN_STATUSES,
    SCHEMA_VERSION,
)
from archbench.store.store import ResultsStore
from archbench.store.values import RunBusyError, SchemaVersionError, StoreError, config_key

__all__ = [
    "EPOCH_METRICS",
    "FINAL_METRICS",
    "FINISHED_STATUSES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "LeaseLostError",
    "ResultsStore",
    "RunBusyError",
    "SchemaVersionError",
    "StoreError",
    "config_key",
]
