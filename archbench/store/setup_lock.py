"""One lock per storage for setting a study up: schemas, the study itself, its queue.

Workers started at the same moment on a new store would otherwise race each other through
Optuna's and archbench's ``CREATE TABLE``s ("table studies already exists", a duplicate
``alembic_version`` row) and queue a grid twice. Whoever holds :func:`setup_lock` creates
and queues; the others wait, then find everything in place.

- SQLite and journal storage: an exclusive lock (``filelock``: ``flock`` on POSIX, ``msvcrt``
  on Windows) on a file beside the database (``<file>.lock``); released by the operating
  system if the holder dies.
- PostgreSQL: a session-level advisory lock (released when the connection closes).
- In-memory: nothing to share, no lock.

The lock is re-entrant within a thread, so a helper that takes it may call another.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from archbench.store.storage import ResolvedStorage, StorageError, create_engine, redact

log = logging.getLogger(__name__)

#: Seconds to wait for another process's setup before giving up.
SETUP_LOCK_TIMEOUT_S = 300.0
_PG_KEY = zlib.crc32(b"archbench.setup")  # one advisory lock id for archbench's setup
_held = threading.local()


def lock_path(storage: ResolvedStorage) -> Path | None:
    """The lock file of a SQLite or journal storage (``None`` for other kinds)."""
    if storage.kind not in ("sqlite", "journal"):
        return None
    database = sa.engine.make_url(storage.store_url).database
    if not database:
        return None
    path = Path(database)
    return path.with_name(f"{path.name}.lock")


@contextlib.contextmanager
def setup_lock(storage: ResolvedStorage, timeout_s: float = SETUP_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the storage's setup lock for the ``with`` block (re-entrant in a thread)."""
    if storage.kind == "memory":
        yield
        return
    path = lock_path(storage)
    key = str(path or storage.store_url)
    counts: dict[str, int] = _held.__dict__.setdefault("counts", {})
    if counts.get(key):  # this thread holds it already
        counts[key] += 1
        try:
            yield
        finally:
            counts[key] -= 1
        return
    acquire = _file_lock(path, timeout_s) if path else _pg_lock(storage, timeout_s)
    with acquire:
        counts[key] = 1
        try:
            yield
        finally:
            counts[key] = 0


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive lock on ``path`` through ``filelock`` (``flock`` on POSIX, ``msvcrt`` on
    Windows; released by the operating system if the holder dies)."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=timeout_s, poll_interval=0.05)
    try:
        lock.acquire()
    except Timeout:
        raise StorageError(
            f"another process has held the setup lock {path} for over "
            f"{timeout_s:.0f} s; is a worker stuck? (remove nothing while one runs)"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _pg_lock(storage: ResolvedStorage, timeout_s: float) -> Iterator[None]:
    if storage.kind != "postgresql":
        yield  # another server database: its own transactions must do
        return
    engine = create_engine(storage, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'"))
            try:
                conn.execute(sa.select(sa.func.pg_advisory_lock(_PG_KEY)))
            except sa.exc.OperationalError:
                raise StorageError(
                    f"another process has held the setup lock of {redact(storage.store_url)} "
                    f"for over {timeout_s:.0f} s; is a worker stuck?"
                ) from None
            conn.commit()
            try:
                yield
            finally:
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(_PG_KEY)))
                    conn.commit()
    finally:
        engine.dispose()
