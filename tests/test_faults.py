"""Faults and scale, with real processes: a worker killed with SIGKILL mid-trial and a rerun
that completes the study (the killed run resumes from its checkpoint); two concurrent local
workers; ``archbench worker`` joining a running study; the same two-worker study on
PostgreSQL when ARCHBENCH_TEST_POSTGRES_URL is set (skipped otherwise).

The tests that start ``archbench`` processes are marked ``integration``: ``make test`` (and so
``.ci/run``) runs them, ``make test-fast`` skips them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from archbench.runner.objective import NOTHING_QUEUED, PRUNED_REASON_ATTR
from archbench.store import ResultsStore

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
LOCK_ERRORS = ("database is locked", "Traceback", "deadlock", "could not serialize")


def write_spec(
    path: Path, storage: str, *, variants: int, seeds: list[int], epochs: int, width: int
) -> Path:
    families = ["resnet", "plain", "preact"]
    depths = [8, 14]
    chosen = [
        {"family": fam, "depth": depth, "width": width} for depth in depths for fam in families
    ][:variants]
    data = {
        "name": "f",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": epochs, "batch_size": 32, "lr": 0.1, "schedule": "cosine"},
        "variants": chosen,
        "seeds": seeds,
        "storage": storage,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def archbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "archbench", *args]


def study_of(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="f:default", storage=storage)


def check_exactly_once(store: ResultsStore, n_configs: int, seeds: list[int], epochs: int) -> Any:
    """Every (configuration, seed) run exists once, completed, with each epoch once."""
    runs = store.runs(experiment="f")
    assert len(runs) == n_configs * len(seeds)
    assert set(runs["status"]) == {"completed"}
    assert runs.groupby(["config_key", "seed"]).size().max() == 1
    assert runs["config_key"].nunique() == n_configs
    assert sorted(runs.groupby("config_key")["seed"].apply(sorted).map(tuple).unique()) == [
        tuple(sorted(seeds))
    ]
    assert runs["val_err"].notna().all() and (runs["epochs_done"] == epochs).all()
    rows = store.epochs(experiment="f")
    assert len(rows) == len(runs) * epochs
    assert not rows.duplicated(["run_id", "epoch"]).any()
    assert rows["val_err"].notna().all() and rows["train_loss"].notna().all()
    return runs


def check_study(storage: str, n_configs: int) -> list[optuna.trial.FrozenTrial]:
    trials = study_of(storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_configs
    assert len({t.user_attrs["config_key"] for t in complete}) == n_configs
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return trials


def wait_for(predicate: Any, timeout: float, proc: subprocess.Popen | None = None) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def running_run_with_epochs(db: Path, epochs: int, completed: int = 0) -> Any:
    """(run_id, epochs recorded) of a running run with 1 <= recorded epochs < ``epochs``, once
    at least ``completed`` runs are completed."""
    if not db.exists():
        return None
    try:
        with ResultsStore(db, create=False) as store:
            if len(store.runs(experiment="f", status="completed")) < completed:
                return None
            runs = store.runs(experiment="f", status="running")
            if runs.empty:
                return None
            rows = store.epochs(run_ids=[int(r) for r in runs["run_id"]])
    except Exception:  # the schema may be mid-creation
        return None
    counts = rows.groupby("run_id").size()
    partial = counts[(counts >= 1) & (counts < epochs)]
    return (int(partial.index[0]), int(partial.iloc[0])) if len(partial) else None


@pytest.mark.integration
def test_kill_9_mid_trial_then_rerun_completes_every_run_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    epochs = 4
    spec = write_spec(tmp_path / "f.yaml", str(db), variants=2, seeds=[0], epochs=epochs, width=16)
    args = archbench("run", str(spec), "--heartbeat", "1", "--quiet", "--threads", "1")
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    try:
        killed_run, recorded = wait_for(
            lambda: running_run_with_epochs(db, epochs, completed=1), 180, first
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL
    with ResultsStore(db) as store:
        before = store.run(killed_run)
        assert before is not None and before["status"] == "running"
    storage = f"sqlite:///{db}"
    assert [t.state for t in study_of(storage).trials].count(TrialState.RUNNING) == 1

    second = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert f"(run {killed_run}) (resuming after epoch " in out
    assert not any(e in second.stderr for e in LOCK_ERRORS), second.stderr

    with ResultsStore(db) as store:
        runs = check_exactly_once(store, n_configs=2, seeds=[0], epochs=epochs)
    resumed = runs[runs["run_id"] == killed_run].iloc[0]
    assert resumed["attempts"] == 2
    # It resumed from a checkpoint of an epoch it had finished (at least the ones recorded).
    assert resumed["env"]["resumed_after_epoch"] >= recorded
    assert sorted(runs["attempts"]) == [1, 2]

    trials = check_study(storage, n_configs=2)
    stale = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stale) == 1
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == stale[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == stale[0].params
    assert sorted(retry[0].intermediate_values)[: len(stale[0].intermediate_values)] == sorted(
        stale[0].intermediate_values
    )
    assert not list((tmp_path / "checkpoints").rglob("*.pt"))


def test_a_worker_waits_for_a_dead_workers_trial_then_retries_it(tmp_path: Path) -> None:
    """In-process and deterministic: a trial popped by a 'worker' that then stops sending
    heartbeats holds the study until it is stale, then is retried by the live worker."""
    from archbench.runner.spec import load_spec
    from archbench.runner.study import RunnerOptions, prepare_study
    from archbench.runner.worker import run_worker

    db = tmp_path / "d.db"
    spec = load_spec(
        write_spec(tmp_path / "f.yaml", str(db), variants=1, seeds=[0], epochs=1, width=4)
    )
    options = RunnerOptions(heartbeat_interval=1, grace_period=2, threads=1, progress=False)
    study, _ = prepare_study(spec, options)
    with pytest.warns(UserWarning, match="Heartbeat"):
        dead = study.ask()  # pops the queued configuration, like a worker would
    study._storage.record_heartbeat(dead._trial_id)  # ...and then dies
    events: list[str] = []
    run_worker(spec, options, on_event=events.append)
    assert any(e.startswith("waiting for 1 running trial(s)") for e in events), events
    trials = check_study(f"sqlite:///{db}", n_configs=1)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [dead.number]
    with ResultsStore(db) as store:
        check_exactly_once(store, n_configs=1, seeds=[0], epochs=1)


def two_workers(tmp_path: Path, storage: str, optuna_storage: Any, store_at: Any) -> None:
    n, seeds, epochs = 6, [0, 1], 1
    spec = write_spec(
        tmp_path / "f.yaml", str(tmp_path / "unused.db"), variants=n, seeds=seeds, epochs=epochs,
        width=4,
    )  # fmt: skip
    done = subprocess.run(
        archbench("run", str(spec), "--storage", storage, "--workers", "2", "--heartbeat", "2"),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(e in done.stdout + done.stderr for e in LOCK_ERRORS), done.stderr
    assert "2 worker(s) x 1 thread(s)" in done.stdout
    assert f"{n}/{n} trial(s) finished" in done.stdout
    with ResultsStore(store_at) as store:
        runs = check_exactly_once(store, n_configs=n, seeds=seeds, epochs=epochs)
    assert set(runs["attempts"]) == {1}
    trials = optuna.load_study(study_name="f:default", storage=optuna_storage).get_trials()
    # A worker that saw a queued point another took in the meantime ends its trial pruned
    # ("nothing queued"), untrained; every other trial completed, one per grid point.
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    extra = [t for t in trials if t.state != TrialState.COMPLETE]
    assert len(complete) == n, [(t.number, t.state) for t in trials]
    assert all(
        t.state == TrialState.PRUNED and t.user_attrs.get(PRUNED_REASON_ATTR) == NOTHING_QUEUED
        for t in extra
    ), [(t.number, t.state, t.user_attrs) for t in extra]
    workers = {t.user_attrs["worker"] for t in complete}
    assert len(workers) == 2, workers  # both processes trained
    assert not (tmp_path / "unused.db").exists()


@pytest.mark.integration
def test_two_local_workers_share_a_sqlite_study(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    two_workers(tmp_path, str(db), f"sqlite:///{db}", db)


@pytest.mark.slow
@pytest.mark.integration
def test_two_local_workers_share_a_journal_study(tmp_path: Path) -> None:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "w.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    two_workers(tmp_path, f"journal:{journal}", storage, tmp_path / "w.archbench.db")


@pytest.mark.postgres
@pytest.mark.integration
def test_two_workers_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    from archbench.store.storage import resolve_storage

    two_workers(tmp_path, pg_url, resolve_storage(pg_url).optuna_url, pg_url)


@pytest.mark.slow
@pytest.mark.integration
def test_worker_joins_a_running_study(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    n, epochs = 6, 8  # long enough that the joiner is up (imports, checks) before the end
    spec = write_spec(tmp_path / "f.yaml", str(db), variants=n, seeds=[0], epochs=epochs, width=8)
    log = (tmp_path / "run.log").open("w")
    runner = subprocess.Popen(
        archbench("run", str(spec), "--quiet", "--threads", "1"),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    try:
        wait_for(lambda: running_run_with_epochs(db, epochs), 180, runner)
        joined = subprocess.run(
            archbench("worker", str(spec), "--storage", f"sqlite:///{db}", "--quiet"),
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
        )
        assert runner.wait(300) == 0, (tmp_path / "run.log").read_text()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert joined.returncode == 0, joined.stdout + joined.stderr
    with ResultsStore(db) as store:
        check_exactly_once(store, n_configs=n, seeds=[0], epochs=epochs)
    trials = check_study(f"sqlite:///{db}", n_configs=n)
    by_worker = pd.Series([t.user_attrs["worker"] for t in trials]).value_counts()
    assert len(by_worker) == 2, (by_worker, joined.stdout, joined.stderr)  # joiner trained some
    assert "complete" in joined.stdout
