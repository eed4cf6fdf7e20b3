"""Storage checks that ``validate`` shares with ``run`` and ``worker`` (through preflight):
everything ``run`` would otherwise find out only when it opens the store.

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
