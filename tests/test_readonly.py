"""Reading never writes: the read-only commands (``results``, ``export``, ``report``) on a
foreign or empty SQLite file say so in one line and leave the file as it was."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from archbench.cli import main
from archbench.store import ResultsStore


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def foreign_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO photos (name) VALUES ('cat.jpg')")
    conn.commit()
    conn.close()
    return path


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file in ``folder`` (names and contents): a -wal/-shm file or a change shows."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("kind", ["foreign", "empty"])
@pytest.mark.parametrize(
    "command",
    [
        ["results", "x"],
        ["results", "x", "--runs"],
        ["export", "x", "--out", "OUT"],
        ["report", "x"],
    ],
)
def test_read_only_commands_never_create_tables(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "other.db"
    if kind == "foreign":
        foreign_db(db)
    else:
        db.touch()
    before = fingerprint(folder)
    argv = [a.replace("OUT", str(tmp_path / "out.csv")) for a in command]
    code, out, err = run_cli(*argv, "--storage", str(db))
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"no archbench results store in {db}" in lines[0]
    expected = "other tables (photos)" if kind == "foreign" else "empty database"
    assert expected in lines[0], lines[0]
    assert fingerprint(folder) == before  # no tables, no WAL switch, no journal files
    assert not (tmp_path / "out.csv").exists()


def test_a_reader_store_refuses_a_non_database_file(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("not a database " * 100)
    with pytest.raises(sa.exc.DatabaseError, match="file is not a database"):
        ResultsStore(junk, create=False)
    assert junk.read_text() == "not a database " * 100
    assert [p.name for p in tmp_path.iterdir()] == ["notes.db"]


def test_a_reader_still_opens_a_real_store(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    ResultsStore(db).close()  # a writer creates the store
    with ResultsStore(db, create=False) as store:
        assert store.runs().empty
