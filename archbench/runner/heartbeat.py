"""Is a trial's worker alive? Heartbeats, and failing (re-queuing) trials whose worker died.

RDB storages (SQLite, PostgreSQL) use Optuna's own heartbeat; journal storage has none, so a
thread of the trial refreshes a system attribute (:class:`AttrHeartbeat`). Below the
objective, the run sharing and the worker loop, which all need it (no import cycle).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from datetime import timezone

import optuna
from optuna.trial import TrialState

from archbench.runner.study import HEARTBEAT_ATTR, RunnerOptions, _retry_callback

log = logging.getLogger(__name__)


class AttrHeartbeat:
    """Heartbeats for storages without Optuna's own (journal files): a thread refreshes a
    system attribute of the running trial every ``interval`` seconds."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: float) -> None:
        self.storage = study._storage
        self.trial_id = trial._trial_id
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="archbench-heartbeat")

    def _beat(self) -> None:
        while True:
            try:
                self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, time.time())
            except Exception as exc:  # a finished trial, a busy file: try again next time
                log.debug("heartbeat of trial %d failed: %s", self.trial_id, exc)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> AttrHeartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def native_heartbeat(study: optuna.Study) -> bool:
    """Whether the study's storage has Optuna's own heartbeat (RDB storages)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def needs_attr_heartbeat(study: optuna.Study) -> bool:
    """Whether trials must send :class:`AttrHeartbeat` (journal storage)."""
    from optuna.storages import JournalStorage

    return isinstance(study._storage, JournalStorage)


def fail_stale_trials(study: optuna.Study, options: RunnerOptions) -> int:
    """Fail (and re-queue) trials whose worker stopped sending heartbeats; returns how many.

    RDB storages use Optuna's own mechanism; journal storage our heartbeat attribute.
    """
    if native_heartbeat(study):
        before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        optuna.storages.fail_stale_trials(study)
        return len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) - before
    if not needs_attr_heartbeat(study):
        return 0  # in-memory: one process, nothing can die without us
    now = time.time()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.system_attrs.get(HEARTBEAT_ATTR)
        if beat is None and trial.datetime_start is not None:
            start = trial.datetime_start
            if start.tzinfo is None:
                start = start.astimezone(timezone.utc)
            beat = start.timestamp()
        if beat is None or now - float(beat) <= options.grace_period:
            continue
        try:
            changed = study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        if changed:
            failed += 1
            stale = study._storage.get_trial(trial._trial_id)
            retries = len(stale.system_attrs.get("retry_history", []))
            if retries < options.max_retry:
                _retry_callback()(study, copy.deepcopy(stale))
    return failed
