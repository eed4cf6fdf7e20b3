"""Upgrades of older results stores: one step per schema version, run on open.

``ResultsStore`` upgrades a store whose version has a step here, inside one write transaction
(SQLite and PostgreSQL both roll DDL back), so a store is either upgraded whole or left as it
was. A store of a version with no step (or a newer one) is refused.

Schema 2 gained ``variants.block_family`` after the first stores had been written at version 2
(the same day, before any release): such a store is completed on open, as an upgrade would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa

from archbench.store.rows import registered_family
from archbench.store.schema import BUDGET_COLUMNS, PREFIX, SCHEMA_VERSION, meta
from archbench.store.schema import variants as variants_table

log = logging.getLogger(__name__)


def _v1_to_v2(conn: sa.Connection) -> None:
    """Budgets move from the variant row to the run row; variants gain ``block_family``.

    Schema 1 kept one budget per variant (the first experiment to record it set it for every
    run of that architecture); each run inherits its variant's, the best schema 1 knows.
    """
    runs, variants = f"{PREFIX}runs", f"{PREFIX}variants"
    kinds = {
        "budget_metric": sa.String(16),
        "budget_target": sa.Float(),
        "budget_error": sa.Float(),
    }
    assert tuple(kinds) == BUDGET_COLUMNS
    for name, kind in kinds.items():
        ddl = kind.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {runs} ADD COLUMN {name} {ddl}"))
    copied = ", ".join(
        f"{name} = (SELECT v.{name} FROM {variants} v WHERE v.spec_hash = {runs}.spec_hash)"
        for name in kinds
    )
    conn.execute(sa.text(f"UPDATE {runs} SET {copied}"))
    for name in kinds:  # SQLite >= 3.35 and PostgreSQL drop columns in place
        conn.execute(sa.text(f"ALTER TABLE {variants} DROP COLUMN {name}"))
    _add_block_family(conn)


def _add_block_family(conn: sa.Connection) -> None:
    """Each variant records its main block's family, so that readers need no block registry.

    Filled from this process's block registry, which imports the blocks (torch): the one place
    where opening a store needs the model stack, once per store. A block not registered here
    (a plugin not installed) gets its variant's family, as the analysis assumed before.
    """
    table = variants_table.name
    ddl = variants_table.c.block_family.type.compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN block_family {ddl}"))
    pairs = conn.execute(sa.text(f"SELECT DISTINCT block, family FROM {table}")).all()
    for block, family in pairs:  # no rows (an empty store): the registry is never imported
        conn.execute(
            sa.text(
                f"UPDATE {table} SET block_family = :block_family "
                "WHERE block = :block AND family = :family"
            ),
            {"block_family": registered_family(block, family), "block": block, "family": family},
        )
    if conn.dialect.name == "postgresql":  # SQLite cannot add NOT NULL to a column in place
        conn.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN block_family SET NOT NULL"))


def _v2_to_v3(conn: sa.Connection) -> None:
    """Runs gain ``weights_path`` (NULL: no weights kept, as for every run before)."""
    from archbench.store.schema import runs

    ddl = runs.c.weights_path.type.compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE {runs.name} ADD COLUMN weights_path {ddl}"))


def _v2_incomplete(conn: sa.Connection) -> bool:
    """A store written at version 2 before ``variants.block_family`` was added to it."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns(variants_table.name)}
    return "block_family" not in columns


def _v3_to_v4(conn: sa.Connection) -> None:
    """Runs gain ``lease``, the claim number fenced writes check; an existing run's is its
    ``attempts`` (each claim so far bumped both)."""
    runs = f"{PREFIX}runs"
    conn.execute(sa.text(f"ALTER TABLE {runs} ADD COLUMN lease INTEGER NOT NULL DEFAULT 0"))
    conn.execute(sa.text(f"UPDATE {runs} SET lease = attempts"))


#: version -> the step that upgrades a store of that version to the next one.
STEPS: dict[int, Callable[[sa.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


def upgradable(version: int) -> bool:
    return all(v in STEPS for v in range(version, SCHEMA_VERSION)) and version < SCHEMA_VERSION


def pending(conn: sa.Connection, version: int) -> bool:
    """Whether a store of ``version`` has work to do on open: an upgrade, or completion."""
    return upgradable(version) or (version == 2 and _v2_incomplete(conn))


def upgrade(conn: sa.Connection, version: int, archbench_version: str) -> None:
    """Run every step from ``version`` to :data:`SCHEMA_VERSION` and record the new version
    (completing an early version 2 store first)."""
    if version == 2 and _v2_incomplete(conn):
        _add_block_family(conn)
        log.info("results store: schema 2 completed (variants.block_family)")
    for step in range(version, SCHEMA_VERSION):
        STEPS[step](conn)
        log.info("results store: schema %d upgraded to %d", step, step + 1)
    conn.execute(
        meta.update().values(schema_version=SCHEMA_VERSION, archbench_version=archbench_version)
    )
