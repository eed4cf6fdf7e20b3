"""Review findings on the runner (issue h9): per-worker sampler seeds, grid trials that find
the queue empty, the depth stored for presets/default depths/solved depths, the median
pruner's warmup, validation of search-space recipes, the retry command, and thread counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from archbench.runner.spec import parse_spec

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def sampled(storage: Path, sampler: str = "random", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "r",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 1, "batch_size": 64},
        "space": {
            "family": ["resnet", "plain"],
            "depth": [8, 14, 20],
            "width": {"low": 4, "high": 32},
        },
        "sampler": {"name": sampler, "seed": 5},
        "trials": 6,
        "seeds": [0],
        "storage": str(storage),
    }
    data.update(changes)
    return data


def _ask(study: optuna.Study, spec: Any, n: int) -> list[dict[str, Any]]:
    from archbench.runner.objective import suggest_config

    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(suggest_config(spec, trial))
    return configs


# -- 1: parallel workers sample apart ----------------------------------------------------------


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_parallel_workers_draw_different_configurations(tmp_path: Path, sampler: str) -> None:
    from archbench.runner.study import create_study

    spec = parse_spec(sampled(tmp_path / "x.db", sampler))
    shared = optuna.storages.InMemoryStorage()  # one storage, as two workers share it
    first = _ask(create_study(spec, shared, worker=0), spec, 3)
    second = _ask(create_study(spec, shared, worker=1), spec, 3)
    assert first != second


def test_worker_zero_stays_reproducible_from_the_seed(tmp_path: Path) -> None:
    from archbench.runner.algorithms import worker_seed
    from archbench.runner.study import create_study

    spec = parse_spec(sampled(tmp_path / "x.db"))
    runs = [_ask(create_study(spec, optuna.storages.InMemoryStorage()), spec, 3) for _ in range(2)]
    assert runs[0] == runs[1]
    assert worker_seed(5, 0) == 5 and worker_seed(None, 3) is None
    assert worker_seed(5, 1) == worker_seed(5, 1) != worker_seed(5, 2)


# -- 2: a grid trial that finds the queue empty trains nothing ---------------------------------


def grid(storage: Path, **changes: Any) -> dict[str, Any]:
    data = sampled(storage, "grid")
    del data["space"], data["trials"]
    data["variants"] = [
        {"family": "resnet", "depth": 8, "width": 4},
        {"family": "plain", "depth": 8, "width": 4},
    ]
    data.update(changes)
    return data


def test_a_grid_trial_with_nothing_queued_is_pruned_not_sampled(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from archbench.runner.identity import grid_entries
    from archbench.runner.objective import NOTHING_QUEUED, suggest_config
    from archbench.runner.outcome import unfinished
    from archbench.runner.study import create_study
    from archbench.runner.worker import study_progress

    spec = parse_spec(grid(tmp_path / "x.db"))
    study = create_study(spec, optuna.storages.InMemoryStorage())
    for entry in grid_entries(spec):
        study.enqueue_trial({}, user_attrs={"config_key": entry.key, "seeds": list(spec.seeds)})
    popped = [study.ask(), study.ask()]  # two workers took the queue
    late = study.ask()  # a third found it empty after its progress check
    with pytest.raises(optuna.TrialPruned, match="nothing queued"):
        suggest_config(spec, late)
    assert late.params == {}  # no random grid point was drawn
    assert late.user_attrs["pruned_reason"] == NOTHING_QUEUED
    study.tell(late, state=TrialState.PRUNED)
    for trial in popped:
        suggest_config(spec, trial)
        study.tell(trial, 0.5)
    trials = study.get_trials(deepcopy=False)
    assert unfinished(spec, trials) == []  # not a failure, not un-run: exit code 0
    progress = study_progress(spec, trials)
    assert progress.complete and (progress.done, progress.total) == (2, 2)


# -- 3: the depth the store records ----------------------------------------------------------


def _record_variants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any]
) -> dict[str, int]:
    """Run the grid until each trial has recorded its variant (training is cut short)."""
    import archbench.training.train
    from archbench.errors import ArchbenchError
    from archbench.runner.study import RunnerOptions, prepare_study
    from archbench.runner.worker import run_worker
    from archbench.store import ResultsStore

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise ArchbenchError("not trained in this test")

    monkeypatch.setattr(archbench.training.train, "train", no_training)
    spec = parse_spec(data)
    options = RunnerOptions(progress=False)
    prepare_study(spec, options)
    run_worker(spec, options)
    with ResultsStore(spec.storage) as store:
        rows = store.variants()
    return dict(zip(rows["name"], rows["depth"], strict=True))


def test_the_store_records_preset_default_and_solved_depths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variants = [
        {"preset": "resnet20"},  # 9 blocks, depth 20
        {"family": "resnet", "width": 4, "label": "default"},  # the family's default: 20
        {"family": "resnet", "depth": 14, "width": 4, "label": "given"},
    ]
    depths = _record_variants(tmp_path, monkeypatch, grid(tmp_path / "a.db", variants=variants))
    assert depths == {"resnet20": 20, "default": 20, "given": 14}

    solve = grid(
        tmp_path / "b.db",
        variants=[{"family": "resnet", "width": 4, "label": "solved"}],
        budget={"metric": "params", "target": "20K", "tolerance": 0.5, "solve": "depth"},
    )
    from archbench.runner.variants import check_spec

    _, [variant] = check_spec(parse_spec(solve))
    assert variant.budget.depth == variant.depth != variant.spec.depth
    assert _record_variants(tmp_path, monkeypatch, solve) == {"solved": variant.budget.depth}


def test_dry_run_shows_the_depth_built(tmp_path: Path) -> None:
    import contextlib
    import io
    import json

    import yaml

    from archbench.cli import main

    variants = [{"preset": "resnet20"}, {"family": "resnet", "width": 4, "label": "default"}]
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid(tmp_path / "g.db", variants=variants)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", str(path), "--dry-run", "--json"]) == 0
    rows = json.loads(out.getvalue())["variants"]
    assert {r["variant"]: r["depth"] for r in rows} == {"resnet20": 20, "default": 20}


# -- 4: the median pruner's warmup -----------------------------------------------------------


@pytest.mark.parametrize("warmup", [0, 1, 2])
def test_median_warmup_epochs_are_never_pruned(tmp_path: Path, warmup: int) -> None:
    from archbench.runner.algorithms import PRUNERS

    spec = parse_spec(
        sampled(tmp_path / "x.db", pruner={"name": "median", "warmup_epochs": warmup})
    )
    study = optuna.create_study(direction="maximize", pruner=PRUNERS["median"].build(spec))
    for _ in range(spec.pruner.startup_trials):  # good curves, epochs 1..4
        trial = study.ask()
        for epoch in range(1, 5):
            trial.report(0.9, epoch)
        study.tell(trial, 0.9)
    bad = study.ask()
    pruned_at = None
    for epoch in range(1, 5):  # the objective reports epochs from 1
        bad.report(0.1, epoch)
        if bad.should_prune():
            pruned_at = epoch
            break
    assert pruned_at == warmup + 1


# -- 5: validate checks the recipes a search space can produce ---------------------------------


@pytest.mark.parametrize(
    "space_recipe, sampler",
    [
        ({"lr": [0.1, -1.0]}, "grid"),  # one bad grid value
        ({"lr": [0.1], "momentum": [0.9, 1.5]}, "grid"),
        ({"lr": {"low": -1.0, "high": 0.1}}, "random"),  # a sampled range's bound
        ({"weight_decay": {"choices": [0.0, -0.5]}}, "tpe"),
    ],
)
def test_check_spec_rejects_space_recipes_that_cannot_train(
    tmp_path: Path, space_recipe: dict[str, Any], sampler: str
) -> None:
    from archbench.errors import SpecError
    from archbench.runner.variants import check_spec

    space = {"family": "resnet", "depth": [8], "width": [4], "recipe": space_recipe}
    data = sampled(tmp_path / "x.db", sampler, space=space)
    if sampler == "grid":
        del data["trials"]
    with pytest.raises(SpecError, match=r"space\.recipe .*recipe: "):
        check_spec(parse_spec(data))
    good = {k: v for k, v in space_recipe.items() if k == "lr" and v == [0.1]}
    check_spec(parse_spec({**data, "space": {**space, "recipe": good or {"lr": [0.1, 0.2]}}}))


# -- 6: the retry command keeps the flags -------------------------------------------------------


def test_the_retry_command_keeps_every_option_that_matters() -> None:
    import shlex

    from archbench.cli import build_parser
    from archbench.cli.run import _retry_command

    argv = [
        "run", "my spec.yaml", "--profile", "cpu", "--storage", "postgresql://u:secret@h/db",
        "--results-dir", "/tmp/res dir", "--threads", "2", "--workers", "3",
        "--heartbeat", "10", "--device", "cpu",
    ]  # fmt: skip
    command = _retry_command(build_parser().parse_args(argv))
    assert "secret" not in command
    words = shlex.split(command)
    assert words[:3] == ["archbench", "run", "my spec.yaml"]
    options = dict(zip(words[3::2], words[4::2], strict=True))
    assert options == {
        "--profile": "cpu",
        "--storage": options["--storage"],  # redacted, checked above
        "--results-dir": "/tmp/res dir",
        "--device": "cpu",
        "--heartbeat": "10",
        "--threads": "2",
        "--workers": "3",
    }
    plain = _retry_command(build_parser().parse_args(["worker", "s.yaml"]))
    assert plain == "archbench worker s.yaml"  # defaults are left out


# -- 8: small things ----------------------------------------------------------------------------


def test_results_tables_separate_thousands_in_every_count() -> None:
    from archbench.cli.format import rows_table

    table = rows_table(
        [
            {"name": "tiny", "depth": 1202, "params": 4934, "macs": 123_456, "seed": 1},
            {"name": "big", "depth": 8, "params": 42_430, "macs": 5_252_496, "seed": 2},
        ]
    )
    assert "4,934" in table and "42,430" in table and "5,252,496" in table
    assert "1202" in table  # a depth is not a count


def test_run_spec_restores_the_callers_torch_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import archbench.runner.run as run_module
    from archbench.runner.run import run_spec

    seen: list[int] = []
    monkeypatch.setattr(run_module, "prepare_study", lambda spec, options: None)
    monkeypatch.setattr(
        run_module, "run_worker", lambda *a, **k: seen.append(torch.get_num_threads())
    )
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_spec(parse_spec(grid(tmp_path / "x.db")), threads=1)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_storage_retries_stale_trials_through_the_one_retry_callback(tmp_path: Path) -> None:
    from archbench.runner.study import RunnerOptions, _retry_callback, open_storage

    spec = parse_spec(grid(tmp_path / "x.db"))
    storage, store = open_storage(spec, RunnerOptions(max_retry=2))
    store.close()
    callback = storage.get_heartbeat_stale_trial_callback()
    expected = _retry_callback(2)
    assert type(callback) is type(expected) and vars(callback) == vars(expected)
    assert vars(callback)["_max_retry"] == 2 and vars(_retry_callback())["_max_retry"] is None


# -- 8: a worker that died of an error is never a clean run -------------------------------------


def test_run_exits_3_when_a_worker_process_crashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other worker finished every trial, but one died with a traceback: exit 3, not 0
    (seen: a baseline outside the profile's space killed a worker and the run said 0)."""
    import multiprocessing

    import yaml

    import archbench.cli.run as cli_run
    from archbench.cli import main

    class InProcess:  # worker 0 works in this process; worker 1 "crashes" at once
        def __init__(self, target: Any, args: tuple[Any, ...]) -> None:
            self.args, self.exitcode = args, None

        def start(self) -> None:
            spec, profile, options, workers, overrides = self.args
            if options.worker == 0:
                cli_run._worker_main(spec, profile, options, workers, overrides)
                self.exitcode = 0
            else:
                self.exitcode = 1

        def join(self) -> None:
            pass

    real = multiprocessing.get_context
    fake = type("Ctx", (), {"Process": staticmethod(InProcess)})
    monkeypatch.setattr(
        cli_run.multiprocessing, "get_context", lambda m=None: fake if m == "spawn" else real(m)
    )
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid(tmp_path / "g.db")))
    code = main(["run", str(path), "--workers", "2", "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "1 worker process(es) failed (exit codes [1])" in err
    assert "not clean" in err and f"archbench run {path}" in err
