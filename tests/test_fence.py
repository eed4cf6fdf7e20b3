"""Fenced writes (issue 20, case 1): a writer whose run was taken over writes nothing.

The zombie of the issue (a worker stopped with SIGSTOP while another trial takes its run over
and completes it, then continued) as a deterministic lease expiry: two store handles on one
storage, one claims the run, the other takes it over (or it is rerun), and the first one's
writes all raise ``LeaseLostError`` and change nothing. On SQLite, the journal storage's side
SQLite file, and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from archbench.store import LeaseLostError, ResultsStore, RunBusyError, StoreError
from tests.test_store import COUNTS, make_spec


@pytest.fixture(
    params=["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.log'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def two(storage: str) -> Iterator[tuple[ResultsStore, ResultsStore]]:
    """Two handles on one storage: two worker processes."""
    with ResultsStore(storage) as first, ResultsStore(storage) as second:
        yield first, second


def _open(store: ResultsStore, trial: int, **extra: Any) -> int:
    spec_hash = store.record_variant(make_spec(), family="resnet", complexity=COUNTS)
    return store.start_run(
        experiment="fence",
        profile="cpu",
        study_name="fence-cpu",
        trial_number=trial,
        spec_hash=spec_hash,
        seed=0,
        config_key="k",
        **extra,
    )


def _snapshot(store: ResultsStore, run_id: int) -> dict[str, Any]:
    run = store.run(run_id)
    assert run is not None
    with store.engine.connect() as conn:
        epochs = conn.execute(
            sa.text("SELECT epoch, val_err FROM archbench_epochs WHERE run_id = :r ORDER BY epoch"),
            {"r": run_id},
        ).all()
        diagnostics = conn.execute(
            sa.text("SELECT COUNT(*) FROM archbench_diagnostics WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
    return {"run": run, "epochs": [tuple(e) for e in epochs], "diagnostics": diagnostics}


def _zombie_writes(store: ResultsStore, run_id: int) -> dict[str, Any]:
    diag = [{"epoch": 1, "block": "stages.0.0", "index": 0, "grad_norm": 1.0}]
    return {
        "epoch": lambda: store.record_epoch(run_id, {"epoch": 1, "val_err": 0.99}),
        "diagnostics": lambda: store.record_diagnostics(run_id, diag),
        "heartbeat": lambda: store.heartbeat(run_id),
        "discard": lambda: store.discard_epochs_after(run_id, -1),
        # --keep-weights records the file before finish_run: the run is still its writer's
        "weights": lambda: store.set_weights_path(run_id, "zombie.pt"),
        "fail": lambda: store.finish_run(run_id, status="failed", error="KeyboardInterrupt"),
        "finish": lambda: store.finish_run(run_id, status="completed", final={"val_err": 0.9}),
    }


def test_a_taken_over_run_is_not_changed_by_its_old_writer(
    two: tuple[ResultsStore, ResultsStore],
) -> None:
    zombie, heir = two
    run_id = _open(zombie, trial=0, exclusive=True)
    zombie.record_epoch(run_id, {"epoch": 0, "val_err": 0.5})
    # The zombie is stopped; its trial went stale; a retry (trial 1) takes the run over ...
    with pytest.raises(RunBusyError):
        _open(heir, trial=1, exclusive=True)
    assert _open(heir, trial=1, exclusive=True, replacing=("fence-cpu", 0)) == run_id
    heir.record_epoch(run_id, {"epoch": 1, "val_err": 0.3})
    heir.record_diagnostics(run_id, [{"epoch": 1, "block": "stages.0.0", "index": 0}])
    heir.finish_run(run_id, status="completed", final={"val_err": 0.3, "epochs_done": 1})
    done = _snapshot(heir, run_id)
    assert done["run"]["status"] == "completed" and done["run"]["lease"] == 2
    # ... and completes it. Then the zombie wakes up: every write it tries is refused whole.
    for what, write in _zombie_writes(zombie, run_id).items():
        with pytest.raises(LeaseLostError, match=f"run {run_id} .* it is completed") as caught:
            write()
        assert caught.value.run_id == run_id, what
        assert _snapshot(heir, run_id) == done, what
    # Nobody changes a completed run: not the new owner either.
    for what, write in _zombie_writes(heir, run_id).items():
        with pytest.raises(LeaseLostError, match="it is completed"):
            write()
        assert _snapshot(heir, run_id) == done, what


def test_the_old_writer_is_fenced_while_the_new_owner_trains(
    two: tuple[ResultsStore, ResultsStore],
) -> None:
    """The zombie wakes while the heir still trains: no stale error, no stray epoch."""
    zombie, heir = two
    run_id = _open(zombie, trial=0, exclusive=True)
    assert _open(heir, trial=1, exclusive=True, replacing=("fence-cpu", 0)) == run_id
    heir.record_epoch(run_id, {"epoch": 0, "val_err": 0.4})
    before = _snapshot(heir, run_id)
    for what, write in _zombie_writes(zombie, run_id).items():
        with pytest.raises(LeaseLostError, match=r"trial 1 of study 'fence-cpu' claimed it"):
            write()
        after = _snapshot(heir, run_id)
        assert after["epochs"] == before["epochs"] and after["diagnostics"] == 0, what
        assert after["run"]["status"] == "running" and "error" not in after["run"]["env"], what
    # the heir goes on and finishes as if nothing happened
    heir.record_epoch(run_id, {"epoch": 1, "val_err": 0.3})
    heir.finish_run(run_id, status="completed", final={"val_err": 0.3, "epochs_done": 1})
    assert heir.run(run_id)["status"] == "completed"


def test_every_claim_bumps_the_lease(two: tuple[ResultsStore, ResultsStore]) -> None:
    first, second = two
    run_id = _open(first, trial=0)
    assert first.run(run_id)["lease"] == 1
    first.finish_run(run_id, status="failed")
    assert _open(second, trial=1) == run_id  # a retried trial reopens the failed run
    assert second.run(run_id)["lease"] == 2
    second.finish_run(run_id, status="completed", final={"val_err": 0.1})
    assert _open(first, trial=2) == run_id  # a completed run handed back: no claim
    assert first.run(run_id)["lease"] == 2
    with pytest.raises(LeaseLostError):
        first.record_epoch(run_id, {"epoch": 0})
    assert _open(first, trial=3, rerun_completed=True) == run_id  # a rerun claims it
    assert first.run(run_id)["lease"] == 3
    first.record_epoch(run_id, {"epoch": 0})  # the new holder writes
    with pytest.raises(LeaseLostError):
        second.record_epoch(run_id, {"epoch": 0})


def test_unknown_runs_still_say_so(storage: str) -> None:
    with ResultsStore(storage) as store:
        with pytest.raises(StoreError, match="unknown run_id 999") as caught:
            store.record_epoch(999, {"epoch": 0})
        assert not isinstance(caught.value, LeaseLostError)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("stale", [True, False], ids=["trial-failed-as-stale", "run-taken-only"])
def test_a_stopped_worker_that_wakes_after_a_takeover_stops_cleanly(
    tmp_path: Path, stale: bool
) -> None:
    """The issue's zombie through the objective and worker: while the worker trains, its trial
    is failed as stale (or not yet: ``stale=False``) and a retry takes the run over and
    completes it (done here from the first epoch callback, as another process would); the
    woken worker's next write is refused, it stops training, and the worker goes on (the
    retry's result is reused)."""
    from optuna.trial import TrialState

    from archbench.runner.objective import Objective
    from archbench.runner.study import RunnerOptions, create_study, open_storage
    from archbench.runner.worker import run_worker
    from tests.test_run_sharing import _spec

    spec = _spec(tmp_path, recipe={"epochs": 3, "batch_size": 64}, trials=1, seeds=[0])
    options = RunnerOptions(results_dir=str(tmp_path / "res"), heartbeat_interval=1, threads=1)
    storage, store = open_storage(spec, options)
    study = create_study(spec, storage)
    events: list[str] = []
    objective = Objective(spec, store, options, on_event=events.append)
    heir = ResultsStore(spec.storage)
    record_epoch = store.record_epoch
    taken: list[int] = []

    def record_then_lose(run_id: int, metrics: Any) -> None:
        record_epoch(run_id, metrics)
        if taken:
            return
        (trial,) = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if stale:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        row = heir.run(run_id)
        opening = {k: row[k] for k in ("experiment", "profile", "config_key", "seed")}
        claimed = heir.start_run(
            **opening,
            spec_hash=row["spec_hash"],
            study_name=spec.study_name,
            trial_number=trial.number + 1,
            exclusive=True,
            replacing=(spec.study_name, trial.number),
        )
        assert claimed == run_id
        heir.finish_run(run_id, status="completed", final={"val_err": 0.125, "epochs_done": 3})
        taken.append(run_id)

    store.record_epoch = record_then_lose  # type: ignore[method-assign]
    try:
        run_worker(spec, options, objective=objective)
        (run_id,) = taken
        run = heir.run(run_id)
        assert (run["status"], run["val_err"], run["lease"]) == ("completed", 0.125, 2)
        assert "error" not in run["env"]
        assert heir.epochs()["epoch"].tolist() == [1]  # the zombie's later epochs refused
        why = (
            "another worker ended this trial"
            if stale  # Optuna refuses the epoch's report first
            else f"run {run_id} is no longer this writer's: it is completed"
        )
        assert any(f"trial 0: stopped, {why}" in e for e in events), events
        states = [t.state for t in study.get_trials(deepcopy=False)]
        assert states == [TrialState.FAIL, TrialState.COMPLETE]
        assert study.trials[1].value == pytest.approx(1 - 0.125)  # the heir's result reused
        assert not list((tmp_path / "res").rglob("*.pt"))  # the zombie's stale checkpoint
    finally:
        heir.close()
        store.close()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_the_issue_recipe_a_stopped_worker_resumed_after_a_takeover(tmp_path: Path) -> None:
    """Issue 20, case 1 with real processes: ``run --workers 2 --heartbeat 2``; SIGSTOP the
    worker training a run after an epoch; the other worker fails its trial as stale, takes
    the run over and completes it; SIGCONT. The result stands, the run exits 0."""
    import os
    import signal
    import subprocess
    import time

    from tests.test_faults import ENV, archbench, check_exactly_once, wait_for, write_spec

    db = tmp_path / "z.db"
    epochs = 6
    spec = write_spec(tmp_path / "f.yaml", str(db), variants=2, seeds=[0], epochs=epochs, width=8)
    args = archbench("run", str(spec), "--workers", "2", "--heartbeat", "2", "--quiet")
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )

    def training() -> tuple[int, int] | None:
        try:
            with ResultsStore(db, create=False) as store:
                runs = store.runs(experiment="f", status="running")
                for run in runs.itertuples():
                    done = store.epochs(run_ids=[int(run.run_id)])
                    if 1 <= len(done) < epochs - 2:
                        return int(run.run_id), int(run.env["worker"].rsplit(":", 1)[1])
        except Exception:
            return None
        return None

    stopped = None
    try:
        run_id, pid = wait_for(training, 240, proc)
        os.kill(pid, signal.SIGSTOP)
        stopped = pid

        def taken_over_and_done() -> dict[str, Any] | None:
            with ResultsStore(db, create=False) as store:
                run = store.run(run_id)
            return run if run["status"] == "completed" and run["lease"] >= 2 else None

        done = wait_for(taken_over_and_done, 240)
        os.kill(pid, signal.SIGCONT)
        stopped = None
        out, err = proc.communicate(timeout=300)
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err, err
    assert f"stopped, run {run_id} is no longer this writer's" in out or (
        "another worker ended this trial" in out
    ), out
    time.sleep(0.1)
    with ResultsStore(db) as store:
        after = store.run(run_id)
        check_exactly_once(store, n_configs=2, seeds=[0], epochs=epochs)
    assert {k: after[k] for k in ("status", "val_err", "lease", "finished_at")} == {
        k: done[k] for k in ("status", "val_err", "lease", "finished_at")
    }
    assert "error" not in after["env"]
    assert not list((tmp_path / "checkpoints").rglob("*.pt"))  # nor the zombie's last one


