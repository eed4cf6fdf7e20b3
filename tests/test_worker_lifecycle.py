"""Workers over their whole life: a net that cannot be built fails its run row (not left
'running'); workers started at the same moment on a new store start cleanly and queue the grid
once; workers of a killed ``archbench run --workers N`` exit with it. Tiny specs on digits."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from archbench.runner.objective import NOTHING_QUEUED, PRUNED_REASON_ATTR
from archbench.store import ResultsStore

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
VARIANTS = (("resnet", 8), ("plain", 8), ("preact", 8), ("resnet", 14), ("plain", 14))
LOG_ERRORS = ("Traceback", "error:", "already exists", "UNIQUE constraint", "locked")


def write_spec(path: Path, storage: str, *, variants: int, epochs: int = 1, width: int = 4) -> Path:
    data = {
        "name": "w",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": epochs, "batch_size": 64, "lr": 0.1, "schedule": "cosine"},
        "variants": [{"family": f, "depth": d, "width": width} for f, d in VARIANTS[:variants]],
        "seeds": [0],
        "storage": storage,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_net_that_cannot_be_built_fails_its_run_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import archbench.models.net
    from archbench.runner.spec import load_spec
    from archbench.runner.study import RunnerOptions, prepare_study
    from archbench.runner.worker import run_worker

    real = archbench.models.net.build_net

    def no_memory(spec: Any, *args: Any, device: Any = None, **kwargs: Any) -> Any:
        if str(device) == "meta":  # spec checks build on the meta device: no allocation
            return real(spec, *args, device=device, **kwargs)
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(archbench.models.net, "build_net", no_memory)
    db = tmp_path / "b.db"
    spec = load_spec(write_spec(tmp_path / "b.yaml", str(db), variants=1))
    options = RunnerOptions(threads=1, progress=False)
    prepare_study(spec, options)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_worker(spec, options)
    with ResultsStore(db, create=False) as store:
        runs = store.runs(experiment="w")
    assert list(runs["status"]) == ["failed"]
    assert runs["finished_at"].notna().all()
    assert runs.iloc[0]["env"]["error"] == (
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    trial = optuna.load_study(study_name="w:default", storage=f"sqlite:///{db}").trials[0]
    assert trial.state == TrialState.FAIL


# -- workers started at the same moment ------------------------------------------------------


def _cli_at_barrier(
    argv: list[str], log: str, barrier: multiprocessing.synchronize.Barrier
) -> None:
    """One `archbench ...` process, its imports done, released together with the others."""
    import archbench.cli
    import archbench.runner.worker

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    barrier.wait(timeout=120)
    sys.exit(archbench.cli.main(argv))


def start_together(argvs: list[list[str]], logs: list[Path]) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(argvs))
    procs = [
        ctx.Process(target=_cli_at_barrier, args=(argv, str(log), barrier))
        for argv, log in zip(argvs, logs)
    ]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join(240)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    return [proc.exitcode for proc in procs]


@pytest.mark.parametrize(
    ("command", "n_workers"), [("worker", 4), pytest.param("run", 6, marks=pytest.mark.slow)]
)
def test_workers_started_together_on_a_new_store_start_cleanly_and_queue_once(
    tmp_path: Path, command: str, n_workers: int
) -> None:
    """Before the setup lock, most rounds had a worker exit 2 ("table studies already
    exists", a duplicate alembic_version row) or a grid point queued twice."""
    n_configs = 4
    db = tmp_path / "new.db"
    spec = write_spec(tmp_path / "w.yaml", str(db), variants=n_configs)
    # A long heartbeat: on a loaded machine a short one lets a live trial turn stale and be
    # retried, a legitimate extra trial that is not what this test is about.
    argv = [command, str(spec), "--quiet", "--threads", "1", "--heartbeat", "10"]
    logs = [tmp_path / f"worker{i}.log" for i in range(n_workers)]
    codes = start_together([argv] * n_workers, logs)
    texts = [log.read_text() for log in logs]
    for code, text in zip(codes, texts):
        assert code == 0, text
        assert not any(e in text for e in LOG_ERRORS), text
    trials = optuna.load_study(study_name="w:default", storage=f"sqlite:///{db}").trials
    # Not stale retries, nor a worker's trial that found the queue already empty after its
    # progress check (pruned "nothing queued": a benign race, it trains nothing).
    queued = [
        t
        for t in trials
        if "failed_trial" not in t.system_attrs
        and t.user_attrs.get(PRUNED_REASON_ATTR) != NOTHING_QUEUED
    ]
    summary = [(t.number, t.user_attrs.get("config_key"), t.state.name) for t in trials]
    assert len(queued) == n_configs, summary  # the grid was queued exactly once
    assert len({t.user_attrs["config_key"] for t in queued}) == n_configs, summary
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_configs and len({t.user_attrs["config_key"] for t in complete}) == 4
    with ResultsStore(db, create=False) as store:
        runs = store.runs(experiment="w")
    assert len(runs) == n_configs and set(runs["status"]) == {"completed"}


# -- a killed parent takes its workers along ---------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited: only its reaping is left


def _worker_pids(db: Path) -> set[int]:
    if not db.exists():
        return set()
    try:
        with ResultsStore(db, create=False) as store:
            runs = store.runs(experiment="w")
    except Exception:  # the schema may be mid-creation
        return set()
    return {int(str(env["worker"]).rsplit(":", 1)[1]) for env in runs["env"]}


@pytest.mark.slow  # three worker processes and a rerun: ~30 s of CPU
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_run_with_workers_stops_the_workers_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "k.db"
    spec = write_spec(tmp_path / "k.yaml", str(db), variants=2, epochs=3, width=8)
    args = [sys.executable, "-m", "archbench", "run", str(spec), "--quiet", "--threads", "1"]
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        [*args, "--workers", "2", "--heartbeat", "1"], stdout=log, stderr=subprocess.STDOUT, env=ENV
    )
    pids: set[int] = set()
    try:
        end = time.monotonic() + 240
        while len(pids) < 2 and time.monotonic() < end and first.poll() is None:
            time.sleep(0.2)
            pids = _worker_pids(db)
        assert len(pids) == 2, (tmp_path / "first.log").read_text()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        end = time.monotonic() + 15  # a surviving worker would still be training now
        while any(_alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.2)
        assert not [p for p in pids if _alive(p)], "workers outlived their killed parent"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        for pid in pids:  # before the fix they train on: do not leave them behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    with ResultsStore(db, create=False) as store:
        stopped = store.runs(experiment="w")
    # Stopped mid-trial as on Ctrl-C: the rows say so, none is left 'running' (or went on
    # to complete, as the orphaned workers' did before).
    assert set(stopped["status"]) == {"failed"}, stopped[["status", "env"]]
    assert all(env["error"].startswith("KeyboardInterrupt") for env in stopped["env"])

    second = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2/2 trial(s) finished" in second.stdout
    with ResultsStore(db, create=False) as store:
        runs = store.runs(experiment="w")
    assert len(runs) == 2 and set(runs["status"]) == {"completed"}
    assert (runs["epochs_done"] == 3).all()
    trials = optuna.load_study(study_name="w:default", storage=f"sqlite:///{db}").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2 and len({t.user_attrs["config_key"] for t in complete}) == 2
