"""Workers: take the study's trials until it is complete, retrying dead workers' trials.

Several workers (processes or machines) may run at once on one storage; each starts a trial
only when there is one to start and otherwise waits, failing trials whose heartbeat went
stale so that they are retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from archbench.errors import ArchbenchError, SpecError
from archbench.runner.heartbeat import fail_stale_trials
from archbench.runner.identity import grid_entries
from archbench.runner.objective import PRUNED_REASON_ATTR, Objective
from archbench.runner.rounds import RoundState, current_round, scored_seeds
from archbench.runner.spec import ExperimentSpec
from archbench.runner.study import (
    DONE_STATES,
    RunnerOptions,
    create_study,
    open_storage,
    queue_grid,
    seed_targets,
    study_setup,
    trial_covers,
    trial_key,
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
        done = sum(trial_covers(t, spec.seeds) for t in finished)  # added seeds: re-queued
        can_start = waiting > 0 or done + running + waiting < total
        return Progress(total, done, running, waiting, can_start)
    targets = seed_targets(spec, trials)
    labels = {entry.key: entry.label for entry in grid_entries(spec) if entry.key in targets}
    done_keys = {
        key for t in finished if (key := trial_key(t)) in labels and trial_covers(t, targets[key])
    }
    busy = {
        key
        for s in (TrialState.RUNNING, TrialState.WAITING)
        for t in by_state.get(s, [])
        if (key := trial_key(t)) in labels and trial_covers(t, targets[key])
    }
    missing = tuple(labels[key] for key in labels if key not in done_keys | busy)
    # Grid configurations are all queued up front (a question's: round by round): a worker
    # only ever pops a queued one.
    total = len(labels)
    return Progress(total, len(done_keys), running, waiting, waiting > 0, missing)


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
            if spec.question is None:
                break
            # A question's round is done: the next one, derived from the store.
            state, queued = next_round(spec, options, study, objective.store)
            if state.finished or (not queued and not _alive(study)):
                if state.finished and not (isinstance(options.worker, int) and options.worker):
                    say(state.line())  # once: by run's worker 0, or a joining worker
                break
            if queued:
                say(state.line(scored_seeds(spec, objective.store)))
            continue
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


def next_round(
    spec: ExperimentSpec, options: RunnerOptions, study: optuna.Study, store: object
) -> tuple[RoundState, int]:
    """The question's next round queued (once, under the setup lock, whichever worker gets
    there first); ``(state, trials queued)``."""
    with study_setup(spec, options):
        state = current_round(spec, store)
        if state.finished:
            return state, 0
        # A configuration whose trial for these seeds failed for good is not queued again
        # here (a worker must not retry it forever between rounds); `archbench run` does.
        return state, queue_grid(spec, study, state.needs, retry_failed=False)


def _alive(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


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
