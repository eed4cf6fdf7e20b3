"""Fenced writes: a run is written only by the writer that holds its current lease.

Every claim of a run (``ResultsStore.start_run``: a first start, a retried or rerun trial, a
takeover of a dead owner's run) bumps the run's ``lease`` number and hands the new number to
the store handle that claimed it. Every later write to the run (epochs, diagnostics,
heartbeats, final metrics, status) first runs :func:`check_owner` in its own transaction:

    UPDATE runs SET heartbeat_at = now WHERE run_id = ? AND lease = ? AND status = 'running'

and goes on only if that touched the row. A writer that was paused (``kill -STOP``, a laptop
lid, a long GC) while another trial took its run over and finished it therefore writes
nothing when it wakes: it gets :class:`LeaseLostError` and stops. A finished run is never
changed by a write (only a new claim, ``start_run(rerun_completed=True)``, reopens one).

The check and the write share one transaction: on SQLite (and the journal storage's SQLite
side file) writes begin ``IMMEDIATE``, so no claim can come between them; on PostgreSQL the
``UPDATE`` locks the row until commit, and a claim that committed first makes its ``WHERE``
match nothing (read committed re-evaluates it on the new row version).
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import sqlalchemy as sa

from archbench.store.schema import runs
from archbench.store.values import StoreError


class LeaseLostError(StoreError):
    """A write to a run this writer no longer owns: another trial claimed it, or it is
    finished. Nothing was written; the writer should stop training that run."""

    def __init__(self, run_id: int, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


#: The lease of a run handed back finished: claims number leases from 1, so it matches none.
NOT_HELD = 0


class Leases:
    """The lease numbers one store handle holds, by run id (thread-safe)."""

    def __init__(self) -> None:
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()

    def hold(self, run_id: int, lease: int | None) -> None:
        """Record the lease a claim returned; ``None`` (a finished run handed back
        untouched) holds :data:`NOT_HELD`, which no write to the run matches: this handle
        must not write into a rerun another writer claims later."""
        with self._lock:
            self._held[run_id] = NOT_HELD if lease is None else lease

    def get(self, run_id: int) -> int | None:
        with self._lock:
            return self._held.get(run_id)


def check_owner(conn: sa.Connection, run_id: int, lease: int | None) -> None:
    """In a write transaction: make sure the writer still owns ``run_id``, and touch its
    heartbeat; raises :class:`LeaseLostError` (or :class:`StoreError` for an unknown run).

    ``lease`` is the number the writer's claim returned; ``None`` (a handle that never
    claimed the run) only requires the run to be 'running'.
    """
    where = [runs.c.run_id == run_id, runs.c.status == "running"]
    if lease is not None:
        where.append(runs.c.lease == lease)
    now = datetime.now(timezone.utc)
    if conn.execute(runs.update().where(*where).values(heartbeat_at=now)).rowcount:
        return
    row = conn.execute(
        sa.select(runs.c.status, runs.c.lease, runs.c.study_name, runs.c.trial_number).where(
            runs.c.run_id == run_id
        )
    ).first()
    if row is None:
        raise StoreError(f"unknown run_id {run_id}; start_run first")
    if row.status != "running":
        why = f"it is {row.status} (a finished run is never changed)"
    else:
        owner = (
            "another start_run"
            if row.trial_number is None
            else f"trial {row.trial_number} of study {row.study_name!r}"
        )
        why = f"{owner} claimed it (lease {row.lease}; this writer held lease {lease})"
    raise LeaseLostError(run_id, f"run {run_id} is no longer this writer's: {why}; nothing written")
