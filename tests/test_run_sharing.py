"""Two trials that drew one configuration never train the same store run at once.

A sampled study can propose a configuration twice; with two workers both trials then open the
same runs (configuration + seed). The second trial must train its other seeds, wait for the
run the first is training and reuse its result, or take the run over once its owner died.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from archbench.runner.spec import parse_spec
from archbench.store import ResultsStore, RunBusyError

pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    # study.ask() stands in for a second worker's optimize() here.
    pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning"),
]


def _spec(tmp_path: Path, **changes: Any) -> Any:
    # One point in the space: every trial draws the same configuration.
    return parse_spec(
        changes
        | {
            "name": "dup",
            "dataset": {"name": "digits", "train_subset": 200, "test_subset": 60, "val_size": 40},
            "recipe": {"epochs": 1, "batch_size": 64},
            "space": {"family": ["resnet"], "depth": [8], "width": [4]},
            "sampler": {"name": "random", "seed": 0},
            "trials": 2,
            "seeds": [0, 1],
            "storage": str(tmp_path / "dup.db"),
        }
        | changes
    )


def _setup(tmp_path: Path, **changes: Any) -> tuple[Any, Any, Any, list[str]]:
    from archbench.runner.objective import Objective
    from archbench.runner.study import RunnerOptions, create_study, open_storage

    spec = _spec(tmp_path, **changes)
    options = RunnerOptions(results_dir=str(tmp_path / "res"), heartbeat_interval=1, threads=1)
    storage, store = open_storage(spec, options)
    study = create_study(spec, storage)
    events: list[str] = []
    return study, store, Objective(spec, store, options, on_event=events.append), events


def _open_as(objective: Any, trial: optuna.Trial, seed: int) -> tuple[int, Any]:
    """Open the run of ``seed`` the way ``trial`` would: the other worker's half."""
    plan = objective._plan(trial)
    run_id = objective.store.start_run(
        experiment=objective.spec.name,
        profile=objective.spec.profile,
        study_name=objective.spec.study_name,
        trial_number=trial.number,
        spec_hash=plan.spec_hash,
        seed=seed,
        config_key=plan.ckey,
        exclusive=True,
    )
    return run_id, plan


def test_a_live_owners_run_is_waited_for_and_its_result_reused(tmp_path: Path) -> None:
    study, store, objective, events = _setup(tmp_path)
    owner = study.ask()
    run_id, _ = _open_as(objective, owner, seed=0)

    def finish_later() -> None:  # the other worker ends seed 0 while this one waits
        time.sleep(4)
        with ResultsStore(tmp_path / "dup.db") as other:
            other.finish_run(run_id, status="completed", final={"val_err": 0.25})
        study.tell(owner, 0.75)

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    duplicate = study.ask()
    value = objective(duplicate)
    finisher.join()

    row = store.run(run_id)
    assert row["attempts"] == 1 and row["trial_number"] == owner.number  # never reopened
    assert any(f"being trained by trial {owner.number}" in e for e in events)
    per_seed = study.trials[duplicate.number].user_attrs["val_acc_per_seed"]
    assert per_seed[0] == pytest.approx(0.75)  # the owner's result, in seed order
    runs = store.runs(experiment="dup").to_dict("records")
    other = [r for r in runs if r["seed"] == 1]
    assert other[0]["trial_number"] == duplicate.number  # trained while waiting
    assert other[0]["status"] == "completed"
    assert value == pytest.approx(sum(per_seed) / 2)
    store.close()


def test_a_dead_owners_run_is_taken_over(tmp_path: Path) -> None:
    study, store, objective, events = _setup(tmp_path)
    owner = study.ask()
    run_id, _ = _open_as(objective, owner, seed=0)
    study.tell(owner, state=TrialState.FAIL)  # its worker died; the row still says running
    duplicate = study.ask()
    objective(duplicate)
    row = store.run(run_id)
    assert row["status"] == "completed" and row["attempts"] == 2
    assert row["trial_number"] == duplicate.number
    assert not any("being trained by" in e for e in events)
    store.close()


