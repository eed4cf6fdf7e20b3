"""Helpers of the issue-20 tests (test_heal.py, test_heal_limits.py)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import yaml

from archbench.cli import main

RUN = ["--quiet", "--threads", "1"]
EPOCH1 = {"epochs": 1, "batch_size": 64, "lr": 0.1}


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def spec_file(tmp_path: Path, storage: str, **changes: Any) -> Path:
    data: dict[str, Any] = {
        "name": "h",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 2, "batch_size": 64, "lr": 0.1, "schedule": "cosine"},
        "variants": [{"family": "resnet", "depth": 8, "width": 4}],
        "seeds": [0],
        "storage": storage,
    }
    data.update(changes)
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
