"""Insert rows, replacing those with the same primary key, in the caller's transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def upsert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL, else delete + insert."""
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
