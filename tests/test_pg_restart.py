"""A PostgreSQL restart or outage during ``archbench run --workers 2`` (issue 20, case 3).

The server of ``.ci/postgres.sh`` (ARCHBENCH_PG_BINDIR, ARCHBENCH_PG_DIR) is restarted with
``pg_ctl -m fast restart`` while both workers train: they ride it out (retries with backoff,
epochs held and flushed) and the run completes with every run and epoch recorded once, no
traceback. Stopped for longer than ``--db-grace``: one line per worker, exit code 3, and a
rerun once the server is back completes everything exactly once.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from archbench.store import ResultsStore
from tests.test_faults import ENV, archbench, check_exactly_once, wait_for, write_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

EPOCHS = 6


def pg_ctl(*args: str) -> None:
    bindir, pgdir = os.environ.get("ARCHBENCH_PG_BINDIR"), os.environ.get("ARCHBENCH_PG_DIR")
    if not bindir or not pgdir:
        pytest.skip("needs the server of .ci/postgres.sh (ARCHBENCH_PG_BINDIR, ARCHBENCH_PG_DIR)")
    data = f"{pgdir}/data"
    command = [f"{bindir}/pg_ctl", "-D", data, "-w", "-t", "60", *args]
    if "start" in args:  # the options it was first started with (restart reuses them itself)
        opts = shlex.split(Path(data, "postmaster.opts").read_text())[1:]
        i = opts.index("-D")
        command += ["-o", shlex.join(opts[:i] + opts[i + 2 :])]
    if "start" in args or "restart" in args:  # the server's output: never our pipes
        command += ["-l", f"{pgdir}/server.log"]
    if os.getuid() == 0:  # the server runs as postgres (postgres.sh)
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90
    )


def training(store_url: str) -> bool:
    """A run is mid-training (some epochs recorded, not all)."""
    try:
        with ResultsStore(store_url, create=False) as store:
            runs = store.runs(experiment="f", status="running")
            if runs.empty:
                return False
            rows = store.epochs(run_ids=[int(r) for r in runs["run_id"]])
    except Exception:  # not created yet
        return False
    counts = rows.groupby("run_id").size()
    return bool(((counts >= 1) & (counts < EPOCHS)).any())


def start_run(tmp_path: Path, pg_url: str, *extra: str) -> subprocess.Popen:
    spec = write_spec(
        tmp_path / "f.yaml", pg_url, variants=4, seeds=[0], epochs=EPOCHS, width=4
    )  # fmt: skip
    return subprocess.Popen(
        archbench("run", str(spec), "--workers", "2", "--heartbeat", "5", "--quiet", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def test_a_postgresql_restart_mid_run_is_ridden_out(tmp_path: Path, pg_url: str) -> None:
    """The issue's ``pg_ctl -m fast restart`` (a quick one may fall between two calls: the
    pool's pre-ping then reconnects unseen), then the server stopped for 8 s while the
    workers train (their epochs are held, their calls retried)."""
    pg_ctl("status")
    proc = start_run(tmp_path, pg_url)
    try:
        wait_for(lambda: training(pg_url), 240, proc)
        pg_ctl("-m", "fast", "restart")
        wait_for(lambda: training(pg_url), 240, proc)
        pg_ctl("-m", "fast", "stop")
        time.sleep(8)
        pg_ctl("start")
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(err)  # pytest -s: the workers' "database unreachable" / "reachable again" lines
    assert proc.returncode == 0, out + err
    assert "Traceback" not in out + err, err
    assert "database unreachable" in err and "database reachable again after" in err
    assert "4/4 trial(s) finished" in out
    with ResultsStore(pg_url) as store:
        check_exactly_once(store, n_configs=4, seeds=[0], epochs=EPOCHS)


def test_an_outage_past_the_grace_period_stops_cleanly_then_a_rerun_completes(
    tmp_path: Path, pg_url: str
) -> None:
    pg_ctl("status")
    proc = start_run(tmp_path, pg_url, "--db-grace", "5")
    try:
        wait_for(lambda: training(pg_url), 240, proc)
        pg_ctl("-m", "fast", "stop")
        try:
            out, err = proc.communicate(timeout=180)
        finally:
            pg_ctl("start")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, out + err
    assert "Traceback" not in out + err, err
    assert "past the grace period of 5 s" in err
    time.sleep(1)
    spec = tmp_path / "f.yaml"
    done = subprocess.run(
        archbench("run", str(spec), "--workers", "2", "--heartbeat", "5", "--quiet"),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with ResultsStore(pg_url) as store:
        check_exactly_once(store, n_configs=4, seeds=[0], epochs=EPOCHS)
