"""Worker processes of ``archbench run --workers N`` stop when their parent dies.

A parent killed with ``kill -9`` runs no cleanup, so its children must notice by themselves;
otherwise they train on, and a rerun trains beside them. Two ways, either is enough:

- Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, the kernel signals the child when the parent
  dies;
- anywhere: a thread waits on the parent's sentinel (a pipe multiprocessing keeps open in the
  parent) and signals its own process.

SIGTERM becomes a ``KeyboardInterrupt`` (once), so a worker stops as on Ctrl-C: the run row
is marked failed, the trial fails, and the next ``archbench run`` re-queues it to resume
from its checkpoint. If that cleanup hangs, the process exits hard after a grace period.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
#: Seconds a worker whose parent died has for a clean stop before it exits hard.
GRACE_S = 30.0
_stopping = threading.Event()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    if _stopping.is_set():
        return  # already stopping: let the cleanup finish
    _stopping.set()
    threading.Thread(target=_hard_exit_later, daemon=True).start()
    raise KeyboardInterrupt(f"signal {signum}: the parent process is gone or asked to stop")


def _hard_exit_later() -> None:
    time.sleep(GRACE_S)
    os._exit(128 + signal.SIGTERM)


def _watch(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    log.warning("parent process died; stopping this worker")
    os.kill(os.getpid(), signal.SIGTERM)


def _set_pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_with_parent() -> None:
    """In a process started by :mod:`multiprocessing`: stop when the parent dies. Call it
    first thing in the child's main thread; a no-op in a process nobody started."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    signal.signal(signal.SIGTERM, _interrupt)
    _set_pdeathsig()
    threading.Thread(
        target=_watch, args=(parent.sentinel,), daemon=True, name="archbench-lifeline"
    ).start()
    if not parent.is_alive():  # it died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
