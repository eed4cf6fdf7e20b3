"""Workers: take the study's trials until it is complete, retrying dead workers' trials.

Several workers (processes or machines) may run at once on one storage; each starts a trial
only when there is one to start and otherwise waits, failing trials whose heartbeat went
stale so that they are retried.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timezone

import optuna
from optuna.trial import FrozenTrial, TrialState

from archbench.errors import ArchbenchError, SpecError
from archbench.runner.objective import (
    PRUNED_REASON_ATTR,
    Objective,
    _native_heartbeat,
    _needs_attr_heartbeat,
)
from archbench.runner.spec import ExperimentSpec
from archbench.runner.study import (
    DONE_STATES,
    HEARTBEAT_ATTR,
    RunnerOptions,
    _retry_callback,
    create_study,
    grid_labels,
    open_storage,
    study_setup,
    trial_config,
)
from archbench.runner.variants import bind

log = logging.getLogger(__name__)


# -- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a study stands. ``done`` counts distinct configurations for a grid (a duplicate,
    e.g. two ``archbench run`` on one storage, counts once), finished trials otherwise."""

    total: int
    done: int
    running: int
    waiting: int
    can_start: bool  # a worker has something to do now
    missing: tuple[str, ...] = ()  # grid labels neither done, running nor queued

    @property
    def complete(self) -> bool:
        return self.done >= self.total


def study_progress(spec: ExperimentSpec, trials: Sequence[FrozenTrial]) -> Progress:
    total = spec.n_trials()
    by_state: dict[TrialState, list[FrozenTrial]] = {}
    for t in trials:
        by_state.setdefault(t.state, []).append(t)
    running = len(by_state.get(TrialState.RUNNING, []))
    waiting = len(by_state.get(TrialState.WAITING, []))
    finished = [t for s in DONE_STATES for t in by_state.get(s, [])]
    if spec.sampler.name != "grid":
        done = len(finished)
        can_start = waiting > 0 or done + running + waiting < total
        return Progress(total, done, running, waiting, can_start)
    labels = grid_labels(spec)
    done_labels = {trial_config(t) for t in finished} & set(labels)
    busy = {
        trial_config(t)
        for s in (TrialState.RUNNING, TrialState.WAITING)
        for t in by_state.get(s, [])
    }
    missing = tuple(label for label in labels if label not in done_labels | busy)
    # Grid configurations are all queued up front: a worker only ever pops a queued one.
    return Progress(total, len(done_labels), running, waiting, waiting > 0, missing)


def fail_stale_trials(study: optuna.Study, options: RunnerOptions) -> int:
    """Fail (and re-queue) trials whose worker stopped sending heartbeats; returns how many.

    RDB storages use Optuna's own mechanism; journal storage our heartbeat attribute.
    """
    if _native_heartbeat(study):
        before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        optuna.storages.fail_stale_trials(study)
        return len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) - before
    if not _needs_attr_heartbeat(study):
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


# -- running ----------------------------------------------------------------------------------


def run_worker(
    spec: ExperimentSpec,
    options: RunnerOptions,
    *,
    on_event: Callable[[str], None] | None = None,
    objective: Objective | None = None,
) -> optuna.Study:
    """Work on the study until it has its number of finished trials.

    Safe to run in several processes at once and to rerun after a crash: finished trials
    count, stale ones are retried, and runs resume from their checkpoints. A worker starts a
    trial only when there is one to start (a queued retry, an unstarted grid point, or fewer
    trials than asked for); otherwise it waits for the running ones, so two workers do not
    train the same grid point at the end of a study.
    """
    spec = bind(spec)  # the registries' names and default depths
    with study_setup(spec, options):  # not while another process creates the study
        storage, store = open_storage(spec, options)
        try:
            study = create_study(spec, storage, worker=options.worker)
        except BaseException:
            store.close()
            raise
    try:
        return _work(
            spec,
            options,
            study,
            objective or Objective(spec, store, options, on_event=on_event),
            on_event,
        )
    finally:
        store.close()


def _work(
    spec: ExperimentSpec,
    options: RunnerOptions,
    study: optuna.Study,
    objective: Objective,
    on_event: Callable[[str], None] | None,
) -> optuna.Study:
    say = on_event or (lambda message: None)

    def announce(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_event is None:
            return
        label = trial.user_attrs.get("label", trial.params)
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        value = f" val_acc {trial.values[0]:.4f}" if trial.values else ""
        reason = (
            trial.user_attrs.get("fail_reason")
            or trial.system_attrs.get("fail_reason")
            or trial.user_attrs.get(PRUNED_REASON_ATTR)
        )
        why = f" [{reason.splitlines()[0][:200]}]" if reason else ""
        progress = study_progress(spec, study.get_trials(deepcopy=False))
        on_event(
            f"trial {trial.number} {trial.state.name.lower()}: {label}{value}{why} "
            f"({seconds:.1f} s; {progress.done}/{progress.total} done)"
        )

    failures = 0
    waited = False
    while True:
        # (Optuna fails stale trials itself before each trial it starts; we check here only
        # when there is nothing to start.)
        progress = study_progress(spec, study.get_trials(deepcopy=False))
        if progress.complete:
            break
        if progress.can_start:
            waited = False
            before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
            try:
                study.optimize(
                    objective,
                    n_trials=1,
                    callbacks=[announce],
                    catch=(ArchbenchError,),  # a configuration that cannot run fails alone
                    gc_after_trial=False,  # a full gc.collect with torch loaded: ~0.25 s a trial
                )
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as exc:
                # Optuna cannot tell a trial another worker already failed (stale while this
                # one was stopped): expected once the objective lost its run's lease.
                if objective.abandoned_trial is None:
                    raise
                log.info("trial %d was ended elsewhere: %s", objective.abandoned_trial, exc)
                objective.abandoned_trial = None
            if len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) > before:
                failures += 1
                if failures > max(progress.total, 3):
                    log.error("%d trials failed in this worker; stopping it", failures)
                    break
            continue
        if progress.running:
            if fail_stale_trials(study, options):
                continue  # their retries are queued now
            if not waited:
                say(
                    f"waiting for {progress.running} running trial(s) (another worker, or a "
                    "dead one that will be retried once its heartbeat is stale)"
                )
                waited = True
            time.sleep(min(options.heartbeat_interval, 2))
            continue
        break  # nothing running, nothing to start: what is left failed for good
    if progress.missing:
        log.info(  # the CLI lists them, with the reasons
            "%d configuration(s) failed and were not retried: %s (rerun to retry them)",
            len(progress.missing),
            ", ".join(progress.missing),
        )
    return study


#: Torch CPU threads per worker unless told otherwise. A fixed number, not one read from the
#: machine's load: results depend on the thread count (reduction order in the kernels), so a
#: default that followed the load would change metrics from one run to the next.
DEFAULT_THREADS = 1


def worker_threads(threads: int | None = None) -> int:
    """Torch CPU threads per worker: ``threads``, else :data:`DEFAULT_THREADS`.

    One thread is also the fast choice for the small nets of CPU runs on shared cores:
    OpenMP threads that share a core with another busy process wait at every barrier. Give
    more with ``--threads`` (the count is recorded with every run as ``env.cpu_threads``).
    """
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SpecError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


def set_worker_threads(threads: int | None = None) -> int:
    """Apply :func:`worker_threads` to torch in this process; returns the count."""
    import torch

    count = worker_threads(threads)
    torch.set_num_threads(count)
    return count
