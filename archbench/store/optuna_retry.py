"""Optuna's RDB storage with archbench's reconnect policy (:mod:`.reconnect`).

Optuna's ``RDBStorage`` does not retry: a restarted PostgreSQL server ends every call in
flight with an error (and its heartbeat thread dies with a traceback). The subclass built
here retries each storage call through the worker's :class:`~.reconnect.Reconnect` (the
same outage clock as the results store), and its heartbeat skips a beat, quietly, while the
database is away (Optuna's grace period, not one missed beat, decides staleness).

It stays an ``RDBStorage``, so Optuna's heartbeats, stale-trial retries and its cache layer
(``_CachedStorage``) work with it unchanged.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from archbench.store.reconnect import Reconnect, is_disconnect

log = logging.getLogger(__name__)

#: RDBStorage methods that talk to the database and are retried: the public storage API,
#: the private ones Optuna's ``_CachedStorage`` calls, and the stale-trial query of
#: ``optuna.storages.fail_stale_trials``. (A public one calling a private one retries in
#: the inner call; past the grace period the outer one does not retry the error.)
RETRIED = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
    # what Optuna's cache layer (_CachedStorage) calls on the storage it wraps
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_trials",
    "_set_trial_param",
    "_get_stale_trial_ids",
)

_CLASS: Any = None


def _retried(name: str, method: Any) -> Any:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self.archbench_reconnect.call(
            lambda: method(self, *args, **kwargs), f"optuna {name}"
        )

    return call


def _record_heartbeat(method: Any) -> Any:
    @functools.wraps(method)
    def beat(self: Any, trial_id: int) -> None:
        try:
            method(self, trial_id)
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            log.debug("heartbeat of trial %d skipped: the database is unreachable", trial_id)

    return beat


def reconnecting_rdb_storage(*args: Any, reconnect: Reconnect, **kwargs: Any) -> Any:
    """An ``optuna.storages.RDBStorage(*args, **kwargs)`` whose calls ride out outages."""
    global _CLASS
    if _CLASS is None:
        from optuna.storages import RDBStorage

        namespace: dict[str, Any] = {
            name: _retried(name, getattr(RDBStorage, name)) for name in RETRIED
        }
        namespace["record_heartbeat"] = _record_heartbeat(RDBStorage.record_heartbeat)
        namespace["__module__"] = __name__
        namespace["__doc__"] = "RDBStorage whose calls retry through a Reconnect policy."
        _CLASS = type("ReconnectingRDBStorage", (RDBStorage,), namespace)
    storage = _CLASS.__new__(_CLASS)
    storage.archbench_reconnect = reconnect  # before __init__: it already talks to the database
    storage.__init__(*args, **kwargs)
    return storage
