"""``ResultsStore``: open (and version-check) the store, and write variants, runs, epochs.

Every write is one short transaction that either lands whole or not at all; inputs are
checked before the transaction starts, so a bad call writes nothing. Transient lock errors
(SQLite "database is locked", PostgreSQL serialisation failures) are retried a few times
(:mod:`.transactions`), a lost database up to a grace period (:mod:`.reconnect`; epoch rows
are held meanwhile, :mod:`.outbox`). Every write to a run is fenced by the lease its claim
returned (:mod:`.lease`). Create one store per process: engines do not survive ``fork``.

Inputs become rows in :mod:`.rows`, reads live in :mod:`.reads` (SQL in :mod:`.queries`),
older schemas are upgraded by :mod:`.migrate`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from archbench import __version__
from archbench.store import migrate, rows
from archbench.store.lease import LeaseLostError, Leases, check_owner
from archbench.store.outbox import Batch, Outbox
from archbench.store.reads import StoreReads
from archbench.store.reconnect import Reconnect
from archbench.store.schema import (
    FINAL_METRICS,
    PREFIX,
    SCHEMA_VERSION,
    diagnostics,
    epochs,
    meta,
    metadata,
    runs,
    variants,
)
from archbench.store.storage import (
    WRITE_OPTION,
    ResolvedStorage,
    create_engine,
    redact,
    resolve_storage,
    sqlite_table_names,
)
from archbench.store.transactions import read_once, write_once
from archbench.store.upsert import upsert
from archbench.store.values import (
    RunBusyError,
    SchemaVersionError,
    StoreError,
    to_int,
    to_name,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _check_sqlite_store(path: Path) -> None:
    """Refuse, before connecting, a SQLite file that holds no results store: a reader's
    engine would switch it to WAL mode and opening would otherwise go on to create tables."""
    names = sqlite_table_names(path)
    if names is None or any(name.startswith(PREFIX) for name in names):
        # Not SQLite (connecting raises the database's own error), or ours (the version
        # check says more if it is damaged or another version).
        return
    what = (
        f"it holds other tables ({', '.join(sorted(names)[:5])}), none of archbench's"
        if names
        else "it is an empty database"
    )
    raise StoreError(
        f"no archbench results store in {path}: {what}; reading never creates one "
        "(give the storage an `archbench run` wrote)"
    )


def version_mismatch(where: str, version: Any, written_by: Any) -> str:
    """The one line for a store of another schema version (``run`` and ``validate`` alike)."""
    advice = (
        "upgrade archbench to read it"
        if isinstance(version, int) and version > SCHEMA_VERSION
        else "open it with the archbench that wrote it and export what you need"
    )
    return (
        f"results store {where} has schema version {version} (archbench {written_by}); this "
        f"archbench {__version__} reads schema version {SCHEMA_VERSION}: {advice}, or use a "
        "new storage path"
    )


class ResultsStore(StoreReads):
    """The results store at a URL, path, resolved storage or SQLAlchemy engine.

    ``create=False`` opens an existing store only (for readers), raising if there is none.
    An engine passed in is used as it is: make it with :func:`archbench.store.storage.create_engine`
    to get the SQLite settings (WAL, busy timeout, BEGIN IMMEDIATE for writes).

    ``reconnect`` (default: one with :data:`~.reconnect.DEFAULT_GRACE_S`) rides out a
    database outage once the store has opened: calls are retried with backoff, and epoch and
    diagnostics rows are held (:mod:`.outbox`, :attr:`offline`) and written once it is back.
    """

    def __init__(
        self,
        url_or_engine: str | Path | Engine | ResolvedStorage,
        *,
        create: bool = True,
        reconnect: Reconnect | None = None,
    ) -> None:
        if isinstance(url_or_engine, Engine):
            self.engine = url_or_engine
            self._owns_engine = False
        else:
            target = url_or_engine
            if not isinstance(target, ResolvedStorage):
                target = resolve_storage(target)
            if not create and target.kind in ("sqlite", "journal"):
                path = sa.engine.make_url(target.store_url).database
                if path and not Path(path).exists():
                    raise StoreError(f"no results store at {path} (file does not exist)")
                if path:
                    _check_sqlite_store(Path(path))
            self.engine = create_engine(target)
            self._owns_engine = True
        self.url = redact(self.engine.url)
        self._leases = Leases()  # the runs this handle claimed, and their lease numbers
        self.reconnect = reconnect or Reconnect()
        self._outbox = Outbox()
        # Writes go through this view of the engine: on SQLite it makes them BEGIN IMMEDIATE.
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})
        try:
            self._open(create)
        except Exception:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"ResultsStore({self.url!r})"

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- transactions -----------------------------------------------------------------------
    def _write(self, fn: Callable[[sa.Connection], T], *, race: bool = False) -> T:
        """Run ``fn`` in one write transaction (:mod:`.transactions`), retrying lock errors
        and, up to the outage grace period, a lost database (:mod:`.reconnect`)."""
        return self.reconnect.call(
            lambda: write_once(self._writer, fn, race=race), "results store write"
        )

    def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        return self.reconnect.call(lambda: read_once(self.engine, fn), "results store read")

    # -- schema -----------------------------------------------------------------------------
    def _open(self, create: bool) -> None:
        if self._read(self._stored_version) is not None:
            self._write(self._upgrade)
        if self._read(self._check_version):
            return
        if not create:
            raise StoreError(f"no archbench results store in {self.url}")
        self._write(self._create_schema, race=True)

    def _stored_version(self, conn: sa.Connection) -> int | None:
        """The schema version of a store that :mod:`.migrate` upgrades (or completes), else
        None."""
        if meta.name not in sa.inspect(conn).get_table_names():
            return None
        version = conn.execute(sa.select(meta.c.schema_version)).scalar()
        return version if version is not None and migrate.pending(conn, version) else None

    def _upgrade(self, conn: sa.Connection) -> None:
        version = self._stored_version(conn)  # again: another process may have upgraded it
        if version is not None:
            migrate.upgrade(conn, version, __version__)
            log.info("upgraded results store %s from schema %d", self.url, version)

    def _check_version(self, conn: sa.Connection) -> bool:
        """True when the schema exists at this version; raises on another version."""
        names = set(sa.inspect(conn).get_table_names())
        if meta.name not in names:
            ours = sorted(n for n in names if n.startswith(PREFIX))
            if ours:
                raise SchemaVersionError(
                    f"{self.url} has archbench tables {ours} but no {meta.name} table; it was "
                    "not written by a released archbench and cannot be opened"
                )
            return False
        row = conn.execute(sa.select(meta.c.schema_version, meta.c.archbench_version)).first()
        if row is None:
            raise SchemaVersionError(f"{self.url}: {meta.name} is empty; the store is damaged")
        version, written_by = row
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(version_mismatch(self.url, version, written_by))
        return True

    def _create_schema(self, conn: sa.Connection) -> None:
        if self._check_version(conn):  # another process created it meanwhile
            return
        metadata.create_all(conn)
        conn.execute(
            meta.insert().values(
                id=1,
                schema_version=SCHEMA_VERSION,
                archbench_version=__version__,
                created_at=_now(),
            )
        )
        log.info("created archbench results store (schema %d) in %s", SCHEMA_VERSION, self.url)

    # -- variants ---------------------------------------------------------------------------
    def record_variant(
        self,
        spec: Any,
        *,
        family: str,
        complexity: Any,
        depth: int | None = None,
        width: float | None = None,
        name: str | None = None,
        block_family: str | None = None,
    ) -> str:
        """Store a variant once and return its ``spec_hash``.

        ``complexity`` gives ``params``, ``macs``, ``acts`` (a mapping or an object with those
        attributes). ``depth``/``width`` are the family's parameters (default: the number of
        blocks and the first stage's width). ``block_family`` is the family of the spec's main
        block (default: the block registry's, which imports the blocks; the variant's
        ``family`` for a block not registered). A budget belongs to a run (``start_run``).
        Re-recording the same variant is a no-op; the same hash with other counts raises
        :class:`StoreError` (a drift in the complexity count).
        """
        row = rows.variant_row(
            spec,
            family,
            complexity,
            depth=depth,
            width=width,
            name=name,
            block_family=block_family,
        )
        spec_hash = row["spec_hash"]

        def write(conn: sa.Connection) -> None:
            old = conn.execute(sa.select(variants).where(variants.c.spec_hash == spec_hash)).first()
            if old is None:
                conn.execute(variants.insert().values(**row, created_at=_now()))
                return
            old = old._mapping
            drift = [k for k in ("params", "macs", "acts") if old[k] != row[k]]
            if drift or old["spec_json"] != row["spec_json"]:
                was = ", ".join(f"{k}={old[k]}" for k in ("params", "macs", "acts"))
                now = ", ".join(f"{k}={row[k]}" for k in ("params", "macs", "acts"))
                raise StoreError(
                    f"variant {spec_hash} ({old['name']}) is already stored with {was}; now "
                    f"{now}. The same architecture counted differently means the complexity "
                    "code or a block changed: use a new storage path for the new counts"
                )

        self._write(write, race=True)
        return spec_hash

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

    def run(self, run_id: int) -> dict[str, Any] | None:
        """One run's row as a dict (``None`` if there is no such run)."""
        run_id = to_int(run_id, "run_id")
        query = sa.select(runs).where(runs.c.run_id == run_id)

        def read(conn: sa.Connection) -> dict[str, Any] | None:
            row = conn.execute(query).first()
            return None if row is None else dict(row._mapping)

        return self._read(read)

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

    def _write_batch(self, batch: Batch) -> None:
        run_id, table, rows = batch
        write_once(self._writer, lambda conn: self._upsert_rows(conn, run_id, table, rows))

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
