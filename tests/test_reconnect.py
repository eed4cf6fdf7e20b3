"""Reconnects (issue 20, case 3): bounded retries with backoff through a database outage.

Fast and deterministic: a fake clock and sleep, and a "connection" that fails like a
restarted PostgreSQL server (psycopg2's OperationalError text) until told to come back. The
real server restart is in tests/test_pg_restart.py (slow, postgres).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from archbench.store import ResultsStore
from archbench.store import store as store_module
from archbench.store.reconnect import (
    DatabaseUnavailableError,
    Reconnect,
    is_disconnect,
    unavailable,
)
from tests.test_store import COUNTS, make_spec


class OperationalError(Exception):
    """Stands in for psycopg2.OperationalError (matched by name and message)."""


def server_gone() -> sa.exc.OperationalError:
    return sa.exc.OperationalError(
        "SELECT 1", {}, OperationalError("server closed the connection unexpectedly")
    )


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def flaky(failures: int, time: FakeTime | None = None) -> Any:
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise server_gone()
        return "answer"

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def connected(grace_s: float, time: FakeTime) -> Reconnect:
    policy = Reconnect(grace_s, sleep=time.sleep, clock=time.clock)
    policy.call(lambda: None, "open")  # reached the database once
    return policy


def test_what_counts_as_a_lost_connection() -> None:
    assert is_disconnect(server_gone())
    pg = OperationalError("whatever")
    pg.pgcode = "57P01"  # type: ignore[attr-defined]  # admin shutdown
    assert is_disconnect(pg)
    try:  # Optuna wraps SQLAlchemy errors: the cause counts
        try:
            raise server_gone()
        except sa.exc.SQLAlchemyError as exc:
            raise RuntimeError("An exception is raised during the commit.") from exc
    except RuntimeError as wrapped:
        assert is_disconnect(wrapped)
    assert not is_disconnect(sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_disconnect(ValueError("connection refused"))  # not a database error
    assert not is_disconnect(None)


def test_retries_back_off_exponentially_until_the_database_answers() -> None:
    time = FakeTime()
    policy = connected(180, time)
    fn = flaky(6)
    assert policy.call(fn, "write") == "answer"
    assert fn.calls["n"] == 7 and not policy.down
    assert len(time.sleeps) == 6
    # 0.5 s doubling (jittered x0.5..1.5), capped at 15 s
    for attempt, slept in enumerate(time.sleeps):
        base = min(15.0, 0.5 * 2**attempt)
        assert 0.5 * base <= slept <= 1.5 * base
    assert time.sleeps[5] > time.sleeps[0]


def test_past_the_grace_period_it_gives_up_then_fails_fast() -> None:
    time = FakeTime()
    policy = connected(30, time)
    with pytest.raises(DatabaseUnavailableError, match=r"unreachable for \d+ s, past .* 30 s"):
        policy.call(flaky(10**6), "results store write")
    assert 30 <= time.now < 30 + 1e-6 + 15 * 1.5  # the last sleep ends at the deadline
    assert time.now == pytest.approx(30.0)
    slept = len(time.sleeps)
    with pytest.raises(DatabaseUnavailableError):  # still down: no more waiting
        policy.call(flaky(10**6), "optuna get_trial")
    assert len(time.sleeps) == slept
    assert policy.call(lambda: "back", "read") == "back" and not policy.down  # it came back


def test_a_process_that_never_connected_is_not_in_an_outage() -> None:
    time = FakeTime()
    policy = Reconnect(180, sleep=time.sleep, clock=time.clock)
    with pytest.raises(sa.exc.OperationalError):  # a wrong URL: bad input, at once
        policy.call(flaky(1), "open")
    assert time.sleeps == []


def test_other_errors_are_not_retried() -> None:
    time = FakeTime()
    policy = connected(180, time)

    def bad() -> None:
        raise sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(sa.exc.IntegrityError):
        policy.call(bad, "write")
    assert time.sleeps == []


def test_unavailable_is_found_behind_another_error() -> None:
    lost = DatabaseUnavailableError("gone")
    try:
        try:
            raise lost
        finally:
            raise UnboundLocalError("updated_state")  # what Optuna's _run_trial then raises
    except UnboundLocalError as exc:
        assert unavailable(exc) is lost
    assert unavailable(ValueError("x")) is None


# -- the results store through an outage --------------------------------------------------------


@pytest.fixture
def outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A store whose writes fail like a lost server while ``state['down']``."""
    time = FakeTime()
    state = {"down": False, "attempts": 0}
    real = store_module.write_once

    def write_once(*args: Any, **kwargs: Any) -> Any:
        state["attempts"] += 1
        if state["down"]:
            raise server_gone()
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "write_once", write_once)
    policy = Reconnect(120, sleep=time.sleep, clock=time.clock)
    store = ResultsStore(tmp_path / "out.db", reconnect=policy)
    spec_hash = store.record_variant(make_spec(), family="resnet", complexity=COUNTS)
    run_id = store.start_run(experiment="o", profile="cpu", spec_hash=spec_hash, seed=0)
    yield store, run_id, state, time
    store.close()


def _epochs(store: ResultsStore) -> list[int]:
    with store.engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT epoch FROM archbench_epochs ORDER BY epoch")))


