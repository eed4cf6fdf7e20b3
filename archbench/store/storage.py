"""Storage locations: one ``--storage`` value -> the results-store URL and the Optuna storage.

Accepted values (see :func:`resolve_storage`):

- a file path (``results/quick.db``) or ``sqlite:///path``: one SQLite file holds Optuna's
  tables and archbench's. The embedded default, for one machine.
- ``journal:path.log``: Optuna's journal file storage, for several worker processes on one
  machine; archbench's tables go into a SQLite file beside it (``path.archbench.db``).
- ``postgresql://user@host:port/db``: one PostgreSQL database for both, for several
  machines. Keep the password out of the spec: libpq reads ``PGPASSWORD`` (or
  ``~/.pgpass``) when the URL has none, and ``${NAME}`` in the URL (``postgresql://
  bob:${DB_PASSWORD}@host/db``) is replaced from the environment only when connecting
  (:func:`expand_env`), so the expanded URL is never stored or shown.
- ``:memory:``: nothing persisted (dry runs and tests).

SQLite connections made by :func:`create_engine` use WAL mode (a reader such as
optuna-dashboard does not block the runner), a busy timeout, and ``BEGIN IMMEDIATE`` for
write transactions, so concurrent writers wait for each other instead of failing with
"database is locked". Passwords never reach a log message: use :func:`redact`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from archbench.errors import ArchbenchError

log = logging.getLogger(__name__)

StorageKind = Literal["sqlite", "journal", "postgresql", "memory", "other"]

#: Seconds a SQLite connection waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 60.0
#: Execution option that marks a connection's transaction as a writer (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "archbench_write"
#: Seconds a PostgreSQL connection attempt may take before it counts as failed.
CONNECT_TIMEOUT_S = 10
JOURNAL_PREFIX = "journal:"
MEMORY = ":memory:"

_PASSWORD_QUERY = re.compile(r"(?i)\b(password|passwd|pwd)=([^&\s]*)")
_USERINFO = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class StorageError(ArchbenchError, ValueError):
    """A storage value that cannot be resolved or opened."""


def _mask(match: re.Match[str]) -> str:
    # A bare ${NAME} reference holds no secret: keep it, it says where the password comes from.
    whole, start, end = (
        match.group(0),
        match.start(2) - match.start(0),
        match.end(2) - match.start(0),
    )
    if _ENV_REF.fullmatch(match.group(2)):
        return whole
    return whole[:start] + "***" + whole[end:]


def redact(url: str | URL | Path | None) -> str:
    """``url`` (or any text holding URLs, such as a spec) with every password replaced by
    ``***``; safe to log, show or store. ``${NAME}`` references are kept."""
    if url is None:
        return ""
    text = url.render_as_string(hide_password=True) if isinstance(url, URL) else str(url)
    text = _USERINFO.sub(_mask, text)
    return _PASSWORD_QUERY.sub(_mask, text)


def expand_env(url: str) -> str:
    """``url`` with each ``${NAME}`` in its user, password, host, database and query values
    replaced by the environment variable ``NAME``; call it only to connect, never to store.

    Raises :class:`StorageError` naming a variable that is not set.
    """
    if "${" not in url and "%24%7B" not in url:
        return url
    parsed = make_url(url)

    def sub(value: str | None) -> str | None:
        if value is None:
            return None

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise StorageError(
                    f"storage URL {redact(url)!r} refers to ${{{name}}}, which is not set in "
                    "the environment; export it (or drop the reference and use PGPASSWORD)"
                )
            return os.environ[name]

        return _ENV_REF.sub(lookup, value)

    query = {
        k: tuple(sub(x) for x in v) if isinstance(v, tuple) else sub(v)
        for k, v in parsed.query.items()
    }
    parsed = parsed.set(
        username=sub(parsed.username),
        password=sub(parsed.password),  # type: ignore[arg-type]
        host=sub(parsed.host),
        database=sub(parsed.database),
        query=query,
    )
    return parsed.render_as_string(hide_password=False)


@dataclass(frozen=True)
class ResolvedStorage:
    """Where one ``--storage`` value puts archbench's tables and Optuna's study."""

    kind: StorageKind
    store_url: str  # SQLAlchemy URL of archbench's tables (may contain a password)
    optuna_url: str | None  # RDB URL for Optuna, or None for journal/in-memory
    journal_path: Path | None = None

    def __str__(self) -> str:
        where = self.journal_path if self.kind == "journal" else self.optuna_url
        return f"{self.kind} storage {redact(where or self.store_url)}"

    @property
    def redacted_store_url(self) -> str:
        return redact(self.store_url)


def _sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def resolve_storage(value: str | Path, *, store_url: str | None = None) -> ResolvedStorage:
    """Resolve a ``--storage`` value; ``store_url`` overrides where archbench's tables go.

    Relative SQLite and journal paths become absolute, so worker processes started from
    elsewhere open the same files.
    """
    text = str(value).strip()
    if not text:
        raise StorageError(
            "empty storage value; give a file path, sqlite:///path, journal:path.log, "
            "postgresql://user@host/db or :memory:"
        )
    if text == MEMORY:
        resolved = ResolvedStorage("memory", "sqlite://", None)
    elif text.startswith(JOURNAL_PREFIX):
        path_text = text[len(JOURNAL_PREFIX) :].strip()
        if not path_text or "://" in path_text:
            raise StorageError(
                f"journal storage needs a file path (journal:path.log), got {text!r}"
            )
        path = Path(path_text).expanduser().resolve()
        if path.is_dir():
            raise StorageError(f"journal storage {text!r} is a directory; name a file")
        beside = path.with_name(f"{path.stem}.archbench.db")
        resolved = ResolvedStorage("journal", _sqlite_url(beside), None, path)
    elif "://" in text:
        resolved = _resolve_url(text)
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            raise StorageError(f"storage {text!r} is a directory; name a database file")
        url = _sqlite_url(path)
        resolved = ResolvedStorage("sqlite", url, url)
    if store_url is not None:
        override = resolve_storage(store_url)
        resolved = ResolvedStorage(
            resolved.kind, override.store_url, resolved.optuna_url, resolved.journal_path
        )
    return resolved


def _resolve_url(text: str) -> ResolvedStorage:
    if text.startswith("postgres://"):  # the libpq spelling; SQLAlchemy wants postgresql
        text = "postgresql://" + text[len("postgres://") :]
    try:
        url = make_url(text)
    except ArgumentError:
        raise StorageError(f"cannot parse storage URL {redact(text)!r}") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if database in ("", MEMORY):
            return ResolvedStorage("memory", "sqlite://", None)
        if url.query.get("mode") == "memory" or database.startswith("file:"):
            raise StorageError(f"unsupported SQLite URL {text!r}; use sqlite:///path/to/file.db")
        full = _sqlite_url(database)
        return ResolvedStorage("sqlite", full, full)
    kind: StorageKind = "postgresql" if backend == "postgresql" else "other"
    if kind == "postgresql" and "+" not in url.drivername:
        # SQLAlchemy 2.1 defaults to psycopg 3; archbench[postgres] installs psycopg2. Name
        # the installed driver so that our engine and Optuna's agree.
        url = url.set(drivername=f"postgresql+{_postgres_driver()}")
    rendered = url.render_as_string(hide_password=False)
    return ResolvedStorage(kind, rendered, rendered)


def _postgres_driver() -> str:
    import importlib.util

    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return driver
    return "psycopg2"  # not installed: create_engine then says which package to install


def _on_sqlite_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own implicit BEGIN is
    # deferred, and a deferred reader that later writes fails at once under WAL).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if cur.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
            mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("SQLite refused WAL mode (got %s); readers may block writers", mode)
            cur.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL
    finally:
        cur.close()


def _on_read_only_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # as above, minus WAL: nothing can be written here
    dbapi_conn.execute("PRAGMA query_only = ON")


def _on_sqlite_begin(conn: sa.Connection) -> None:
    # Writers take the write lock up front, so the busy timeout applies; readers stay deferred.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def sqlite_table_names(path: str | Path) -> set[str] | None:
    """The tables of the SQLite file at ``path``, read through a read-only connection, or
    ``None`` if it cannot be read as one (not a database: opening it says why).

    Unlike an engine from :func:`create_engine` (which switches the file to WAL mode), this
    never changes the file: readers use it to look before they open a store.
    """
    uri = f"{Path(path).expanduser().resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:  # "file is not a database", unreadable file
        log.debug("cannot read %s as SQLite: %s", path, exc)
        return None
    return {str(name) for (name,) in rows}


def read_only_sqlite(database: str | Path) -> bool:
    """Whether an existing SQLite file lies where nothing can be written: a read-only mount,
    or a folder without write permission (readers then open it immutable; writers are
    refused earlier, by preflight)."""
    path = Path(database)
    if not path.is_file():
        return False
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(path.parent, os.W_OK)


def read_only_mode(database: str) -> str:
    """URI parameters for reading a SQLite file read-only: with its write-ahead log where one
    is there to read (SQLite needs its ``-shm`` index for that), else as an immutable file."""
    wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
    if wal.is_file() and wal.stat().st_size > 0:
        if shm.is_file():
            return "mode=ro&uri=true"
        log.warning(
            "%s has a write-ahead log but no -shm index beside it on a read-only file system; "
            "the log's latest writes cannot be read",
            database,
        )
    return "mode=ro&immutable=1&uri=true"


def tune_sqlite_engine(engine: Engine) -> Engine:
    """Install archbench's SQLite connection settings on ``engine`` (before it connects)."""
    if engine.dialect.name == "sqlite" and not getattr(engine, "_archbench_tuned", False):
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        engine._archbench_tuned = True  # type: ignore[attr-defined]
    return engine


