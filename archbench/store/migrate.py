"""Upgrades of older results stores: one step per schema version, run on open.

``ResultsStore`` upgrades a store whose version has a step here, inside one write transaction
(SQLite and PostgreSQL both roll DDL back), so a store is either upgraded whole or left as it
was. A store of a version with no step (or a newer one) is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa

from archbench.store.schema import BUDGET_COLUMNS, PREFIX, SCHEMA_VERSION, meta

log = logging.getLogger(__name__)


def _v1_to_v2(conn: sa.Connection) -> None:
    """Budgets move from the variant row to the run row.

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


#: version -> the step that upgrades a store of that version to the next one.
STEPS: dict[int, Callable[[sa.Connection], None]] = {1: _v1_to_v2}


def upgradable(version: int) -> bool:
    return all(v in STEPS for v in range(version, SCHEMA_VERSION)) and version < SCHEMA_VERSION


def upgrade(conn: sa.Connection, version: int, archbench_version: str) -> None:
    """Run every step from ``version`` to :data:`SCHEMA_VERSION` and record the new version."""
    for step in range(version, SCHEMA_VERSION):
        STEPS[step](conn)
        log.info("results store: schema %d upgraded to %d", step, step + 1)
    conn.execute(
        meta.update().values(schema_version=SCHEMA_VERSION, archbench_version=archbench_version)
    )
