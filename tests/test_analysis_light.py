"""The analysis reads results without the model stack: no torch in a fresh process that
imports the analysis and loads a store (run in a subprocess: this one has torch already)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_store import SWEEP, build_fixture_store

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


IMPORTS = """
import sys
import archbench
import archbench.analysis.data, archbench.analysis.tables, archbench.analysis.report
from archbench.analysis.plots import plot_kinds
plot_kinds()  # imports every plot module
import archbench.store
from archbench.store import ResultsStore
"""


def test_importing_the_analysis_does_not_import_torch() -> None:
    done = _run(IMPORTS + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_store(tmp_path_factory.mktemp("light") / "fixture.db")


def test_reading_a_store_does_not_import_torch(store_path: Path) -> None:
    code = (
        IMPORTS
        + f"""
with ResultsStore({str(store_path)!r}) as store:
    runs, variants = store.runs(), store.variants()
assert len(runs) and len(variants)
print('torch' in sys.modules)
"""
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_loading_an_experiment_does_not_import_torch(store_path: Path) -> None:
    code = (
        IMPORTS
        + f"""
from archbench.analysis.data import load_experiment
from archbench.analysis.plots import make_plots
from archbench.analysis.tables import summary_table
data = load_experiment({str(store_path)!r}, {SWEEP!r})
summary_table(data)
make_plots(data, ["depth"])
print('torch' in sys.modules)
"""
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# The reading commands, through the real entry point (which builds every command's parser).
READING_COMMANDS = {
    "results": ["results", SWEEP],
    "stats": ["stats", SWEEP],
    "plot": ["plot", "depth", SWEEP, "--out", "{out}"],
    "report": ["report", SWEEP, "--out", "{out}/report.html"],
}


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(name, marks=pytest.mark.integration) if name in ("plot", "report") else name
        for name in READING_COMMANDS
    ],
)  # plot and report draw figures (tens of seconds): `make test`, not `make test-fast`
def test_reading_commands_do_not_import_torch(
    command: str, store_path: Path, tmp_path: Path
) -> None:
    argv = [a.format(out=tmp_path) for a in READING_COMMANDS[command]]
    argv += ["--storage", str(store_path)]
    code = f"""
import contextlib, io, sys
from archbench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main({argv!r})
print(code, 'torch' in sys.modules)
"""
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 False", done.stderr
