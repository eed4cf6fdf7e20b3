"""Storage checks that ``validate`` shares with ``run`` and ``worker`` (through preflight):
everything ``run`` would otherwise find out only when it opens the store.

:func:`check_storage` is the entry point :func:`archbench.runner.preflight.preflight` calls:
it resolves the storage value without opening it and runs the checks below. It lives here,
not in ``preflight.py``, so that module keeps to the order of the checks and this one holds
everything about the storage.

- the value is a supported URL or path; its folder exists (at most one missing level,
  which ``run`` creates and says so); an existing file really is a SQLite database;
- the files are regular files (``/dev/null`` is not a database);
- their folder accepts new files (the database, its WAL and lock files): probed by creating
  and removing an empty temporary file, so a read-only or immutable folder, or one in
  ``/proc``, is refused before anything runs;
- an existing file can be opened for writing (an immutable or read-only file);
- an existing store has the schema version this archbench reads;
- the database driver of a URL is installed.

Each raises :class:`~archbench.errors.SpecError` with one line; nothing is left behind.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path
from typing import Any

from archbench.errors import ArchbenchError, SpecError

SQLITE_MAGIC = b"SQLite format 3\x00"
STORAGE_FORMS = (
    "a SQLite file path (results/x.db), sqlite:///path, journal:path.log, "
    "postgresql://user@host/db or :memory:"
)


def check_files(files: list[Path], text: str) -> None:
    """Regular, writable files in folders that accept new files."""
    for path in files:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise SpecError(f"storage {text!r}: cannot reach {path}: {exc.strerror}") from None
        if mode is not None and not stat.S_ISREG(mode):
            raise SpecError(
                f"storage {text!r}: {path} is not a regular file (a device, pipe or socket); "
                "name a database file"
            )
        if path.parent.is_dir():
            probe_folder(path.parent, text)
        if mode is not None:
            try:
                os.close(os.open(path, os.O_RDWR))
            except OSError as exc:
                raise SpecError(
                    f"storage {text!r}: {path} cannot be written ({exc.strerror}); give a "
                    "writable file, or copy it somewhere writable to add to it"
                ) from None


def probe_folder(folder: Path, text: str) -> None:
    """Create and remove an empty file in ``folder``: the one sure test that SQLite can make
    its journal and lock files there (``os.access`` says yes to root on an immutable folder)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".archbench-probe-", dir=folder)
    except OSError as exc:
        raise SpecError(
            f"storage {text!r}: cannot create files in {folder} ({exc.strerror}); the store "
            "needs a writable folder (for its journal and lock files)"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_schema(path: Path, text: str, where: str) -> None:
    """An existing SQLite store must have the schema version this archbench reads (or one it
    upgrades): the line ``run`` would give when opening it."""
    from archbench.store import migrate
    from archbench.store.schema import SCHEMA_VERSION, meta
    from archbench.store.store import version_mismatch

    if not path.is_file() or path.stat().st_size == 0:
        return
    from archbench.store.storage import read_only_mode

    # Read with its write-ahead log where one is there (its -shm index too), else immutable:
    # either way no -wal/-shm file is made beside it (validate leaves the folder as it was).
    uri = f"{path.resolve().as_uri()}?{read_only_mode(str(path)).removesuffix('&uri=true')}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            row = conn.execute(
                f"SELECT schema_version, archbench_version FROM {meta.name}"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return  # no meta table (a new or foreign file): run's own checks say more
    if row is None:
        return
    version, written_by = row
    if version == SCHEMA_VERSION or (
        isinstance(version, int) and version < SCHEMA_VERSION and _upgradable(migrate, version)
    ):
        return
    raise SpecError(f"storage {text!r}: {version_mismatch(where, version, written_by)}")


def _upgradable(migrate: Any, version: int) -> bool:
    from archbench.store.schema import SCHEMA_VERSION

    return all(v in migrate.STEPS for v in range(version, SCHEMA_VERSION))


def check_driver(url: str, text: str) -> None:
    """The database driver of a URL storage is installed (the line ``run`` would give)."""
    from archbench.store.storage import check_driver as store_check_driver

    try:
        store_check_driver(url)
    except ArchbenchError as exc:
        raise SpecError(f"storage: {exc}") from None


# -- the storage value, resolved and checked (preflight's entry point) -----------------------


def check_storage(value: Any) -> tuple[Any, tuple[str, ...]]:
    """Resolve a storage value without opening it; returns (resolved, notes)."""
    from archbench.store.storage import MEMORY, redact, resolve_storage

    if not isinstance(value, str):
        raise SpecError(f"storage must be {STORAGE_FORMS}, got {value!r}")
    text = value.strip()
    if any(ord(c) < 32 for c in text):
        raise SpecError(
            f"storage {redact(text)!r} contains control characters; give {STORAGE_FORMS}"
        )
    is_url = "://" in text
    if not is_url and text != MEMORY and not text.startswith("journal:") and ":" in text:
        raise SpecError(
            f"storage {redact(text)!r} is neither a database URL nor a file path (a path has no "
            f"':'); give {STORAGE_FORMS}"
        )
    try:
        resolved = resolve_storage(text)
    except ArchbenchError as exc:
        raise SpecError(f"storage: {exc}") from None
    if resolved.kind == "other":
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        try:
            make_url(resolved.store_url).get_dialect()
        except (SQLAlchemyError, ImportError) as exc:
            backend = make_url(resolved.store_url).drivername
            raise SpecError(
                f"storage {redact(text)!r}: unsupported database {backend!r} ({type(exc).__name__}); "
                f"give {STORAGE_FORMS}"
            ) from None
    notes: list[str] = []
    files: list[Path] = []
    if resolved.kind == "sqlite":
        files.append(Path(resolved.store_url.removeprefix("sqlite:///")))
    elif resolved.kind == "journal":
        assert resolved.journal_path is not None
        files.append(Path(resolved.journal_path))
        files.append(Path(resolved.store_url.removeprefix("sqlite:///")))
    for path in files:
        notes += _check_folder(path, text)
    if resolved.journal_path is not None:
        from archbench.store.journal_check import check_journal

        if check_journal(resolved.journal_path, repair=False):
            notes.append(
                f"journal {resolved.journal_path}: its last line was cut off mid-write; "
                "run drops it"
            )
    for path in files:
        if path.suffix == ".log" or path == resolved.journal_path:
            continue
        _check_sqlite_file(path, text)
    check_files(files, text)
    if resolved.kind in ("sqlite", "journal"):
        store_file = Path(resolved.store_url.removeprefix("sqlite:///"))
        check_schema(store_file, text, redact(resolved.store_url))
    elif resolved.kind in ("postgresql", "other"):
        check_driver(resolved.store_url, redact(text))
    return resolved, tuple(dict.fromkeys(notes))


def _check_folder(path: Path, text: str) -> list[str]:
    """A storage file's folder must exist; one missing level is created by ``run`` (noted)."""
    folder = path.parent
    if folder.is_dir():
        if path.is_dir():
            raise SpecError(f"storage {text!r}: {path} is a folder; name a database file")
        return []
    if folder.exists():
        raise SpecError(f"storage {text!r}: {folder} is a file, not a folder")
    if folder.parent.is_dir():
        return [f"storage folder {folder} does not exist; run creates it"]
    missing = folder
    while not missing.parent.exists():
        missing = missing.parent
    raise SpecError(
        f"storage {text!r}: folder {folder} does not exist (nor does {missing}); create it "
        "first (mkdir -p) or fix the path"
    )


def _check_sqlite_file(path: Path, text: str) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise SpecError(f"storage {text!r}: cannot read {path}: {exc.strerror}") from None
    if head != SQLITE_MAGIC:
        raise SpecError(
            f"storage {text!r}: {path} exists and is not a SQLite database; give another file"
        )