def test_exclusive_start_run_refuses_another_trials_running_row(tmp_path: Path) -> None:
    study, store, objective, _ = _setup(tmp_path)
    first, second = study.ask(), study.ask()
    run_id, plan = _open_as(objective, first, seed=0)
    opening = {
        "experiment": "dup",
        "profile": objective.spec.profile,
        "study_name": objective.spec.study_name,
        "spec_hash": plan.spec_hash,
        "seed": 0,
        "config_key": plan.ckey,
    }
    with pytest.raises(RunBusyError, match=f"trial {first.number}") as busy:
        store.start_run(**opening, trial_number=second.number, exclusive=True)
    assert busy.value.run_id == run_id
    assert busy.value.owner == (objective.spec.study_name, first.number)
    assert store.run(run_id)["attempts"] == 1  # nothing written
    # Replacing someone else than the owner is refused too; the owner itself may reopen.
    with pytest.raises(RunBusyError):
        store.start_run(**opening, trial_number=second.number, exclusive=True, replacing=("x", 99))
    assert store.start_run(**opening, trial_number=first.number, exclusive=True) == run_id
    taken = store.start_run(
        **opening,
        trial_number=second.number,
        exclusive=True,
        replacing=(objective.spec.study_name, first.number),
    )
    assert taken == run_id and store.run(run_id)["trial_number"] == second.number
    # Without ``exclusive`` (archbench train, old callers) a running row is reopened as before.
    assert store.start_run(**opening, trial_number=first.number) == run_id
    store.close()


def _finish_later(tmp_path: Path, study: Any, owner: Any, run_id: int, status: str) -> Any:
    def finish() -> None:  # the other worker ends seed 0 while this one waits
        time.sleep(3)
        with ResultsStore(tmp_path / "dup.db") as other:
            final = {"val_err": 0.25} if status == "completed" else None
            other.finish_run(run_id, status=status, final=final)
        study.tell(owner, 0.75 if status == "completed" else 0.0)

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_under_a_pruner_a_busy_first_seed_is_waited_for_before_the_others(
    tmp_path: Path,
) -> None:
    # The first seed's curve decides pruning: training seed 1 before it is known would
    # spend a seed on a configuration the pruner may stop.
    pruner = {"name": "median", "warmup_epochs": 0, "startup_trials": 5}
    study, store, objective, _ = _setup(tmp_path, pruner=pruner)
    owner = study.ask()
    run_id, _ = _open_as(objective, owner, seed=0)
    finisher = _finish_later(tmp_path, study, owner, run_id, "completed")
    objective(study.ask())
    finisher.join()
    runs = store.runs(experiment="dup").set_index("seed")
    assert runs.loc[1, "started_at"] >= runs.loc[0, "finished_at"]
    store.close()


def test_a_diverged_run_of_the_owner_is_a_result_not_retrained(tmp_path: Path) -> None:
    study, store, objective, _ = _setup(tmp_path)
    owner = study.ask()
    run_id, _ = _open_as(objective, owner, seed=0)
    finisher = _finish_later(tmp_path, study, owner, run_id, "diverged")
    duplicate = study.ask()
    objective(duplicate)
    finisher.join()
    row = store.run(run_id)
    assert row["status"] == "diverged" and row["attempts"] == 1
    attrs = study.trials[duplicate.number].user_attrs
    assert attrs["val_acc_per_seed"][0] == 0.0 and attrs["diverged"] is True
    assert attrs["run_ids"][0] == run_id  # in seed order
    store.close()


def test_a_baseline_on_a_float_step_grid_is_in_the_space() -> None:
    from archbench.runner.sections import Distribution
    from archbench.runner.variants import _in_space

    steps = Distribution(low=0.1, high=0.5, step=0.1)
    assert _in_space(0.3, steps) and _in_space(0.5, steps)  # 0.3 - 0.1 is 1.9999... steps
    assert not _in_space(0.35, steps) and not _in_space(0.6, steps)
    assert _in_space(4, Distribution(low=4, high=8)) and not _in_space(
        4.5, Distribution(low=4, high=8)
    )
    assert _in_space(16, Distribution(choices=(8, 16))) and not _in_space(
        "16", Distribution(choices=(8, 16))
    )