def test_a_handle_handed_back_a_finished_run_does_not_write_into_its_rerun(
    two: tuple[ResultsStore, ResultsStore],
) -> None:
    """``start_run`` hands a completed run back without claiming it; when another writer
    reruns it, the handle that was handed it back holds no lease of it and must not write."""
    first, second = two
    run_id = _open(first, trial=0)
    first.finish_run(run_id, status="completed", final={"val_err": 0.1})
    assert _open(first, trial=1) == run_id  # handed back untouched: no lease
    assert _open(second, trial=2, rerun_completed=True) == run_id  # lease 3, running
    second.record_epoch(run_id, {"epoch": 0, "val_err": 0.5})
    before = _snapshot(second, run_id)
    for what, write in _zombie_writes(first, run_id).items():
        with pytest.raises(LeaseLostError, match=r"trial 2 of study 'fence-cpu' claimed it"):
            write()
        assert _snapshot(second, run_id) == before, what


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_zombie_does_not_overwrite_the_kept_weights_of_the_run_it_lost(tmp_path: Path) -> None:
    """``--keep-weights``: the run is taken over and completed after the zombie's last epoch
    but before it keeps its weights; it must write no weights file (the path is shared with
    the new owner's) and record none."""
    from archbench.runner.objective import Objective
    from archbench.runner.study import RunnerOptions, create_study, open_storage
    from archbench.runner.worker import run_worker
    from tests.test_run_sharing import _spec

    spec = _spec(tmp_path, recipe={"epochs": 2, "batch_size": 64}, trials=1, seeds=[0])
    options = RunnerOptions(
        results_dir=str(tmp_path / "res"), heartbeat_interval=1, threads=1, keep_weights=True
    )
    storage, store = open_storage(spec, options)
    create_study(spec, storage)
    objective = Objective(spec, store, options, on_event=lambda _: None)
    heir = ResultsStore(spec.storage)
    record_diagnostics = store.record_diagnostics
    taken: list[int] = []

    def lose_after_the_last_epoch(run_id: int, items: Any) -> int:
        items = list(items)
        count = record_diagnostics(run_id, items)  # the last write of the last epoch
        if taken or max(d.epoch for d in items) < 2:
            return count
        row = heir.run(run_id)
        opening = {k: row[k] for k in ("experiment", "profile", "config_key", "seed")}
        heir.start_run(**opening, spec_hash=row["spec_hash"], study_name="other", trial_number=9)
        heir.finish_run(run_id, status="completed", final={"val_err": 0.125, "epochs_done": 2})
        taken.append(run_id)
        return count

    store.record_diagnostics = lose_after_the_last_epoch  # type: ignore[method-assign]
    try:
        run_worker(spec, options, objective=objective)
        (run_id,) = taken
        assert heir.run(run_id)["weights_path"] is None
        assert not list((tmp_path / "res").rglob("weights/**/*.pt"))
    finally:
        heir.close()
        store.close()
