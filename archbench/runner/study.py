"""Optuna study orchestration: one study per experiment and profile.

Each trial samples (or, for a grid, enumerates) one configuration, solves it to the budget,
trains it once per seed (the same seeds for every configuration, so comparisons can be
paired), writes every epoch to the results store as it goes, and returns the mean final
validation accuracy (plus params/MACs for multi-objective studies).

Faults: trials send heartbeats (Optuna's own on SQLite and PostgreSQL, a system attribute on
journal storage); a trial whose worker died turns stale after the grace period, is failed by
the next worker (or the next ``archbench run``) and re-queued with the same parameters. Its
runs keep their store rows (keyed by configuration and seed) and resume from their last
epoch checkpoint, so nothing recorded is lost or duplicated. A trial interrupted in a way
that marked it failed (Ctrl-C) is re-queued by the next ``archbench run``
(:func:`prepare_study`).

This module sets a study up (storage, sampler, pruner, queue); :mod:`archbench.runner.objective`
trains one trial; :mod:`archbench.runner.worker` runs the trials until the study is done.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from archbench.errors import SpecError
from archbench.runner.algorithms import PRUNERS, SAMPLERS
from archbench.runner.spec import ExperimentSpec
from archbench.runner.variants import baseline_params

log = logging.getLogger(__name__)

DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
ALIVE_STATES = (*DONE_STATES, TrialState.RUNNING, TrialState.WAITING)
HEARTBEAT_ATTR = "archbench_heartbeat"  # journal storage: seconds since the epoch
# Study system attrs (not user attrs: `optuna studies` prints every user attr in its table).
FINGERPRINT_ATTR = "archbench:fingerprint"
SPEC_ATTR = "archbench:spec"  # the spec's YAML text; archbench.analysis.data reads it
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial


@dataclass(frozen=True)
class RunnerOptions:
    """How (not what) to run, so not in the spec. Only ``threads`` and ``device`` can change
    results, in their last bits (reduction order); both are recorded with every run."""

    storage: str | None = None  # overrides the spec's storage
    results_dir: str | None = None  # checkpoints; default: beside a SQLite file, else results/
    device: str = "auto"
    heartbeat_interval: int = 30  # seconds; a worker silent for grace_period is stale
    grace_period: int = 90
    max_retry: int = 3
    keep_checkpoints: bool = False
    progress: bool | None = None  # None: progress bars on a terminal only
    threads: int | None = None  # torch CPU threads per worker; None: worker.DEFAULT_THREADS
    # Which worker this is: 0 samples with the spec's seed, others with one derived from it
    # (run --workers N numbers them 0..N-1; a joining `archbench worker` uses its WORKER_ID).
    worker: int | str = 0
    # Seconds a worker rides out a database outage (a PostgreSQL restart) before it gives up
    # (exit code 3); archbench.store.reconnect.
    db_grace: float = 180.0


# -- storage ----------------------------------------------------------------------------------


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


def make_sampler(spec: ExperimentSpec, worker: int | str = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler as ``worker`` builds it (see :func:`~.algorithms.worker_seed`)."""
    return SAMPLERS[spec.sampler.name].build(spec, worker)


def make_pruner(spec: ExperimentSpec) -> optuna.pruners.BasePruner:
    return PRUNERS[spec.pruner.name].build(spec)


def grid_labels(spec: ExperimentSpec) -> list[str]:
    """One readable, unique label per grid configuration (the study's ``config`` param)."""
    labels = []
    for config in spec.grid():
        extra = ",".join(f"{k}={v}" for k, v in sorted(config["recipe"].items()))
        labels.append(f"{config['label']}|{extra}" if extra else config["label"])
    return labels


def fingerprint(spec: ExperimentSpec) -> dict[str, Any]:
    """The parts of a spec that results depend on; a study keeps the one it was made with."""
    return {
        "dataset": dataclasses.asdict(spec.dataset),
        "recipe": spec.recipe.to_dict(),
        "budget": dataclasses.asdict(spec.budget) if spec.budget else None,
        "objectives": list(spec.objectives),
        "seeds": list(spec.seeds),
    }


