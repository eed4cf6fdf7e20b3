"""Run writes of :class:`~archbench.store.store.ResultsStore`: claim (open, reopen, take
over) runs and close them, rekey them, and write their epochs and diagnostics, every write to
a run fenced by its lease (:mod:`.lease`), epoch rows held through an outage (:mod:`.outbox`).

A mixin of ``ResultsStore``, which provides ``_write``/``_read`` (one transaction, retried),
``_write_batch`` (one held batch), ``run``, ``reconnect``, ``_leases`` and ``_outbox``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from archbench.store import rows
from archbench.store.lease import LeaseLostError, Leases, check_owner
from archbench.store.outbox import Batch, Outbox
from archbench.store.reconnect import Reconnect
from archbench.store.schema import FINAL_METRICS, diagnostics, epochs, runs, variants
from archbench.store.upsert import upsert
from archbench.store.values import RunBusyError, StoreError, to_int, to_name

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class RunWrites:
    """Writes to runs, their epochs and diagnostics (fenced by the run's lease)."""

    _leases: Leases
    _outbox: Outbox
    reconnect: Reconnect
    _write: Callable[..., Any]
    _read: Callable[..., Any]
    _write_batch: Callable[[Batch], None]
    run: Callable[[int], dict[str, Any] | None]

    # -- runs -------------------------------------------------------------------------------
    def start_run(
        self,
        *,
        experiment: str,
        profile: str | None,
        spec_hash: str,
        seed: int,
        study_name: str | None = None,
        trial_number: int | None = None,
        config_key: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        recipe: Mapping[str, Any] | None = None,
        device: str | None = None,
        env: Mapping[str, Any] | None = None,
        budget: Mapping[str, Any] | None = None,
        rerun_completed: bool = False,
        exclusive: bool = False,
        replacing: tuple[str | None, int | None] | None = None,
    ) -> int:
        """Open (or reopen) the run of one configuration and seed; return its ``run_id``.

        The key is (experiment, profile, config_key, seed): a retried or rerun trial gets the
        same run back, set to 'running' again (attempts + 1), with its recorded epochs kept.
        A run already 'completed' is returned untouched, so a rerun can skip it (check
        ``run(run_id)["status"]``), unless ``rerun_completed``. ``config_key`` defaults to the
        variant hash plus a hash of ``recipe`` and ``hyperparameters``.

        ``budget`` is ``{"metric": "params"|"macs", "target": n}`` (``tolerance`` and a
        caller's ``error`` allowed) when the variant was solved to one: the run stores the
        metric, the target and the signed error of the variant's stored count.

        ``exclusive=True`` refuses a run that is 'running' under another (study, trial): it
        raises :class:`RunBusyError` (nothing written), so two workers that drew the same
        configuration never train one run at once; it also returns a 'diverged' run untouched.
        ``replacing`` names the owner the caller found dead: the run is taken over only if it
        still belongs to that trial.

        Every claim (a new run, a reopened one, a takeover) bumps the run's lease; this handle
        holds the new number and its later writes to the run are fenced by it
        (:mod:`.lease`): once another claim has bumped it, they raise
        :class:`~.lease.LeaseLostError` and write nothing.
        """
        spec_hash = to_name(spec_hash, "spec_hash")
        key, fields = rows.run_key_fields(
            spec_hash,
            experiment=experiment,
            profile=profile,
            seed=seed,
            config_key=config_key,
            study_name=study_name,
            trial_number=trial_number,
            hyperparameters=hyperparameters,
            recipe=recipe,
            device=device,
            env=env,
        )
        budget_of = rows.parse_budget(budget)

        owner = (fields["study_name"], fields["trial_number"])
        # Who may reopen a 'running' row: anyone, or (exclusive) its own trial / the dead owner.
        allowed = None if not exclusive else {owner} | ({tuple(replacing)} if replacing else set())

        def write(conn: sa.Connection) -> tuple[int, int | None]:
            return self._open_run(conn, spec_hash, key, fields, budget_of, rerun_completed, allowed)

        run_id, lease = self._write(write, race=True)
        self._leases.hold(run_id, lease)
        # Rows an outage held for an earlier claim of this run belong to that attempt (its
        # lease is over): never written as the new claim's.
        dropped = self._outbox.discard_run(run_id)
        if dropped:
            log.warning(
                "run %d claimed again: %d held batch(es) of its last attempt dropped",
                run_id,
                dropped,
            )
        log.debug("run %d started (lease %s): %s", run_id, lease, key)
        return run_id

    @staticmethod
    def _open_run(
        conn: sa.Connection,
        spec_hash: str,
        key: dict[str, Any],
        fields: dict[str, Any],
        budget: tuple[str | None, float | None],
        rerun_completed: bool,
        allowed_owners: set[tuple[str | None, int | None]] | None,
    ) -> tuple[int, int | None]:
        """``start_run``'s transaction: insert the run, or reopen the one with this key;
        (run_id, the new lease), the lease ``None`` for a finished run handed back as it is."""
        known = conn.execute(
            sa.select(variants.c.params, variants.c.macs).where(variants.c.spec_hash == spec_hash)
        ).first()
        if known is None:
            raise StoreError(f"start_run: unknown variant {spec_hash!r}; record_variant first")
        metric, target = budget
        # The error from the count stored beside it (a caller's figure may come from another
        # count, e.g. the analytic one).
        error = None if metric is None else (known._mapping[metric] - target) / target
        fields = {**fields, "budget_metric": metric, "budget_target": target, "budget_error": error}
        where = sa.and_(*(runs.c[k] == v for k, v in key.items()))
        old = conn.execute(
            sa.select(
                runs.c.run_id,
                runs.c.spec_hash,
                runs.c.attempts,
                runs.c.lease,
                runs.c.status,
                runs.c.study_name,
                runs.c.trial_number,
            )
            .where(where)
            # PostgreSQL: two openers of one key serialise here, so the owner check below
            # sees the other's claim (SQLite ignores it: its writes begin IMMEDIATE).
            .with_for_update()
        ).first()
        now = _now()
        if old is None:
            result = conn.execute(
                runs.insert().values(
                    **key,
                    **fields,
                    spec_hash=spec_hash,
                    status="running",
                    attempts=1,
                    lease=1,
                    started_at=now,
                    heartbeat_at=now,
                )
            )
            return int(result.inserted_primary_key[0]), 1
        if old.spec_hash != spec_hash:
            raise StoreError(
                f"run {old.run_id} ({key}) belongs to variant {old.spec_hash}, not "
                f"{spec_hash}: the config_key must identify the variant"
            )
        # A finished result is reused; under ``exclusive`` (the runner) a diverged one too:
        # retraining it from the same seed diverges again.
        reusable = ("completed", "diverged") if allowed_owners is not None else ("completed",)
        if old.status in reusable and not rerun_completed:
            return int(old.run_id), None
        owner = (old.study_name, old.trial_number)
        if old.status == "running" and allowed_owners is not None and owner not in allowed_owners:
            raise RunBusyError(int(old.run_id), *owner)
        cleared = dict.fromkeys(
            (*FINAL_METRICS, "diverged_at", "wall_time_s", "finished_at", "weights_path")
        )
        conn.execute(
            runs.update()
            .where(runs.c.run_id == old.run_id)
            .values(
                **fields,
                **cleared,
                status="running",
                attempts=old.attempts + 1,
                lease=old.lease + 1,
                heartbeat_at=now,
            )
        )
        return int(old.run_id), old.lease + 1

    def rekey_runs(
        self,
        experiment: str,
        profile: str | None,
        key_of: Callable[[Mapping[str, Any]], str],
        *,
        keep: Callable[[str], bool],
    ) -> int:
        """Give the runs of one experiment and profile whose ``config_key`` is not one to
        ``keep`` the key ``key_of(row)`` computes (``row``: the run's columns); returns how
        many moved. A run whose new key (and seed) is taken stays where it is: the store
        never holds two runs of one configuration and seed."""
        profile = rows.DEFAULT_PROFILE if profile is None else profile

        def write(conn: sa.Connection) -> int:
            where = sa.and_(runs.c.experiment == experiment, runs.c.profile == profile)
            found = conn.execute(sa.select(runs).where(where)).mappings().all()
            taken = {(r["config_key"], r["seed"]) for r in found}
            moved = 0
            for row in found:
                if keep(row["config_key"]):
                    continue
                new = (key_of(row), row["seed"])
                if new in taken:
                    continue
                conn.execute(
                    runs.update().where(runs.c.run_id == row["run_id"]).values(config_key=new[0])
                )
                taken.add(new)
                moved += 1
            return moved

        return self._write(write)

    def heartbeat(self, run_id: int) -> None:
        """Mark the run alive now (a worker calls this while training); fenced like every
        write to a run (:mod:`.lease`)."""
        run_id = to_int(run_id, "run_id")
        lease = self._leases.get(run_id)
        self._write(lambda conn: check_owner(conn, run_id, lease))

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        final: Mapping[str, Any] | None = None,
        wall_time_s: float | None = None,
        diverged_at: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Close a run with its status and final metrics.

        ``final`` has ``FINAL_METRICS`` keys, or is the last epoch's metrics (a mapping or
        ``EpochMetrics``): its ``epoch`` becomes ``epochs_done``; the per-epoch columns that are
        not final metrics are in the epochs table already. ``error`` (why a failed run failed)
        goes into the run's ``env`` record as ``env["error"]``. Fenced (:mod:`.lease`): only
        the holder of the run's lease closes it, and only while it is 'running'.
        """
        run_id = to_int(run_id, "run_id")
        lease = self._leases.get(run_id)
        values = rows.final_values(status, final, wall_time_s, diverged_at)
        self._drain()  # its epochs first

        if error is not None:
            error = str(error)[:2000]

        def write(conn: sa.Connection) -> None:
            check_owner(conn, run_id, lease)
            now = _now()
            extra: dict[str, Any] = {}
            if error is not None:
                env = conn.execute(sa.select(runs.c.env).where(runs.c.run_id == run_id)).scalar()
                extra["env"] = {**(env or {}), "error": error}
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(**values, **extra, finished_at=now, heartbeat_at=now)
            )

        try:
            self._write(write)
        except LeaseLostError:
            # Closed under this lease already: a commit whose answer a lost connection
            # swallowed, retried (or a second identical call). Nothing to do.
            run = self.run(run_id) if lease is not None else None
            same = run is not None and run["lease"] == lease
            same = same and all(run[k] == v for k, v in values.items() if k != "diverged_at")
            if not same:
                raise
            log.info("run %d was closed by this writer already (%s)", run_id, status)

    def set_weights_path(self, run_id: int, path: str | Path | None) -> None:
        """Record where the run's final weights were kept (``None``: none kept), before
        ``finish_run``. Fenced like every write to a run (:mod:`.lease`)."""
        run_id = to_int(run_id, "run_id")
        value = None if path is None else str(Path(path).expanduser().resolve())
        lease = self._leases.get(run_id)

        def write(conn: sa.Connection) -> None:
            check_owner(conn, run_id, lease)
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(weights_path=value))

        self._write(write)

    def stale_runs(self, older_than_s: float, *, experiment: str | None = None) -> list[int]:
        """Runs still 'running' whose last heartbeat is older than ``older_than_s`` seconds."""
        cutoff = _now() - timedelta(seconds=float(older_than_s))
        query = sa.select(runs.c.run_id).where(
            runs.c.status == "running", runs.c.heartbeat_at < cutoff
        )
        if experiment is not None:
            query = query.where(runs.c.experiment == experiment)
        return self._read(lambda conn: [int(r) for r in conn.scalars(query.order_by("run_id"))])

    # -- epochs and diagnostics -------------------------------------------------------------
    def record_epoch(self, run_id: int, metrics: Any) -> None:
        """Store one epoch's metrics (a mapping or ``EpochMetrics``), replacing a redone epoch.

        Keys: ``epoch`` plus any of ``EPOCH_METRICS``; the ones left out are stored as NULL.
        """
        run_id = to_int(run_id, "run_id")
        row = rows.epoch_row(run_id, metrics)
        self._outbox.add(run_id, epochs, [row])
        self.flush()

    def record_diagnostics(self, run_id: int, items: Iterable[Any]) -> int:
        """Store per-block diagnostics (mappings or ``BlockDiagnostics``); returns the count.

        Keys: ``epoch``, ``block``, ``index`` (or ``block_index``), ``grad_norm``,
        ``branch_ratio``. A row for an existing (run, epoch, block) replaces it.
        """
        run_id = to_int(run_id, "run_id")
        batch = rows.diagnostic_rows(run_id, items)
        if batch:
            self._outbox.add(run_id, diagnostics, batch)
            self.flush()
        return len(batch)

    @property
    def offline(self) -> bool:
        """Epoch or diagnostics rows are held: the database was unreachable at their write
        (they are written by the next write once it is back; see :mod:`.outbox`)."""
        return len(self._outbox) > 0

    def flush(self) -> bool:
        """Write the held epoch and diagnostics rows, oldest first, without waiting for an
        unreachable database; ``True`` when none is left. Raises
        :class:`~.reconnect.DatabaseUnavailableError` past the outage grace period and
        :class:`~.lease.LeaseLostError` for a run taken over meanwhile (its rows dropped)."""
        return self._outbox.flush(self._write_batch, self.reconnect)

    def _drain(self) -> None:
        """Write every held row, waiting (with backoff, up to the grace period) for the
        database: before a run's final write."""
        self.reconnect.call(lambda: self._outbox.drain(self._write_batch), "held epoch rows")

    def discard_epochs_after(self, run_id: int, epoch: int) -> int:
        """Delete epochs (and diagnostics) after ``epoch``: a resume from an older checkpoint.

        Returns the number of epoch rows deleted.
        """
        run_id = to_int(run_id, "run_id")
        epoch = to_int(epoch, "epoch", minimum=-1)
        lease = self._leases.get(run_id)

        def write(conn: sa.Connection) -> int:
            check_owner(conn, run_id, lease)
            conn.execute(
                diagnostics.delete().where(
                    diagnostics.c.run_id == run_id, diagnostics.c.epoch > epoch
                )
            )
            result = conn.execute(
                epochs.delete().where(epochs.c.run_id == run_id, epochs.c.epoch > epoch)
            )
            return int(result.rowcount)

        return self._write(write)

    def _upsert_rows(
        self, conn: sa.Connection, run_id: int, table: sa.Table, rows: list[dict[str, Any]]
    ) -> None:
        # The fence, the run's heartbeat and its existence check (SQLite enforces foreign
        # keys only when asked) in one statement.
        check_owner(conn, run_id, self._leases.get(run_id))
        upsert(conn, table, rows)
