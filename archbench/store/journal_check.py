"""Check (and heal) an Optuna journal file before Optuna reads it.

Optuna's :class:`~optuna.storages.journal.JournalFileBackend` appends one JSON object per
line. A process killed mid-write leaves the last line cut off; Optuna then appends the next
record right after it, the two merge into one undecodable line, and every later command
fails with a ``JSONDecodeError`` traceback. :func:`check_journal`:

- a torn last line (no newline at the end): dropped, under Optuna's own journal lock, with
  one warning; if it is a whole record that only lacks its newline, the newline is added
  instead (nothing is lost);
- a damaged line anywhere else (not JSON, NUL bytes, not an object, an unknown operation):
  :class:`~archbench.store.storage.StorageError` naming the file and line number. Such a
  line is never dropped silently: the records after it may depend on it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from archbench.store.storage import StorageError

log = logging.getLogger(__name__)


def _known_ops() -> frozenset[int]:
    from optuna.storages.journal._storage import JournalOperation

    return frozenset(int(op) for op in JournalOperation)


def _line_problem(line: bytes, ops: frozenset[int]) -> str | None:
    """Why one journal line (without its newline) is not a record Optuna can apply."""
    if b"\x00" in line:
        return "it holds NUL bytes"
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"not JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    op = record.get("op_code")
    if isinstance(op, bool) or not isinstance(op, int) or op not in ops:
        return f"unknown op_code {op!r}"
    return None


def check_journal(path: str | Path, *, repair: bool = True) -> bool:
    """Refuse a journal with a damaged line in the middle; heal a torn last line (only look,
    with ``repair=False``). Returns whether the last line was torn."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    torn = _scan(path, _known_ops()) is not None
    if torn and repair:
        try:
            _heal_tail(path)
        except OSError as exc:  # a read-only copy: Optuna skips a torn last line on reads
            log.warning(
                "journal %s: its last line is cut off and cannot be dropped: %s",
                path,
                exc.strerror or exc,
            )
    return torn


def _scan(path: Path, ops: frozenset[int]) -> int | None:
    """Raise on a damaged middle line; the byte offset of a torn last line, else ``None``."""
    offset = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return offset  # the last line: only the final read can lack its newline
            why = _line_problem(line.rstrip(b"\r\n"), ops)
            if why is not None:
                raise StorageError(
                    f"journal {str(path)!r}: line {number} is damaged ({why}); Optuna cannot "
                    "read past it. Keep a copy, then fix or delete that line (or restore a "
                    "backup)"
                )
            offset += len(line)
    return None


def _heal_tail(path: Path) -> None:
    from optuna.storages.journal import JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file

    with get_lock_file(JournalFileSymlinkLock(str(path))):  # no writer appends meanwhile
        offset = _scan(path, _known_ops())
        if offset is None:
            return  # a writer finished its line while we waited
        with open(path, "rb+") as f:
            f.seek(offset)
            tail = f.read()
            if _line_problem(tail, _known_ops()) is None:
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
                what = "completed its last record (it lacked only its newline)"
            else:
                f.truncate(offset)
                what = f"dropped its last line, cut off mid-write ({len(tail)} bytes)"
            f.flush()
            os.fsync(f.fileno())
    log.warning("journal %s: %s; the records before it are kept", path, what)
