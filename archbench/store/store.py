"""``ResultsStore``: open (and version-check) the store, and write variants, runs, epochs.

Every write is one short transaction that either lands whole or not at all; inputs are
checked before the transaction starts, so a bad call writes nothing. Transient lock errors
(SQLite "database is locked", PostgreSQL serialisation failures) are retried a few times.
Create one store per process: engines do not survive ``fork``.

Inputs become rows in :mod:`.rows`, reads live in :mod:`.reads` (SQL in :mod:`.queries`),
older schemas are upgraded by :mod:`.migrate`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from archbench import __version__
from archbench.store import migrate, rows
from archbench.store.reads import StoreReads
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

WRITE_ATTEMPTS = 8
_RETRY_PGCODES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock timeout


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _race(exc: DBAPIError) -> bool:
    """Another writer created the same row or table first; a retry will find it."""
    if isinstance(exc, IntegrityError):
        return True
    # PostgreSQL: duplicate table/object when two processes create the schema at once.
    return getattr(exc.orig, "pgcode", None) in ("42P07", "42710")


def _transient(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "pgcode", None) in _RETRY_PGCODES:
        return True
    if isinstance(exc, OperationalError):
        message = str(exc.orig).lower()
        return "locked" in message or "busy" in message
    return False


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


class ResultsStore(StoreReads):
    """The results store at a URL, path, resolved storage or SQLAlchemy engine.

    ``create=False`` opens an existing store only (for readers), raising if there is none.
    An engine passed in is used as it is: make it with :func:`archbench.store.storage.create_engine`
    to get the SQLite settings (WAL, busy timeout, BEGIN IMMEDIATE for writes).
    """

    def __init__(
        self, url_or_engine: str | Path | Engine | ResolvedStorage, *, create: bool = True
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
        """Run ``fn`` in one write transaction, retrying transient lock errors.

        ``race=True`` also retries an IntegrityError: two writers inserting the same key at
        once, where the retry finds the other's row.
        """
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self._writer.begin() as conn:
                    return fn(conn)
            except DBAPIError as exc:
                retry = _transient(exc) or (race and _race(exc))
                if not retry or attempt == WRITE_ATTEMPTS - 1:
                    raise
                delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                log.debug("store write retry %d after %s", attempt + 1, exc.__class__.__name__)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.engine.connect() as conn:
                    return fn(conn)
            except DBAPIError as exc:
                if not _transient(exc) or attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

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
            advice = (
                "upgrade archbench to read it"
                if version > SCHEMA_VERSION
                else "open it with the archbench that wrote it and export what you need"
            )
            raise SchemaVersionError(
                f"results store {self.url} has schema version {version} (archbench "
                f"{written_by}); this archbench {__version__} reads schema version "
                f"{SCHEMA_VERSION}: {advice}, or use a new storage path"
            )
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

        def write(conn: sa.Connection) -> int:
            return self._open_run(conn, spec_hash, key, fields, budget_of, rerun_completed, allowed)

        run_id = self._write(write, race=True)
        log.debug("run %d started: %s", run_id, key)
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
    ) -> int:
        """``start_run``'s transaction: insert the run, or reopen the one with this key."""
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
                    started_at=now,
                    heartbeat_at=now,
                )
            )
            return int(result.inserted_primary_key[0])
        if old.spec_hash != spec_hash:
            raise StoreError(
                f"run {old.run_id} ({key}) belongs to variant {old.spec_hash}, not "
                f"{spec_hash}: the config_key must identify the variant"
            )
        # A finished result is reused; under ``exclusive`` (the runner) a diverged one too:
        # retraining it from the same seed diverges again.
        reusable = ("completed", "diverged") if allowed_owners is not None else ("completed",)
        if old.status in reusable and not rerun_completed:
            return int(old.run_id)
        owner = (old.study_name, old.trial_number)
        if old.status == "running" and allowed_owners is not None and owner not in allowed_owners:
            raise RunBusyError(int(old.run_id), *owner)
        cleared = dict.fromkeys((*FINAL_METRICS, "diverged_at", "wall_time_s", "finished_at"))
        conn.execute(
            runs.update()
            .where(runs.c.run_id == old.run_id)
            .values(
                **fields, **cleared, status="running", attempts=old.attempts + 1, heartbeat_at=now
            )
        )
        return int(old.run_id)

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
        """Mark the run alive now (a worker calls this while training)."""
        run_id = to_int(run_id, "run_id")

        def write(conn: sa.Connection) -> None:
            result = conn.execute(
                runs.update().where(runs.c.run_id == run_id).values(heartbeat_at=_now())
            )
            if result.rowcount == 0:
                raise StoreError(f"unknown run_id {run_id}")

        self._write(write)

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
        goes into the run's ``env`` record as ``env["error"]``.
        """
        run_id = to_int(run_id, "run_id")
        values = rows.final_values(status, final, wall_time_s, diverged_at)

        if error is not None:
            error = str(error)[:2000]

        def write(conn: sa.Connection) -> None:
            now = _now()
            extra: dict[str, Any] = {}
            if error is not None:
                env = conn.execute(sa.select(runs.c.env).where(runs.c.run_id == run_id)).scalar()
                extra["env"] = {**(env or {}), "error": error}
            result = conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(**values, **extra, finished_at=now, heartbeat_at=now)
            )
            if result.rowcount == 0:
                raise StoreError(f"unknown run_id {run_id}")

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
        self._write(lambda conn: self._upsert_rows(conn, run_id, epochs, [row], touch=True))

    def record_diagnostics(self, run_id: int, items: Iterable[Any]) -> int:
        """Store per-block diagnostics (mappings or ``BlockDiagnostics``); returns the count.

        Keys: ``epoch``, ``block``, ``index`` (or ``block_index``), ``grad_norm``,
        ``branch_ratio``. A row for an existing (run, epoch, block) replaces it.
        """
        run_id = to_int(run_id, "run_id")
        batch = rows.diagnostic_rows(run_id, items)
        if batch:
            self._write(lambda conn: self._upsert_rows(conn, run_id, diagnostics, batch))
        return len(batch)

    def discard_epochs_after(self, run_id: int, epoch: int) -> int:
        """Delete epochs (and diagnostics) after ``epoch``: a resume from an older checkpoint.

        Returns the number of epoch rows deleted.
        """
        run_id = to_int(run_id, "run_id")
        epoch = to_int(epoch, "epoch", minimum=-1)

        def write(conn: sa.Connection) -> int:
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

    @staticmethod
    def _upsert_rows(
        conn: sa.Connection,
        run_id: int,
        table: sa.Table,
        rows: list[dict[str, Any]],
        *,
        touch: bool = False,
    ) -> None:
        # Also an existence check for the run (SQLite enforces foreign keys only when asked).
        result = conn.execute(
            runs.update().where(runs.c.run_id == run_id).values(heartbeat_at=_now())
            if touch
            else sa.select(runs.c.run_id).where(runs.c.run_id == run_id)
        )
        found = result.rowcount if touch else len(result.fetchall())
        if not found:
            raise StoreError(f"unknown run_id {run_id}; start_run first")
        upsert(conn, table, rows)
