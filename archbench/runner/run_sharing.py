"""Two trials, one run: what a trial does when another live trial is training its run.

A sampled study can propose one configuration twice (NSGA-II's random first generation over
a small space, TPE near convergence); with several workers both trials then want the same
store runs (the key is configuration + seed). The store refuses the second opener
(``start_run(exclusive=True)`` raises ``RunBusyError``); the trial trains its other seeds and
then waits here until the owner finishes the run (its result is reused) or dies (the run is
taken over and resumed from its checkpoint).
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from archbench.runner.heartbeat import fail_stale_trials
from archbench.runner.study import RunnerOptions


def owner_alive(study: optuna.Study, owner: tuple[str | None, int | None]) -> bool:
    """Whether the trial that owns a run, ``(study name, trial number)``, is still running.

    An owner in another study cannot be checked from here and counts as gone.
    """
    study_name, number = owner
    if study_name != study.study_name or number is None:
        return False
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return any(t.number == number for t in running)


def wait_for_owners(study: optuna.Study, options: RunnerOptions) -> None:
    """One pause while other trials train this trial's runs; fails trials whose worker died.

    Without the stale check a waiter whose owner was killed would wait for ever: no other
    worker may be left to notice.
    """
    fail_stale_trials(study, options)
    time.sleep(min(options.heartbeat_interval, 2))
