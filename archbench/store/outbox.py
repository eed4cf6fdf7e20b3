"""Epoch and diagnostics rows recorded while the database was away, written once it is back.

A worker keeps training through a database outage: ``record_epoch`` and
``record_diagnostics`` put their rows here, and every later write (and ``finish_run``,
which waits for them) writes what is held, oldest first, each batch in its own fenced
transaction, before its own. A batch leaves the outbox only once committed, and its rows are
upserts by primary key, so a batch written twice (a commit whose answer was lost) is still
recorded once.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from archbench.store.lease import LeaseLostError
from archbench.store.reconnect import Reconnect, is_disconnect

log = logging.getLogger(__name__)

Batch = tuple[int, sa.Table, list[dict[str, Any]]]  # (run_id, table, rows)


class Outbox:
    """The batches one store handle holds (thread-safe, in recording order)."""

    def __init__(self) -> None:
        self._items: deque[Batch] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, run_id: int, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._items.append((run_id, table, rows))

    def discard_run(self, run_id: int) -> int:
        """Drop the batches held for ``run_id`` (recorded under a claim that is over);
        returns how many."""
        with self._lock:
            before = len(self._items)
            self._items = deque(item for item in self._items if item[0] != run_id)
            return before - len(self._items)

    def drain(self, write: Callable[[Batch], None]) -> None:
        """Write every held batch, oldest first; raises the first error (a lost connection
        included), keeping what is not written yet. A run whose lease was lost (or a batch
        refused for any reason other than the connection) has its batches dropped."""
        while True:
            with self._lock:
                if not self._items:
                    return
                batch = self._items[0]
            try:
                write(batch)
            except Exception as exc:
                if not is_disconnect(exc):
                    self._drop(batch, everything_of_run=isinstance(exc, LeaseLostError))
                raise
            with self._lock:
                if self._items and self._items[0] is batch:
                    self._items.popleft()

    def flush(self, write: Callable[[Batch], None], reconnect: Reconnect) -> bool:
        """:meth:`drain` once, without waiting: ``False`` (rows held) when the database is
        unreachable, within ``reconnect``'s grace period (past it, raises)."""
        try:
            self.drain(write)
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            reconnect.failed(exc, f"holding {len(self)} batch(es) of epoch rows")
            log.info("database unreachable: %d batch(es) of rows held", len(self))
            return False
        if reconnect.down:
            reconnect.ok()
        return True

    def _drop(self, batch: Batch, *, everything_of_run: bool) -> None:
        with self._lock:
            if everything_of_run:
                run_id = batch[0]
                self._items = deque(item for item in self._items if item[0] != run_id)
            elif self._items and self._items[0] is batch:
                self._items.popleft()
