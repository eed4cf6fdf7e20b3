"""The setup lock of a file storage (filelock: every platform, not only POSIX)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from archbench.store.setup_lock import lock_path, setup_lock
from archbench.store.storage import StorageError, resolve_storage


def test_a_second_holder_waits_then_gets_it(tmp_path: Path) -> None:
    storage = resolve_storage(tmp_path / "s.db")
    assert lock_path(storage) == tmp_path / "s.db.lock"
    held, release, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with setup_lock(storage):
            order.append("first in")
            held.set()
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    with pytest.raises(StorageError, match=r"s\.db\.lock.*over 0 s"), setup_lock(storage, 0.2):
        pass
    release.set()
    with setup_lock(storage, timeout_s=10), setup_lock(storage):  # re-entrant in a thread
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]


def test_another_process_is_locked_out(tmp_path: Path) -> None:
    storage = resolve_storage(tmp_path / "s.db")
    code = (
        "import sys; from archbench.store.setup_lock import setup_lock;"
        "from archbench.store.storage import resolve_storage, StorageError\n"
        f"try:\n    with setup_lock(resolve_storage({str(tmp_path / 's.db')!r}), timeout_s=0.3):"
        " sys.exit(0)\nexcept StorageError: sys.exit(3)"
    )
    with setup_lock(storage):
        start = time.monotonic()
        assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 3
        assert time.monotonic() - start >= 0.3
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