def create_engine(url: str | Path | ResolvedStorage, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for archbench's tables at a ``--storage`` value or resolved storage."""
    url = url.store_url if isinstance(url, ResolvedStorage) else resolve_storage(url).store_url
    parsed = make_url(expand_env(url))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", MEMORY):
            # One shared in-memory database for every connection of this engine.
            kwargs.setdefault("poolclass", StaticPool)
            kwargs.setdefault("connect_args", {"check_same_thread": False})
        elif read_only_sqlite(parsed.database):
            # A store on a read-only file system (or in a folder this user cannot write):
            # SQLite cannot make the WAL index there, so read it as an immutable file.
            log.info("%s is on a read-only file system; opening it read-only", parsed.database)
            ro = make_url(f"sqlite:///file:{parsed.database}?{read_only_mode(parsed.database)}")
            engine = sa.create_engine(ro, **kwargs)
            event.listen(engine, "connect", _on_read_only_connect)
            event.listen(engine, "begin", _on_sqlite_begin)
            engine._archbench_tuned = True  # type: ignore[attr-defined]
            return engine
        else:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, **kwargs)
        return tune_sqlite_engine(engine)
    kwargs.setdefault("pool_pre_ping", True)  # survive a restarted server between trials
    if parsed.get_backend_name() == "postgresql" and (parsed.drivername or "").endswith("psycopg2"):
        # A server that does not answer (network cut) fails a connect in seconds, so the
        # reconnect policy (reconnect.py) can count the outage instead of hanging.
        kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        return sa.create_engine(parsed, **kwargs)
    except ImportError as exc:
        raise _no_driver(url, exc) from None


