"""A trial that runs out of a machine's resources (memory, disk space) fails alone, with one
line, like a configuration that cannot run: the run row is recorded ``failed`` with the
reason, the study goes on, and ``archbench run`` ends with its ``failed:`` lines and exit
code 3 instead of a traceback. A rerun retries the configuration (after the user freed the
resource): nothing recorded is lost."""

from __future__ import annotations

import errno

from archbench.errors import ArchbenchError

#: errno values of a full disk or quota.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class ResourceError(ArchbenchError):
    """The machine ran out of memory or disk space during a trial."""


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[0].split())
    return text or type(exc).__name__


def disk_full_message(exc: BaseException) -> str | None:
    """One line for a full disk (``OSError`` ENOSPC/EDQUOT, SQLite's "database or disk is
    full"), else ``None``."""
    where = getattr(exc, "filename", None)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return f"no space left on the device of {where}" if where else "no space left on device"
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    if "database or disk is full" in text:
        return "no space left for the database (SQLite: database or disk is full)"
    return None


def as_resource_error(exc: BaseException) -> ResourceError | None:
    """``exc`` as a :class:`ResourceError` when it is the machine's, not the code's."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return ResourceError(
            f"out of memory ({_first_line(exc)}); use a smaller batch_size, width or depth, "
            "or fewer workers per device"
        )
    full = disk_full_message(exc)
    if full is not None:
        return ResourceError(f"{full}; free some space and rerun")
    return None