def create_study(spec: ExperimentSpec, storage: Any, *, worker: int | str = 0) -> optuna.Study:
    """Create the study, or load it to continue (same name and storage).

    Raises :class:`SpecError` when the stored study was made from a spec whose dataset,
    recipe, budget, objectives or seeds differ: its results would not be comparable. Variants,
    the search space, the sampler and the number of trials may change between runs.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study_name,
        sampler=make_sampler(spec, worker),
        pruner=make_pruner(spec),
        directions=spec.directions,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != spec.directions:
        raise SpecError(
            f"study {spec.study_name!r} in this storage has objectives with directions "
            f"{[d.name.lower() for d in study.directions]}, the spec asks for "
            f"{spec.directions}; use another experiment name, profile or storage"
        )
    from archbench.store.storage import redact

    wanted = fingerprint(spec)
    system = study._storage.get_study_system_attrs(study._study_id)
    # Studies made before the fingerprint moved to the system attrs keep it in the user attrs.
    stored = system.get(FINGERPRINT_ATTR, study.user_attrs.get("fingerprint"))
    if stored is None:
        # Short user attrs only: they are `optuna studies`' and the dashboard's columns.
        study.set_user_attr("experiment", spec.name)
        study.set_user_attr("profile", spec.profile)
        # Redacted: never a password in the database (a report shows this text).
        study._storage.set_study_system_attr(study._study_id, SPEC_ATTR, redact(spec.source))
        study._storage.set_study_system_attr(study._study_id, FINGERPRINT_ATTR, wanted)
    elif stored != wanted:
        changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
        raise SpecError(
            f"study {spec.study_name!r} in this storage was run with another {', '.join(changed)}"
            "; its results would not be comparable. Use another experiment name, profile or "
            "storage (or delete the study: optuna delete-study)"
        )
    if study.metric_names is None:  # names the values in the dashboard and trials_dataframe
        import warnings

        from archbench.runner.trial_facts import metric_names

        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(spec))
    return study


def _origin(trial: FrozenTrial) -> int:
    """The number of the first trial of a retry chain (Optuna's ``failed_trial`` attribute)."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def trial_config(trial: FrozenTrial) -> str | None:
    """The grid label of a trial, also before it suggested it (a queued or just popped one)."""
    label = trial.params.get("config")
    if label is None:
        label = trial.system_attrs.get("fixed_params", {}).get("config")
    return label


def prepare_study(spec: ExperimentSpec, options: RunnerOptions) -> tuple[optuna.Study, int]:
    """Create or load the study and queue what is to be run; returns (study, re-queued).

    A grid study gets one queued trial per configuration not yet done, running or queued, in
    the spec's order. A sampled study gets its baselines. Either gets its interrupted trials
    back: those whose retry chain only failed (Ctrl-C, an error, stale retries exhausted).
    Call once per ``archbench run``, not in every worker. Runs under the storage's setup
    lock (:func:`study_setup`), so two started together queue once: the second finds the
    first's queue.
    """
    with study_setup(spec, options):
        return _prepare_study(spec, options)


def study_setup(spec: ExperimentSpec, options: RunnerOptions) -> Any:
    """The storage's setup lock (a context manager): hold it to create or queue a study."""
    from archbench.store.setup_lock import setup_lock
    from archbench.store.storage import resolve_storage

    return setup_lock(resolve_storage(options.storage or spec.storage))


def _prepare_study(spec: ExperimentSpec, options: RunnerOptions) -> tuple[optuna.Study, int]:
    from archbench.runner.variants import bind

    spec = bind(spec)  # the registries' names and default depths
    storage, store = open_storage(spec, options)
    store.close()  # only the Optuna side is needed here
    study = create_study(spec, storage)
    trials = study.get_trials(deepcopy=False)
    chains: dict[int, list[FrozenTrial]] = {}
    for trial in trials:
        chains.setdefault(_origin(trial), []).append(trial)
    failed_chains = [
        max(chain, key=lambda t: t.number)
        for chain in chains.values()
        if not any(t.state in ALIVE_STATES for t in chain)
    ]
    requeued = 0
    if spec.sampler.name == "grid":
        covered = {trial_config(t) for t in trials if t.state in ALIVE_STATES}
        failed = {trial_config(t): t for t in failed_chains}
        for label in grid_labels(spec):
            if label in covered:
                continue
            if label in failed:
                _retry_callback()(study, copy.deepcopy(failed[label]))
                requeued += 1
            else:
                study.enqueue_trial({"config": label})
    else:
        for baseline in spec.baselines:
            study.enqueue_trial(baseline_params(spec, baseline), skip_if_exists=True)
        for trial in failed_chains:
            _retry_callback()(study, copy.deepcopy(trial))
            requeued += 1
    if requeued:
        log.info("re-queued %d interrupted trial(s) of %s", requeued, spec.study_name)
    return study, requeued
