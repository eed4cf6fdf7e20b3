"""A database password never leaves the command line: not in `archbench validate`'s output,
not in the study's stored ``spec`` attribute, not in `archbench report`'s HTML. Secrets can
come from the environment (``${NAME}`` in the URL, expanded only to connect; or libpq's
``PGPASSWORD``). The PostgreSQL tests run when ARCHBENCH_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
import yaml

from archbench.cli import main
from archbench.store import ResultsStore
from archbench.store.storage import (
    StorageError,
    create_engine,
    expand_env,
    optuna_storage,
    redact,
    resolve_storage,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SECRET = "s3cret-4711"
LEAKY = f"postgresql://bob:{SECRET}@127.0.0.1:9/results"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def write_spec(path: Path, storage: str) -> Path:
    data = {
        "name": "pw",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 1, "batch_size": 64, "lr": 0.1},
        "variants": [{"family": "resnet", "depth": 8, "width": 4}],
        "seeds": [0],
        "storage": storage,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def stored_spec(storage: str) -> str:
    study = optuna.load_study(study_name="pw:default", storage=optuna_storage(storage))
    system = study._storage.get_study_system_attrs(study._study_id)
    assert "spec" not in study.user_attrs  # (where archbench kept it before)
    return str(system["archbench:spec"])


# -- redaction and expansion ----------------------------------------------------------------


def test_redact_keeps_environment_references() -> None:
    assert redact("postgresql://bob:${DB_PW}@host/db") == "postgresql://bob:${DB_PW}@host/db"
    assert redact("postgresql://bob:x${DB_PW}@host/db") == "postgresql://bob:***@host/db"
    text = f"name: x\nstorage: {LEAKY}?password={SECRET}\n"
    assert SECRET not in redact(text) and "bob:***@" in redact(text)


def test_expand_env_only_to_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHBENCH_T_PW", "p@ss/w:rd%")
    monkeypatch.setenv("ARCHBENCH_T_DB", "bench")
    url = "postgresql://bob:${ARCHBENCH_T_PW}@db.example:5432/${ARCHBENCH_T_DB}"
    resolved = resolve_storage(url)
    # What archbench keeps (and could show or store) still holds the reference only.
    for kept in (resolved.store_url, resolved.optuna_url, str(resolved)):
        assert "p@ss" not in str(kept) and "p%40ss" not in str(kept)
    expanded = sa.make_url(expand_env(resolved.store_url))
    assert expanded.password == "p@ss/w:rd%" and expanded.database == "bench"
    assert expanded.username == "bob" and expanded.host == "db.example"
    assert expand_env("results/x.db") == "results/x.db"
    monkeypatch.delenv("ARCHBENCH_T_PW")
    with pytest.raises(StorageError, match=r"refers to \$\{ARCHBENCH_T_PW\}, which is not set"):
        create_engine(url)


# -- the three places a password showed (no server needed) ----------------------------------


def test_validate_shows_no_password(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "pw.yaml", LEAKY)
    code, out, err = run_cli("validate", str(spec))
    assert code == 0, err
    assert "storage postgresql://bob:***@127.0.0.1:9/results" in out
    assert SECRET not in out + err


def test_stored_spec_and_report_hold_no_password(tmp_path: Path) -> None:
    """The spec names a PostgreSQL URL with a password; the run goes to a local file
    (``--storage``), whose study keeps the spec text, which the report embeds."""
    db = tmp_path / "local.db"
    spec = write_spec(tmp_path / "pw.yaml", LEAKY)
    code, out, err = run_cli("run", str(spec), "--storage", str(db), "--quiet", "--threads", "1")
    assert code == 0, out + err
    text = stored_spec(str(db))
    assert SECRET not in text and "postgresql://bob:***@127.0.0.1:9/results" in text
    assert SECRET not in out + err

    html = tmp_path / "r.html"
    code, out, err = run_cli("report", "pw", "--storage", str(db), "--out", str(html))
    assert code == 0, err
    page = html.read_text()
    assert "postgresql://bob:***@127.0.0.1:9/results" in page
    assert SECRET not in page + out + err

    # A study stored by an archbench before the fix holds the password: reports redact it.
    study = optuna.load_study(study_name="pw:default", storage=f"sqlite:///{db}")
    leaky = text.replace("bob:***@", f"bob:{SECRET}@")
    study._storage.set_study_system_attr(study._study_id, "archbench:spec", leaky)
    code, _, err = run_cli("report", "pw", "--storage", str(db), "--out", str(html))
    assert code == 0, err
    assert SECRET not in html.read_text()


# -- PostgreSQL: a password in the spec, ${NAME} and PGPASSWORD ------------------------------


def _with_password(url: str, password: str | None) -> str:
    parsed = sa.make_url(url)
    if password is None:
        # SQLAlchemy's URL.set cannot drop a password; render without, then re-parse.
        text = parsed.render_as_string(hide_password=False)
        return text.replace(f":{parsed.password}@", "@", 1)
    return (
        parsed.set(password=password)
        .render_as_string(hide_password=False)
        .replace("%24%7B", "${")
        .replace("%7D", "}")
    )


@pytest.mark.postgres
def test_postgresql_run_keeps_the_password_out_of_the_study_and_the_report(
    tmp_path: Path, pg_url: str
) -> None:
    secret = str(sa.make_url(pg_url).password)
    spec = write_spec(tmp_path / "pw.yaml", pg_url)
    code, out, err = run_cli("validate", str(spec))
    assert code == 0 and secret not in out + err
    code, out, err = run_cli("run", str(spec), "--quiet", "--threads", "1")
    assert code == 0, out + err
    assert secret not in out + err
    assert secret not in stored_spec(pg_url) and ":***@" in stored_spec(pg_url)
    html = tmp_path / "r.html"
    code, out, err = run_cli("report", str(spec), "--out", str(html))
    assert code == 0, err
    assert secret not in html.read_text() + out + err


@pytest.mark.postgres
def test_postgresql_password_from_an_environment_reference(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = str(sa.make_url(pg_url).password)
    monkeypatch.setenv("ARCHBENCH_T_PGPW", secret)
    url = _with_password(pg_url, "${ARCHBENCH_T_PGPW}")
    assert secret not in url
    with ResultsStore(url) as store:
        assert store.runs().empty
        assert secret not in store.url
    spec = write_spec(tmp_path / "pw.yaml", url)
    code, out, err = run_cli("validate", str(spec))
    assert code == 0 and "${ARCHBENCH_T_PGPW}" in out and secret not in out
    storage = optuna_storage(url)
    optuna.create_study(study_name="env-ref", storage=storage)
    assert "env-ref" in optuna.get_all_study_names(storage)
    monkeypatch.delenv("ARCHBENCH_T_PGPW")
    code, out, err = run_cli("results", "pw", "--storage", url)
    assert code == 2 and "ARCHBENCH_T_PGPW" in err and secret not in err


@pytest.mark.postgres
def test_postgresql_password_from_pgpassword(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = str(sa.make_url(pg_url).password)
    url = _with_password(pg_url, None)
    assert secret not in url
    monkeypatch.setenv("PGPASSWORD", secret)
    with ResultsStore(url) as store:
        assert store.runs().empty
    storage: Any = optuna_storage(url)
    assert optuna.get_all_study_names(storage) == []
    monkeypatch.setenv("PGPASSWORD", "wrong-password")
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        ResultsStore(url)
