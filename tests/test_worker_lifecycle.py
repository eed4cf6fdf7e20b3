"""Workers over their whole life: a net that cannot be built fails its run row (not left
'running'); workers started at the same moment on a new store start cleanly and queue the grid
once; workers of a killed ``archbench run --workers N`` exit with it. Tiny specs on digits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from archbench.store import ResultsStore

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
FAMILIES = ("resnet", "plain", "preact", "wrn")


def write_spec(path: Path, storage: str, *, variants: int, epochs: int = 1, width: int = 4) -> Path:
    data = {
        "name": "w",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": epochs, "batch_size": 64, "lr": 0.1, "schedule": "cosine"},
        "variants": [{"family": f, "depth": 8, "width": width} for f in FAMILIES[:variants]],
        "seeds": [0],
        "storage": storage,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_net_that_cannot_be_built_fails_its_run_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import archbench.models.net
    from archbench.runner.spec import load_spec
    from archbench.runner.study import RunnerOptions, prepare_study
    from archbench.runner.worker import run_worker

    real = archbench.models.net.build_net

    def no_memory(spec: Any, *args: Any, device: Any = None, **kwargs: Any) -> Any:
        if str(device) == "meta":  # spec checks build on the meta device: no allocation
            return real(spec, *args, device=device, **kwargs)
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(archbench.models.net, "build_net", no_memory)
    db = tmp_path / "b.db"
    spec = load_spec(write_spec(tmp_path / "b.yaml", str(db), variants=1))
    options = RunnerOptions(threads=1, progress=False)
    prepare_study(spec, options)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_worker(spec, options)
    with ResultsStore(db, create=False) as store:
        runs = store.runs(experiment="w")
    assert list(runs["status"]) == ["failed"]
    assert runs["finished_at"].notna().all()
    assert runs.iloc[0]["env"]["error"] == (
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    trial = optuna.load_study(study_name="w:default", storage=f"sqlite:///{db}").trials[0]
    assert trial.state == TrialState.FAIL