def test_epochs_recorded_during_an_outage_are_held_and_written_once(outage: Any) -> None:
    store, run_id, state, time = outage
    store.record_epoch(run_id, {"epoch": 1, "val_err": 0.5})
    state["down"] = True
    for epoch in (2, 3):  # training goes on: nothing raised, nothing waited for
        store.record_epoch(run_id, {"epoch": epoch, "val_err": 0.4})
        store.record_diagnostics(run_id, [{"epoch": epoch, "block": "stages.0.0", "index": 0}])
    assert store.offline and store.reconnect.down and time.sleeps == []
    assert _epochs(store) == [1]
    time.now += 60  # still within the grace period
    state["down"] = False
    store.record_epoch(run_id, {"epoch": 4, "val_err": 0.3})  # flushes what was held, first
    assert not store.offline and not store.reconnect.down
    assert _epochs(store) == [1, 2, 3, 4]
    assert len(store.diagnostics()) == 2
    # the final write waits for the database (backoff) and goes in after the held rows
    state["down"] = True
    store.record_epoch(run_id, {"epoch": 5, "val_err": 0.2})
    assert store.offline

    real_sleep = time.sleep

    def come_back(seconds: float) -> None:
        real_sleep(seconds)
        if len(time.sleeps) == 3:
            state["down"] = False

    time.sleep = come_back
    store.reconnect._sleep = come_back
    store.finish_run(run_id, status="completed", final={"val_err": 0.2, "epochs_done": 5})
    assert len(time.sleeps) == 3
    assert _epochs(store) == [1, 2, 3, 4, 5]
    assert store.run(run_id)["status"] == "completed"


def test_past_the_grace_period_the_store_raises_and_keeps_what_it_had(outage: Any) -> None:
    store, run_id, state, time = outage
    store.record_epoch(run_id, {"epoch": 1, "val_err": 0.5})
    state["down"] = True
    store.record_epoch(run_id, {"epoch": 2, "val_err": 0.4})
    time.now += 121
    with pytest.raises(DatabaseUnavailableError, match="past the grace period of 120 s"):
        store.record_epoch(run_id, {"epoch": 3, "val_err": 0.3})
    with pytest.raises(DatabaseUnavailableError):  # fails fast from now on
        store.finish_run(run_id, status="failed", error="gone")
    state["down"] = False
    assert _epochs(store) == [1]  # nothing half-written, nothing twice
    assert store.run(run_id)["status"] == "running"


# -- Optuna's storage through an outage ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_optuna_storage_calls_retry_and_its_heartbeat_skips_a_beat(tmp_path: Path) -> None:
    import optuna

    from archbench.store.optuna_retry import reconnecting_rdb_storage

    time = FakeTime()
    policy = connected(120, time)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = reconnecting_rdb_storage(url, heartbeat_interval=5, reconnect=policy)
    assert isinstance(storage, optuna.storages.RDBStorage)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    down = {"left": 3}

    @sa.event.listens_for(storage.engine, "before_cursor_execute")
    def gone(*_: Any) -> None:
        if down["left"] > 0:
            down["left"] -= 1
            raise server_gone()

    assert storage.get_trial(trial._trial_id).number == 0  # retried through three failures
    assert len(time.sleeps) == 3
    down["left"] = 1
    storage.record_heartbeat(trial._trial_id)  # a lost beat is skipped, not raised
    assert down["left"] == 0


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_worker_keeps_training_through_an_outage_and_flushes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epochs 2 and 3 end while the database is away: training goes on (nothing raised),
    their rows and Optuna's reports follow once it is back, each once."""
    from archbench.runner.objective import Objective
    from archbench.runner.study import RunnerOptions, create_study, open_storage
    from archbench.runner.worker import run_worker
    from tests.test_run_sharing import _spec

    spec = _spec(tmp_path, recipe={"epochs": 4, "batch_size": 64}, trials=1, seeds=[0])
    options = RunnerOptions(results_dir=str(tmp_path / "res"), heartbeat_interval=5, threads=1)
    storage, store = open_storage(spec, options)
    study = create_study(spec, storage)
    state = {"down": False}
    real = store_module.write_once

    def write_once(*args: Any, **kwargs: Any) -> Any:
        if state["down"]:
            raise server_gone()
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "write_once", write_once)
    record_epoch = store.record_epoch
    offline_after: list[bool] = []

    def record(run_id: int, metrics: Any) -> None:
        state["down"] = metrics.epoch in (2, 3)
        record_epoch(run_id, metrics)
        offline_after.append(store.offline)

    store.record_epoch = record  # type: ignore[method-assign]
    try:
        run_worker(spec, options, objective=Objective(spec, store, options))
        assert offline_after == [False, True, True, False]  # held, then flushed by epoch 4
        (trial,) = study.get_trials(deepcopy=False)
        assert trial.state.name == "COMPLETE"
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4]  # reported once it was back
        assert store.epochs()["epoch"].tolist() == [1, 2, 3, 4]
        assert store.runs()["status"].tolist() == ["completed"]
    finally:
        store.close()


def test_rows_held_under_an_earlier_claim_are_not_written_under_a_later_one(outage: Any) -> None:
    """Epoch rows held in an outage belong to the claim that recorded them: a later claim of
    the run by the same handle (the trial failed meanwhile and its retry reopened the run,
    resuming from an earlier checkpoint) must not have them written as its own."""
    store, run_id, state, _ = outage
    state["down"] = True
    store.record_epoch(run_id, {"epoch": 5, "val_err": 0.9})  # held, under lease 1
    assert store.offline
    state["down"] = False
    opening = dict(experiment="o", profile="cpu", spec_hash=store.run(run_id)["spec_hash"])
    assert store.start_run(**opening, seed=0) == run_id  # lease 2: a new attempt
    store.record_epoch(run_id, {"epoch": 1, "val_err": 0.5})
    assert _epochs(store) == [1]
    assert not store.offline