def _no_driver(url: str, exc: ImportError) -> StorageError:
    return StorageError(
        f"no database driver for {redact(url)} ({exc}); install it (for PostgreSQL: "
        "archbench[postgres], psycopg2-binary)"
    )


def check_driver(url: str) -> None:
    """Raise :class:`StorageError` (the line :func:`create_engine` would give) when the
    database driver of ``url`` is not installed; connects to nothing."""
    try:
        make_url(url).get_dialect().import_dbapi()
    except ImportError as exc:
        raise _no_driver(url, exc) from None


def optuna_storage(
    storage: str | Path | ResolvedStorage,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    heartbeat_stale_trial_callback: Any = None,
    reconnect: Any = None,
) -> Any:
    """The Optuna storage object for ``storage`` (RDB, journal file, or in-memory).

    Heartbeats are an RDB feature in Optuna; asking for one on a journal or in-memory storage
    raises rather than silently losing stale-trial detection. ``reconnect`` (a
    :class:`~archbench.store.reconnect.Reconnect`) makes a database server's storage retry
    its calls through an outage (:mod:`archbench.store.optuna_retry`).
    """
    import optuna  # deferred: importing optuna costs ~1 s and the store does not need it

    resolved = storage if isinstance(storage, ResolvedStorage) else resolve_storage(storage)
    wants_heartbeat = heartbeat_interval is not None or heartbeat_stale_trial_callback is not None
    if resolved.kind in ("journal", "memory"):
        if wants_heartbeat:
            raise StorageError(
                f"{resolved.kind} storage has no Optuna heartbeats; use sqlite or postgresql "
                "storage, or detect dead workers with ResultsStore.stale_runs()"
            )
        if resolved.kind == "memory":
            return optuna.storages.InMemoryStorage()
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        from archbench.store.journal_check import check_journal

        assert resolved.journal_path is not None
        resolved.journal_path.parent.mkdir(parents=True, exist_ok=True)
        check_journal(resolved.journal_path)  # a torn last line healed, damage refused
        return JournalStorage(JournalFileBackend(str(resolved.journal_path)))
    assert resolved.optuna_url is not None
    engine_kwargs: dict[str, Any] = {}
    if resolved.kind == "sqlite":
        # WAL is a property of the file: switch it on through a tuned connection first, so
        # Optuna's own connections (and optuna-dashboard's) also get it.
        engine = create_engine(resolved.optuna_url)
        with engine.connect():
            pass
        engine.dispose()
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True
        if resolved.optuna_url.startswith("postgresql+psycopg2"):
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    log.debug("opening Optuna storage %s", redact(resolved.optuna_url))
    make: Any = optuna.storages.RDBStorage
    if reconnect is not None and resolved.kind != "sqlite":
        from archbench.store.optuna_retry import reconnecting_rdb_storage

        make = functools.partial(reconnecting_rdb_storage, reconnect=reconnect)
    try:
        return make(
            expand_env(resolved.optuna_url),
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=heartbeat_stale_trial_callback,
        )
    except ImportError as exc:
        raise _no_driver(resolved.optuna_url, exc) from None
