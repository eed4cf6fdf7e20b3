"""The public facade in archbench/__init__.py: every name works, and ``import archbench``
stays light (names load their modules on first use)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna  # noqa: F401  (the warning filter below names its class)
import pytest
import yaml

import archbench

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def test_import_archbench_loads_neither_torch_nor_optuna() -> None:
    code = "import sys, archbench; print([m for m in ('torch', 'optuna', 'pandas') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_facade_names_are_the_documented_ones() -> None:
    assert set(archbench.__all__) == {
        "__version__", "NetSpec", "build_net", "get_preset", "measure", "analytic", "solve",
        "load_spec", "run_spec", "ResultsStore", "load_experiment",
    }  # fmt: skip
    for name in archbench.__all__:
        assert name in dir(archbench) and getattr(archbench, name) is not None
        assert name in (archbench.__doc__ or "") or name == "__version__"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        archbench.nope  # noqa: B018


def test_build_count_and_match_a_budget() -> None:
    spec = archbench.get_preset("resnet20")
    assert isinstance(spec, archbench.NetSpec)
    net = archbench.build_net(spec)
    assert sum(p.numel() for p in net.parameters()) == archbench.analytic(spec).params == 269_722
    assert archbench.measure(spec).macs == archbench.analytic(spec).macs == 40_931_968
    match = archbench.solve("resnet", "1.7M", depth=110, tolerance=0.02)
    assert match.width == 16


def test_run_a_spec_and_load_its_results(tmp_path: Path) -> None:
    db = tmp_path / "api.db"
    path = tmp_path / "api.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "api",
                "dataset": {"name": "digits", "val_size": 200},
                "recipe": {"epochs": 1, "batch_size": 64},
                "variants": [{"family": "resnet", "depth": 8, "width": 4}],
                "seeds": [0],
                "storage": str(db),
            }
        )
    )
    spec = archbench.load_spec(path)
    events: list[str] = []
    study = archbench.run_spec(spec, threads=1, on_event=events.append)
    assert len(study.trials) == 1 and events
    with archbench.ResultsStore(db) as store:
        runs = store.runs(experiment="api")
    assert list(runs["status"]) == ["completed"]
    data = archbench.load_experiment(db, "api")
    assert len(data.runs) == 1
    with pytest.raises(TypeError, match="unknown runner option"):
        archbench.run_spec(spec, nope=1)
