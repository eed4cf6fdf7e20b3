"""``ResultsStore``: open (and version-check) the store, and write variants, runs, epochs.

Every write is one short transaction that either lands whole or not at all; inputs are
checked before the transaction starts, so a bad call writes nothing. Transient lock errors
(SQLite "database is locked", PostgreSQL serialisation failures) are retried a few times
(:mod:`.transactions`), a lost database up to a grace period (:mod:`.reconnect`; epoch rows
are held meanwhile, :mod:`.outbox`). Every write to a run is fenced by the lease its claim
returned (:mod:`.lease`). Create one store per process: engines do not survive ``fork``.

The run, epoch and diagnostics writes live in :mod:`.run_writes`, inputs become rows in
:mod:`.rows`, reads live in :mod:`.reads` (SQL in :mod:`.queries`), older schemas are
upgraded by :mod:`.migrate`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from archbench import __version__
from archbench.store import migrate, rows
from archbench.store.lease import Leases
from archbench.store.outbox import Batch, Outbox
from archbench.store.reads import StoreReads
from archbench.store.reconnect import Reconnect
from archbench.store.run_writes import RunWrites, _now
from archbench.store.schema import (
    PREFIX,
    SCHEMA_VERSION,
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
from archbench.store.values import (
    SchemaVersionError,
    StoreError,
    to_int,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class ResultsStore(RunWrites, StoreReads):
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

    def _write_batch(self, batch: Batch) -> None:
        """Write one held batch (:mod:`.outbox`) in one transaction, without retrying: the
        outbox keeps what a lost connection did not write."""
        run_id, table, rows = batch
        write_once(self._writer, lambda conn: self._upsert_rows(conn, run_id, table, rows))

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
    def run(self, run_id: int) -> dict[str, Any] | None:
        """One run's row as a dict (``None`` if there is no such run)."""
        run_id = to_int(run_id, "run_id")
        query = sa.select(runs).where(runs.c.run_id == run_id)

        def read(conn: sa.Connection) -> dict[str, Any] | None:
            row = conn.execute(query).first()
            return None if row is None else dict(row._mapping)

        return self._read(read)
