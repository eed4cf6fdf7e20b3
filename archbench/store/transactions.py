"""One transaction, retried: lock contention (a few quick tries) and, through the store's
:class:`~.reconnect.Reconnect`, a database that went away (backoff up to its grace period).

Transient lock errors are SQLite's "database is locked" and PostgreSQL's serialisation
failures, deadlocks and lock timeouts; ``race=True`` also retries an IntegrityError (two
writers inserting one key at once: the retry finds the other's row).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")

WRITE_ATTEMPTS = 8
_RETRY_PGCODES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock timeout


def is_race(exc: DBAPIError) -> bool:
    """Another writer created the same row or table first; a retry will find it."""
    if isinstance(exc, IntegrityError):
        return True
    # PostgreSQL: duplicate table/object when two processes create the schema at once.
    return getattr(exc.orig, "pgcode", None) in ("42P07", "42710")


def is_transient(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "pgcode", None) in _RETRY_PGCODES:
        return True
    if isinstance(exc, OperationalError):
        message = str(exc.orig).lower()
        return "locked" in message or "busy" in message
    return False


def _backoff(attempt: int) -> float:
    return min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())


def write_once(writer: Engine, fn: Callable[[sa.Connection], T], *, race: bool = False) -> T:
    """``fn`` in one write transaction on ``writer``, retrying transient lock errors."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with writer.begin() as conn:
                return fn(conn)
        except DBAPIError as exc:
            retry = is_transient(exc) or (race and is_race(exc))
            if not retry or attempt == WRITE_ATTEMPTS - 1:
                raise
            log.debug("store write retry %d after %s", attempt + 1, exc.__class__.__name__)
            time.sleep(_backoff(attempt))
    raise AssertionError("unreachable")


def read_once(engine: Engine, fn: Callable[[sa.Connection], T]) -> T:
    """``fn`` on one connection of ``engine``, retrying transient lock errors."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with engine.connect() as conn:
                return fn(conn)
        except DBAPIError as exc:
            if not is_transient(exc) or attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(_backoff(attempt))
    raise AssertionError("unreachable")
