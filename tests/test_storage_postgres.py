"""PostgreSQL storage: Optuna's tables and archbench's in one database, passwords kept out of logs.

Runs against a real server when ARCHBENCH_TEST_POSTGRES_URL is set (`.ci/run` starts one on
loopback via `.ci/postgres.sh`); skips otherwise. The store's own test module also runs every
store test on PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from archbench.store import ResultsStore
from archbench.store.storage import create_engine, optuna_storage, redact, resolve_storage

PG_URL = os.environ.get("ARCHBENCH_TEST_POSTGRES_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.skipif(not PG_URL, reason="set ARCHBENCH_TEST_POSTGRES_URL to run"),
]


@pytest.fixture
def url(pg_url: str) -> str:
    """The shared PostgreSQL fixture (tests/conftest.py): a fresh schema per test."""
    return pg_url


def _password(url: str) -> str:
    password = sa.make_url(url).password
    assert password, "the test server should require a password"
    return str(password)


def test_optuna_and_store_share_the_database_and_the_cli_lists_the_study(url: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = resolve_storage(url)
    assert storage.kind == "postgresql" and storage.store_url == storage.optuna_url
    study = optuna.create_study(
        study_name="pg-study", storage=optuna_storage(storage, heartbeat_interval=30)
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with ResultsStore(storage) as store:
        spec_hash = "0123456789abcdef"
        with store.engine.begin() as conn:  # a variant row written directly: no torch needed
            conn.execute(
                sa.text(
                    "INSERT INTO archbench_variants (spec_hash, name, spec_json, family, block, "
                    "block_family, depth, width, num_blocks, params, macs, flops, acts, "
                    "created_at) VALUES (:h, 'v', '{}', 'resnet', 'basic', 'resnet', 20, 16, 9, "
                    "1, 2, 4, 3, now())"
                ),
                {"h": spec_hash},
            )
        run_id = store.start_run(experiment="pg", profile=None, spec_hash=spec_hash, seed=0)
        store.finish_run(run_id, status="completed", final={"test_err": 0.25})
        assert store.runs()["test_err"].tolist() == [0.25]
    with create_engine(storage).connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"studies", "trials", "archbench_runs", "archbench_meta"} <= tables
    out = subprocess.run(
        [Path(sys.executable).parent / "optuna", "study-names", "--storage", storage.optuna_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "pg-study" in out


def test_password_never_logged(url: str, caplog: pytest.LogCaptureFixture) -> None:
    password = _password(url)
    caplog.set_level(logging.DEBUG)
    storage = resolve_storage(url)
    optuna_storage(storage)
    store = ResultsStore(storage)
    text = " ".join([caplog.text, repr(store), str(storage), store.url, redact(url)])
    assert "***" in text
    assert password not in text
    store.close()


def test_wrong_password_error_does_not_show_it(url: str) -> None:
    wrong = sa.make_url(url).set(password="not-the-password-4711")
    with pytest.raises(sa.exc.OperationalError) as info:
        ResultsStore(wrong.render_as_string(hide_password=False))
    assert "not-the-password-4711" not in str(info.value)
    assert "password authentication failed" in str(info.value)
