"""Where a study lives: its Optuna storage and results store opened together, the setup lock,
and the folder its checkpoints and kept weights go to.

Kept apart from :mod:`archbench.runner.study` (the study itself: sampler, pruner, fingerprint,
queue) because opening storage is about databases (SQLite write locking, heartbeats and the
retry of stale trials, outages), not about what a study runs; the study, the worker, the
objective and the CLI each open storage through these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from archbench.runner.options import RunnerOptions
from archbench.runner.spec import ExperimentSpec


def _retry_callback(
    max_retry: int | None = None,
) -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """The one way trials are re-queued: stale ones (``max_retry``: the storage's limit) and
    interrupted ones (``None``: ``archbench run`` re-queues them whatever their history)."""
    # Intermediate values come along, so a pruner judges a retried trial by its whole curve.
    return optuna.storages.RetryHeartbeatStaleTrialCallback(
        max_retry=max_retry, inherit_intermediate_values=True
    )


def open_storage(spec: ExperimentSpec, options: RunnerOptions) -> tuple[Any, Any]:
    """(Optuna storage, ResultsStore) for the spec, sharing one database where possible."""
    from archbench.store import ResultsStore
    from archbench.store.reconnect import Reconnect
    from archbench.store.setup_lock import setup_lock
    from archbench.store.storage import resolve_storage

    resolved = resolve_storage(options.storage or spec.storage)
    reconnect = Reconnect(options.db_grace)  # one outage clock for both
    with setup_lock(resolved):  # both create their tables on a new store
        store = ResultsStore(resolved.store_url, reconnect=reconnect)
        try:
            storage = _optuna_storage(resolved, options, reconnect)
        except BaseException:
            store.close()
            raise
    return storage, store


def _optuna_storage(resolved: Any, options: RunnerOptions, reconnect: Any = None) -> Any:
    from archbench.store.storage import optuna_storage

    heartbeat: dict[str, Any] = {}
    if resolved.kind in ("sqlite", "postgresql", "other"):
        heartbeat = {
            "heartbeat_interval": options.heartbeat_interval,
            "grace_period": options.grace_period,
            "heartbeat_stale_trial_callback": _retry_callback(options.max_retry),
        }
    storage = optuna_storage(resolved, **heartbeat, reconnect=reconnect)
    if resolved.kind == "sqlite":
        _serialize_sqlite_transactions(storage)
    return storage


def _serialize_sqlite_transactions(storage: Any) -> None:
    """Make every Optuna transaction on a SQLite file take the write lock up front.

    Optuna pops a queued trial with a read-check-update (``SELECT ... FOR UPDATE`` on
    PostgreSQL); SQLite ignores FOR UPDATE, so two worker processes could both see the trial
    WAITING and both run it. ``BEGIN IMMEDIATE`` makes the sequence atomic: the second worker
    waits (busy timeout), then sees it RUNNING and takes the next one.
    """
    from sqlalchemy import event

    engine = getattr(storage, "engine", None)
    if engine is None or getattr(engine, "_archbench_serialized", False):
        return

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        # WAL + NORMAL survives a killed process (only an OS crash can lose the last
        # commits); FULL would fsync every trial attribute.
        dbapi_conn.execute("PRAGMA synchronous = NORMAL")

    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    engine._archbench_serialized = True
    engine.dispose()  # connections made before the listeners reconnect with them


def results_dir(spec: ExperimentSpec, options: RunnerOptions) -> Path:
    if options.results_dir:
        return Path(options.results_dir)
    storage = options.storage or spec.storage
    if "://" not in storage and not storage.startswith(("journal:", ":memory:")):
        return Path(storage).expanduser().resolve().parent
    if storage.startswith("journal:"):
        return Path(storage.removeprefix("journal:")).expanduser().resolve().parent
    return Path("results").resolve()


def study_setup(spec: ExperimentSpec, options: RunnerOptions) -> Any:
    """The storage's setup lock (a context manager): hold it to create or queue a study."""
    from archbench.store.setup_lock import setup_lock
    from archbench.store.storage import resolve_storage

    return setup_lock(resolve_storage(options.storage or spec.storage))


def _load_stored_study(spec: ExperimentSpec, resolved: Any) -> optuna.Study | None:
    from archbench.store.storage import expand_env, optuna_storage

    if resolved.kind == "journal":
        storage: Any = optuna_storage(resolved)
    else:
        assert resolved.optuna_url is not None
        storage = optuna.storages.RDBStorage(
            expand_env(resolved.optuna_url), skip_table_creation=True
        )
    if spec.study_name not in optuna.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=spec.study_name, storage=storage)
