"""Riding out a database restart or outage: bounded retries with exponential backoff.

One :class:`Reconnect` per worker process is shared by its results store and its Optuna
storage. The first call that finds the server gone (a restart, a stopped server, a network cut:
see :func:`is_disconnect`) starts the outage clock; calls are retried with exponential
backoff (0.5 s doubling to 15 s, jittered) until the database answers again (the clock
stops) or the outage has lasted ``grace_s`` seconds: then :class:`DatabaseUnavailableError`,
and every later call fails at once, so a worker winds down in seconds (the CLI: one line,
exit code 3). Other errors (a bad query, a constraint) are never retried here.

A process that never reached the database (a wrong URL or password, a server not started)
is not in an outage: its first error is raised at once, as bad input.

A write whose commit reached the server but whose answer was lost is retried too; the
store's writes are idempotent (upserts by primary key, a fenced final write checked against
what it wrote), so nothing is recorded twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from archbench.store.values import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Default seconds a worker waits for its database to come back before giving up.
DEFAULT_GRACE_S = 180.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 15.0

# PostgreSQL SQLSTATEs of a server going away or not there yet: admin shutdown, crash
# shutdown, cannot connect now (starting up / shutting down), connection exceptions.
_PG_CODES = {"57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"}
_MESSAGES = (
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "could not connect to server",
    "connection refused",
    "connection to server at",
    "connection already closed",
    "no connection to the server",
    "ssl connection has been closed unexpectedly",
    "could not receive data from server",
    "could not send data to server",
    "connection timed out",
)


class DatabaseUnavailableError(StoreError):
    """The database stayed unreachable past the outage grace period."""


def is_disconnect(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from, e.g. inside Optuna's
    ``StorageInternalError``) says the database connection was lost or refused."""
    from sqlalchemy.exc import DBAPIError

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DBAPIError):
            if exc.connection_invalidated:
                return True
            exc = exc.orig
            continue
        if getattr(exc, "pgcode", None) in _PG_CODES:
            return True
        name = type(exc).__name__
        if name in ("OperationalError", "InterfaceError"):
            message = str(exc).lower()
            if any(text in message for text in _MESSAGES):
                return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class Reconnect:
    """The outage clock and retry policy of one process (thread-safe)."""

    def __init__(
        self,
        grace_s: float = DEFAULT_GRACE_S,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(grace_s, bool) or not isinstance(grace_s, (int, float)) or grace_s < 0:
            raise StoreError(f"database outage grace must be seconds >= 0, got {grace_s!r}")
        self.grace_s = float(grace_s)
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._connected = False  # reached the database at least once
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        """The database is unreachable now (an outage is under way)."""
        return self._down_since is not None

    def ok(self) -> None:
        """A call reached the database: the outage (if any) is over."""
        with self._lock:
            if self._down_since is not None:
                log.warning(
                    "database reachable again after %.0f s", self._clock() - self._down_since
                )
            self._connected = True
            self._down_since = None

    def failed(self, exc: BaseException, what: str) -> float:
        """Count a lost connection; returns the seconds left in the grace period, or raises
        :class:`DatabaseUnavailableError` (also for a process that never connected)."""
        with self._lock:
            now = self._clock()
            if not self._connected:
                raise exc
            if self._down_since is None:
                self._down_since = now
                log.warning(
                    "database unreachable (%s); retrying for up to %.0f s",
                    _first_line(exc),
                    self.grace_s,
                )
            down = now - self._down_since
        if down >= self.grace_s:
            raise DatabaseUnavailableError(
                f"the database was unreachable for {down:.0f} s, past the grace period of "
                f"{self.grace_s:.0f} s ({what}: {_first_line(exc)}); what was recorded is "
                "kept: rerun the same command once it is back"
            ) from None
        return self.grace_s - down

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, retried with backoff while the database is unreachable."""
        attempt = 0
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_disconnect(exc):
                    raise
                left = self.failed(exc, what)
                delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2**attempt) * (0.5 + random.random())
                self._sleep(min(delay, max(left, 0.01)))
                attempt += 1
                continue
            self.ok()
            return result


def _first_line(exc: BaseException) -> str:
    from archbench.store.storage import redact

    text = str(getattr(exc, "orig", None) or exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:200]


def unavailable(exc: BaseException | None) -> DatabaseUnavailableError | None:
    """The :class:`DatabaseUnavailableError` behind ``exc``, if any: Optuna may raise
    another error while handling one (its trial bookkeeping fails too)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DatabaseUnavailableError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
