"""``ResultsStore``: open (and version-check) the store, and write variants, runs, epochs.

Every write is one short transaction that either lands whole or not at all; inputs are
checked before the transaction starts, so a bad call writes nothing. Transient lock errors
(SQLite "database is locked", PostgreSQL serialisation failures) are retried a few times.
Create one store per process: engines do not survive ``fork``.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from archbench import __version__
from archbench.store import queries
from archbench.store.schema import (
    DIAGNOSTIC_METRICS,
    EPOCH_METRICS,
    FINAL_METRICS,
    FINISHED_STATUSES,
    PREFIX,
    RUN_STATUSES,
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
)
from archbench.store.values import (
    SchemaVersionError,
    StoreError,
    as_mapping,
    check_keys,
    to_float,
    to_int,
    to_json,
    to_name,
)
from archbench.store.values import config_key as make_config_key

log = logging.getLogger(__name__)
T = TypeVar("T")

WRITE_ATTEMPTS = 8
BUDGET_METRICS = ("params", "macs")
DEFAULT_PROFILE = "default"
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


def _main_block(spec: Any) -> str:
    """The block type of most blocks (the first stage's on a tie)."""
    counts: Counter[str] = Counter()
    for stage in spec.stages:
        counts[stage.block] += stage.depth
    return counts.most_common(1)[0][0]


EXPORT_FORMATS = ("csv", "parquet")


class ResultsStore:
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
        if self._read(self._check_version):
            return
        if not create:
            raise StoreError(f"no archbench results store in {self.url}")
        self._write(self._create_schema, race=True)

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
        budget: Mapping[str, Any] | None = None,
        depth: int | None = None,
        width: float | None = None,
        name: str | None = None,
    ) -> str:
        """Store a variant once and return its ``spec_hash``.

        ``complexity`` gives ``params``, ``macs``, ``acts`` (a mapping or an object with those
        attributes); ``budget`` is ``{"metric": "params"|"macs", "target": n}`` (``tolerance``
        allowed). ``depth``/``width`` are the family's parameters (default: the number of
        blocks and the first stage's width). Re-recording the same variant is a no-op; the same
        hash with other counts raises :class:`StoreError` (a drift in the complexity count).
        """
        for attr in ("canonical_json", "spec_hash", "stages"):
            if not hasattr(spec, attr):
                raise StoreError(f"record_variant: expected a NetSpec, got {type(spec).__name__}")
        if not spec.stages:
            raise StoreError("record_variant: the spec has no stages")
        spec_hash = spec.spec_hash()
        counts = self._counts(complexity)
        metric = target = error = None
        if budget is not None:
            data = as_mapping(budget, "budget")
            check_keys(data, ("metric", "target", "tolerance", "error"), "budget")
            metric = data.get("metric")
            if metric not in BUDGET_METRICS:
                raise StoreError(f"budget metric {metric!r} is not one of {list(BUDGET_METRICS)}")
            target = to_float(data.get("target"), "budget target")
            if target is None or target <= 0:
                raise StoreError(f"budget target must be a positive number, got {target!r}")
            # Stored from the counts stored beside it; a caller's own figure may come from
            # another (e.g. analytic) count, so a difference is only logged.
            error = (counts[metric] - target) / target
            given = to_float(data.get("error"), "budget error")
            if given is not None and abs(given - error) > 1e-3:
                log.debug("budget error %.4f given, %.4f from the stored counts", given, error)
        num_blocks = int(spec.depth)
        row = {
            "spec_hash": spec_hash,
            "name": to_name(name or spec.name or f"{family}_{spec_hash[:8]}", "variant name"),
            "spec_json": spec.canonical_json(),
            "family": to_name(family, "family"),
            "block": _main_block(spec),
            "depth": to_int(num_blocks if depth is None else depth, "depth", minimum=1),
            "width": to_float(spec.stages[0].width if width is None else width, "width"),
            "num_blocks": num_blocks,
            **counts,
            "flops": 2 * counts["macs"],
            "budget_metric": metric,
            "budget_target": target,
            "budget_error": error,
        }

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
            if old["budget_metric"] is None and metric is not None:
                conn.execute(
                    variants.update()
                    .where(variants.c.spec_hash == spec_hash)
                    .values(budget_metric=metric, budget_target=target, budget_error=error)
                )
            elif metric is not None and (old["budget_metric"], old["budget_target"]) != (
                metric,
                target,
            ):
                log.warning(
                    "variant %s already stored with budget %s=%s; keeping it (asked: %s=%s)",
                    old["name"],
                    old["budget_metric"],
                    old["budget_target"],
                    metric,
                    target,
                )

        self._write(write, race=True)
        return spec_hash

    @staticmethod
    def _counts(complexity: Any) -> dict[str, int]:
        if isinstance(complexity, Mapping):
            get = complexity.get
        else:
            get = lambda key: getattr(complexity, key, None)  # noqa: E731
        counts = {}
        for key in ("params", "macs", "acts"):
            value = get(key)
            if value is None:
                raise StoreError(f"complexity: missing {key!r} (need params, macs and acts)")
            counts[key] = to_int(value, f"complexity {key}", minimum=0)
        return counts

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
        rerun_completed: bool = False,
    ) -> int:
        """Open (or reopen) the run of one configuration and seed; return its ``run_id``.

        The key is (experiment, profile, config_key, seed): a retried or rerun trial gets the
        same run back, set to 'running' again (attempts + 1), with its recorded epochs kept.
        A run already 'completed' is returned untouched, so a rerun can skip it (check
        ``run(run_id)["status"]``), unless ``rerun_completed``. ``config_key`` defaults to the
        variant hash plus a hash of ``recipe`` and ``hyperparameters``.
        """
        spec_hash = to_name(spec_hash, "spec_hash")
        hp = to_json(hyperparameters, "hyperparameters")
        rec = to_json(recipe, "recipe")
        key = {
            "experiment": to_name(experiment, "experiment"),
            "profile": DEFAULT_PROFILE if profile is None else to_name(profile, "profile"),
            "config_key": to_name(
                config_key if config_key is not None else make_config_key(spec_hash, rec, hp),
                "config_key",
            ),
            "seed": to_int(seed, "seed"),
        }
        fields = {
            "study_name": None if study_name is None else to_name(study_name, "study_name"),
            "trial_number": to_int(trial_number, "trial_number", minimum=0, optional=True),
            "hyperparameters": hp,
            "recipe": rec,
            "device": None if device is None else str(device),
            "env": to_json(env, "env"),
        }
        cleared = dict.fromkeys((*FINAL_METRICS, "diverged_at", "wall_time_s", "finished_at"))

        def write(conn: sa.Connection) -> int:
            known = conn.execute(
                sa.select(variants.c.spec_hash).where(variants.c.spec_hash == spec_hash)
            ).first()
            if known is None:
                raise StoreError(f"start_run: unknown variant {spec_hash!r}; record_variant first")
            where = sa.and_(*(runs.c[k] == v for k, v in key.items()))
            old = conn.execute(
                sa.select(runs.c.run_id, runs.c.spec_hash, runs.c.attempts, runs.c.status).where(
                    where
                )
            ).first()
            now = _now()
            if old is not None:
                if old.spec_hash != spec_hash:
                    raise StoreError(
                        f"run {old.run_id} ({key}) belongs to variant {old.spec_hash}, not "
                        f"{spec_hash}: the config_key must identify the variant"
                    )
                if old.status == "completed" and not rerun_completed:
                    return int(old.run_id)
                conn.execute(
                    runs.update()
                    .where(runs.c.run_id == old.run_id)
                    .values(
                        **fields,
                        **cleared,
                        status="running",
                        attempts=old.attempts + 1,
                        heartbeat_at=now,
                    )
                )
                return int(old.run_id)
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

        run_id = self._write(write, race=True)
        log.debug("run %d started: %s", run_id, key)
        return run_id

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
    ) -> None:
        """Close a run with its status and final metrics.

        ``final`` has ``FINAL_METRICS`` keys, or is the last epoch's metrics (a mapping or
        ``EpochMetrics``): its ``epoch`` becomes ``epochs_done``; the per-epoch columns that are
        not final metrics are in the epochs table already.
        """
        run_id = to_int(run_id, "run_id")
        if status not in FINISHED_STATUSES:
            raise StoreError(
                f"finish_run: status {status!r} is not one of {list(FINISHED_STATUSES)}"
            )
        values: dict[str, Any] = dict.fromkeys(FINAL_METRICS)
        if final is not None:
            data = as_mapping(final, "final metrics")
            check_keys(data, {*FINAL_METRICS, "epoch", *EPOCH_METRICS}, "final metrics")
            if "epoch" in data:
                data.setdefault("epochs_done", data["epoch"])
            for key, value in data.items():
                if key not in FINAL_METRICS:
                    continue
                if key == "epochs_done":
                    values[key] = to_int(value, key, minimum=0, optional=True)
                else:
                    values[key] = to_float(value, f"final {key}")
        wall = to_float(wall_time_s, "wall_time_s")
        if wall is not None and wall < 0:
            raise StoreError(f"wall_time_s must be >= 0, got {wall}")
        values.update(
            status=status,
            wall_time_s=wall,
            diverged_at=to_json(diverged_at, "diverged_at", optional=True),
        )

        def write(conn: sa.Connection) -> None:
            now = _now()
            result = conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(**values, finished_at=now, heartbeat_at=now)
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
        data = as_mapping(metrics, "epoch metrics")
        if data.get("run_id", run_id) != run_id:
            raise StoreError(f"epoch metrics: run_id {data['run_id']} != {run_id}")
        data.pop("run_id", None)
        check_keys(data, ("epoch", *EPOCH_METRICS), "epoch metrics")
        if "epoch" not in data:
            raise StoreError("epoch metrics: missing 'epoch'")
        row = {"run_id": run_id, "epoch": to_int(data["epoch"], "epoch", minimum=0)}
        row.update({k: to_float(data.get(k), k) for k in EPOCH_METRICS})
        self._write(lambda conn: self._upsert_rows(conn, run_id, epochs, [row], touch=True))

    def record_diagnostics(self, run_id: int, rows: Iterable[Any]) -> int:
        """Store per-block diagnostics (mappings or ``BlockDiagnostics``); returns the count.

        Keys: ``epoch``, ``block``, ``index`` (or ``block_index``), ``grad_norm``,
        ``branch_ratio``. A row for an existing (run, epoch, block) replaces it.
        """
        run_id = to_int(run_id, "run_id")
        clean: dict[tuple[int, str], dict[str, Any]] = {}
        allowed = ("epoch", "block", "index", "block_index", "run_id", *DIAGNOSTIC_METRICS)
        for i, item in enumerate(rows):
            what = f"diagnostics row {i}"
            data = as_mapping(item, what)
            check_keys(data, allowed, what)
            if data.get("run_id", run_id) != run_id:
                raise StoreError(f"{what}: run_id {data['run_id']} != {run_id}")
            for needed in ("epoch", "block"):
                if needed not in data:
                    raise StoreError(f"{what}: missing {needed!r}")
            index = data.get("block_index", data.get("index"))
            if index is None:
                raise StoreError(f"{what}: missing 'index' (the block's position)")
            row = {
                "run_id": run_id,
                "epoch": to_int(data["epoch"], f"{what} epoch", minimum=0),
                "block": to_name(data["block"], f"{what} block"),
                "block_index": to_int(index, f"{what} index", minimum=0),
            }
            row.update({k: to_float(data.get(k), f"{what} {k}") for k in DIAGNOSTIC_METRICS})
            clean[(row["epoch"], row["block"])] = row  # the last of duplicates wins
        if clean:
            batch = list(clean.values())
            self._write(lambda conn: self._upsert_rows(conn, run_id, diagnostics, batch))
        return len(clean)

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
        keys = [c.name for c in table.primary_key.columns]
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=keys,
                set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
            )
            conn.execute(stmt, rows)
            return
        # Portable fallback (other backends): delete then insert, in the same transaction.
        for row in rows:
            conn.execute(table.delete().where(*(table.c[k] == row[k] for k in keys)))
        conn.execute(table.insert(), rows)

    # -- queries (DataFrames) ---------------------------------------------------------------
    def variants(self) -> pd.DataFrame:
        """One row per stored variant, with its canonical spec JSON."""
        return self._read(queries.variants)

    def runs(
        self,
        experiment: str | None = None,
        profile: str | None = None,
        status: str | Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Runs joined with their variant's columns; hyperparameters also as ``hp_<name>``."""
        statuses = _statuses(status)
        return self._read(lambda c: queries.runs(c, experiment, profile, statuses))

    def epochs(
        self,
        experiment: str | None = None,
        run_ids: Iterable[int] | None = None,
        profile: str | None = None,
    ) -> pd.DataFrame:
        """Per-epoch metrics with the run's and the variant's columns (ready to plot)."""
        ids = None if run_ids is None else [to_int(r, "run_id") for r in run_ids]
        return self._read(lambda c: queries.epochs(c, experiment, ids, profile))

    def diagnostics(
        self,
        experiment: str | None = None,
        run_ids: Iterable[int] | None = None,
        profile: str | None = None,
        epoch: int | None = None,
    ) -> pd.DataFrame:
        """Per-block gradient norms and branch ratios with run and variant columns."""
        ids = None if run_ids is None else [to_int(r, "run_id") for r in run_ids]
        return self._read(lambda c: queries.diagnostics(c, experiment, ids, profile, epoch))

    def experiments(self) -> pd.DataFrame:
        """One row per (experiment, profile): variant and run counts by status, times."""
        return self._read(queries.experiments)

    def summary(self, experiment: str, profile: str | None = None) -> pd.DataFrame:
        """Per configuration (variant + recipe): seeds, mean/std of test and val error.

        Means and standard deviations (ddof=1) are over completed runs only; diverged, pruned
        and failed runs are counted beside them. Raises for an experiment with no runs.
        """
        frame = self.runs(experiment=experiment, profile=profile)
        if frame.empty:
            known = self._read(queries.experiment_names)
            from archbench.errors import UnknownNameError

            where = f"experiment {experiment!r}" + (f", profile {profile!r}" if profile else "")
            raise UnknownNameError(f"no runs recorded for {where}; known experiments: {known}")
        return queries.summarize(frame)

    def export(
        self,
        path: str | Path,
        format: str | None = None,
        table: str = "runs",
        experiment: str | None = None,
    ) -> Path:
        """Write one table (``queries.EXPORT_TABLES``) as CSV or Parquet; returns the path.

        ``format`` defaults to the file's suffix; a format that contradicts a ``.csv`` or
        ``.parquet`` suffix is refused (a CSV file named .parquet would mislead every reader).
        JSON columns are written as JSON text.
        """
        path = Path(path)
        suffix = path.suffix.lstrip(".").lower()
        fmt = format or suffix
        if fmt not in EXPORT_FORMATS:
            raise StoreError(
                f"export format {fmt or path.name!r} is not one of {list(EXPORT_FORMATS)} "
                "(give the format or a .csv/.parquet file name)"
            )
        if suffix in EXPORT_FORMATS and suffix != fmt:
            raise StoreError(
                f"export format {fmt!r} does not match the file name {path.name!r}; "
                f"name it .{fmt} or leave the format out to write {suffix}"
            )
        if table not in queries.EXPORT_TABLES:
            raise StoreError(f"export table {table!r} is not one of {list(queries.EXPORT_TABLES)}")
        if table == "summary":
            if experiment is None:
                raise StoreError("export table 'summary' needs an experiment")
            frame = self.summary(experiment)
        elif table in ("runs", "epochs", "diagnostics"):
            frame = getattr(self, table)(experiment=experiment)
        else:
            frame = getattr(self, table)()
        frame = queries.flatten_json(frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            try:
                frame.to_parquet(path, index=False)
            except ImportError as exc:
                raise StoreError(
                    f"Parquet export needs pyarrow ({exc}); pip install 'archbench[parquet]'"
                ) from None
        return path


def _statuses(status: str | Iterable[str] | None) -> list[str] | None:
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    bad = [s for s in items if s not in RUN_STATUSES]
    if bad:
        raise StoreError(f"unknown run status {bad}; allowed: {list(RUN_STATUSES)}")
    return items
