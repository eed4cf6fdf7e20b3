"""The experiment runner end to end, in-process: grid, TPE with baselines, NSGA-II, pruning,
divergence, interruption and continuation, journal storage, the Optuna CLI, results and
export. Tiny specs on sklearn digits (8x8), widths of 4, 1-2 epochs: a run takes ~0.5 s."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

import archbench.training.train
from archbench.cli import main
from archbench.errors import SpecError
from archbench.runner.identity import grid_entries
from archbench.runner.spec import load_spec, parse_spec
from archbench.runner.study import HEARTBEAT_ATTR, RunnerOptions
from archbench.runner.worker import (
    DEFAULT_THREADS,
    fail_stale_trials,
    study_progress,
    worker_threads,
)
from archbench.store import ResultsStore

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

RUN = ["--quiet", "--threads", "1"]


def tiny(storage: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "s",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 2, "batch_size": 64, "lr": 0.1, "schedule": "cosine"},
        "variants": [
            {"family": "resnet", "depth": 8, "width": 4},
            {"family": "plain", "depth": 8, "width": 4},
        ],
        "seeds": [0, 1],
        "storage": str(storage),
    }
    data.update(changes)
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def load_study(spec_path: Path, storage: str | None = None) -> optuna.Study:
    spec = load_spec(spec_path)
    url = storage or f"sqlite:///{spec.storage}"
    return optuna.load_study(study_name=spec.study_name, storage=url)


@pytest.fixture(scope="module")
def grid_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The two-variant, two-seed grid study, run once for the tests that read it."""
    root = tmp_path_factory.mktemp("grid")
    db = root / "s.db"
    spec = write(root / "s.yaml", tiny(db))
    start = time.perf_counter()
    code, out, err = run_cli("run", str(spec), *RUN)
    assert code == 0, err
    return {"spec": spec, "db": db, "out": out, "seconds": time.perf_counter() - start}


def test_grid_runs_every_configuration_once_with_every_seed(grid_study: dict[str, Any]) -> None:
    store = ResultsStore(grid_study["db"])
    runs = store.runs(experiment="s")
    assert len(runs) == 2 * 2
    assert set(runs["status"]) == {"completed"}
    assert set(runs["attempts"]) == {1}
    # The same seeds for every variant: comparisons can be paired.
    seeds = runs.groupby("name")["seed"].apply(lambda s: sorted(s.tolist())).to_dict()
    assert seeds == {"resnet8_w4": [0, 1], "plain8_w4": [0, 1]}
    assert runs.groupby(["config_key", "seed"]).size().max() == 1
    epochs = store.epochs(experiment="s")
    assert len(epochs) == 4 * 2
    assert epochs.groupby("run_id")["epoch"].apply(sorted).map(tuple).unique().tolist() == [(1, 2)]
    assert set(runs["epochs_done"]) == {2}
    assert runs["val_err"].between(0, 1).all() and runs["test_err"].between(0, 1).all()
    assert all(env["git_commit"] is None or len(env["git_commit"]) == 40 for env in runs["env"])
    diagnostics = store.diagnostics(experiment="s")
    # Every run has its gradient-flow snapshot at initialisation and after the last epoch
    # (what the plots read; one per epoch cost trials/hour).
    assert diagnostics.groupby("run_id")["epoch"].apply(lambda e: sorted(set(e))).map(
        tuple
    ).unique().tolist() == [(0, 2)]

    study = load_study(grid_study["spec"])
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(study.trials) == len(trials) == 2
    # (Changed for issue 16: a grid trial carries its configuration key and label as user
    # attrs, not a categorical `config` param whose choices would change with the grid.)
    assert {t.user_attrs["label"] for t in trials} == {"resnet8_w4", "plain8_w4"}
    for trial in trials:
        attrs = trial.user_attrs
        assert trial.params == {} and attrs["config_key"].startswith(attrs["spec_hash"] + "-")
        assert attrs["seeds"] == [0, 1]
        assert attrs["params"] > 0 and attrs["macs"] > 0 and "spec_hash" in attrs
        assert len(attrs["run_ids"]) == 2
        assert trial.value == pytest.approx(sum(attrs["val_acc_per_seed"]) / 2)
        assert sorted(trial.intermediate_values) == [1, 2]
    assert study.user_attrs["experiment"] == "s" and study.user_attrs["profile"] == "default"

    out = grid_study["out"]
    assert "running 's' (profile 'default'): 2 trial(s) x 2 seed(s), 1 worker(s)" in out
    assert "2/2 trial(s) finished" in out
    assert "resnet8_w4" in out.splitlines()[-2] + out.splitlines()[-1]


def test_rerunning_a_finished_study_trains_nothing(grid_study: dict[str, Any]) -> None:
    before = ResultsStore(grid_study["db"]).runs(experiment="s")
    code, out, _ = run_cli("run", str(grid_study["spec"]), *RUN)
    assert code == 0
    assert "is already complete: 2/2 trial(s) done" in out and "nothing to train" in out
    assert "trial 0" not in out
    after = ResultsStore(grid_study["db"]).runs(experiment="s")
    pd.testing.assert_frame_equal(before, after)
    assert len(load_study(grid_study["spec"]).trials) == 2


def test_changing_what_results_depend_on_is_refused(
    grid_study: dict[str, Any], tmp_path: Path
) -> None:
    data = tiny(grid_study["db"])
    data["recipe"]["lr"] = 0.2
    code, _, err = run_cli("run", str(write(tmp_path / "s.yaml", data)), *RUN)
    assert code == 2
    assert "was run with another recipe" in err and err.count("\n") == 1
    code, _, err = run_cli("validate", str(write(tmp_path / "s.yaml", data)))
    assert code == 2 and "was run with another recipe" in err and err.count("\n") == 1
    # (Changed for issue 16: seeds are not part of what makes runs comparable; added seeds
    # are trained beside the stored ones, tests/test_identity.py.)


def test_optuna_cli_lists_the_study(grid_study: dict[str, Any]) -> None:
    optuna_cli = Path(sys.executable).parent / "optuna"
    url = f"sqlite:///{grid_study['db']}"
    names = subprocess.run(
        [str(optuna_cli), "study-names", "--storage", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "s:default" in names.stdout.split()
    trials = subprocess.run(
        [str(optuna_cli), "trials", "--study-name", "s:default", "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = json.loads(trials.stdout)
    assert len(rows) == 2 and {r["state"] for r in rows} == {"COMPLETE"}


def test_optuna_views_see_the_architecture(grid_study: dict[str, Any]) -> None:
    """Issue 12: named objective, family/depth/width/block as params and user attrs, so
    optuna-dashboard's importance, slice and parallel-coordinate views mean something."""
    study = load_study(grid_study["spec"])
    assert study.metric_names == ["val_acc"]
    assert list(study.trials_dataframe().filter(like="value").columns) == ["value_val_acc"]
    by_config = {t.user_attrs["label"]: t for t in study.trials}
    expected = {
        "resnet8_w4": {"family": "resnet", "block": "basic", "depth": 8, "width": 4},
        "plain8_w4": {"family": "plain", "block": "plain_basic", "depth": 8, "width": 4},
    }
    for config, facts in expected.items():
        trial = by_config[config]
        # (Changed for issue 16/19: facts are user attrs only. As params, a grid's family
        # effect was credited to budget-solved width/depth by Optuna's importances, and a
        # categorical whose choices follow the grid refused the next grown grid.)
        assert trial.params == {}
        assert {k: trial.user_attrs[k] for k in facts} == facts
        assert trial.user_attrs["budget"] is None and trial.user_attrs["threads"] == 1
    # The store's hyperparameters stay what was chosen: none beyond the spec's recipe here.
    runs = ResultsStore(grid_study["db"]).runs(experiment="s")
    assert {json.dumps(hp, sort_keys=True) for hp in runs["hyperparameters"]} == {"{}"}


def test_optuna_studies_shows_short_user_attrs(grid_study: dict[str, Any]) -> None:
    optuna_cli = Path(sys.executable).parent / "optuna"
    url = f"sqlite:///{grid_study['db']}"
    listed = subprocess.run(
        [str(optuna_cli), "studies", "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    (row,) = json.loads(listed.stdout)
    assert row["user_attrs"] == {"experiment": "s", "profile": "default"}
    # The spec itself is kept where `optuna studies` does not print it.
    study = load_study(grid_study["spec"])
    system = study._storage.get_study_system_attrs(study._study_id)
    assert yaml.safe_load(system["archbench:spec"])["name"] == "s"


def test_results_and_export(grid_study: dict[str, Any], tmp_path: Path) -> None:
    spec, db = str(grid_study["spec"]), str(grid_study["db"])
    code, out, _ = run_cli("results", spec)
    assert code == 0
    lines = out.splitlines()
    assert "val_err_mean" in lines[0] and "test_err_mean" in lines[0]
    assert {line.split()[1] for line in lines[2:]} == {"resnet8_w4", "plain8_w4"}
    code, out, _ = run_cli("results", "s", "--storage", db, "--runs")
    assert code == 0 and len(out.splitlines()) == 2 + 4
    code, out, _ = run_cli("results", spec, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["schema"] == "archbench.results/1" and data["experiment"] == "s"
    assert {r["name"] for r in data["rows"]} == {"resnet8_w4", "plain8_w4"}
    assert all(0 <= r["val_err_mean"] <= 1 for r in data["rows"])  # fractions, not percent
    code, out, _ = run_cli("results", spec, "--runs", "--json")
    assert code == 0 and len(json.loads(out)["rows"]) == 4
    code, out, _ = run_cli("validate", spec, "--json")
    assert code == 0
    assert json.loads(out) == {
        "schema": "archbench.validate/1",
        "spec": spec,
        "valid": True,
        "experiment": "s",
        "profile": "default",
        "trials": 2,
        "seeds": [0, 1],
        "storage": str(grid_study["db"]),
    }
    code, _, err = run_cli("results", "nope", "--storage", db)
    assert code == 2 and "no results for experiment 'nope'" in err and "s" in err

    for fmt in ("csv", "parquet"):
        target = tmp_path / f"runs.{fmt}"
        code, out, _ = run_cli("export", spec, "--format", fmt, "--out", str(target))
        assert code == 0 and str(target) in out
        frame = pd.read_csv(target) if fmt == "csv" else pd.read_parquet(target)
        assert len(frame) == 4 and sorted(frame["seed"]) == [0, 0, 1, 1]
        assert {"experiment", "config_key", "val_err", "params", "status"} <= set(frame.columns)
    target = tmp_path / "epochs.csv"
    assert run_cli("export", spec, "--table", "epochs", "--out", str(target))[0] == 0
    assert len(pd.read_csv(target)) == 8
    # The format follows the file name (issue 12: a .parquet file used to get CSV text) ...
    target = tmp_path / "epochs.parquet"
    assert run_cli("export", spec, "--table", "epochs", "--out", str(target))[0] == 0
    assert len(pd.read_parquet(target)) == 8
    # ... and a format contradicting it is refused in one line, writing nothing.
    target = tmp_path / "x.parquet"
    code, _, err = run_cli("export", spec, "--format", "csv", "--out", str(target))
    assert code == 2 and "does not match the file name 'x.parquet'" in err
    assert err.count("\n") == 1 and not target.exists()


def test_an_interrupted_run_continues_from_its_checkpoint(
    grid_study: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    spec = write(tmp_path / "s.yaml", tiny(db))
    real = archbench.training.train.train
    calls: list[int] = []

    def interrupted(*args: Any, on_epoch_end: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) != 3:  # the first seed of the second configuration
            return real(*args, on_epoch_end=on_epoch_end, **kwargs)

        def stop(metrics: Any, diagnostics: Any) -> bool:
            on_epoch_end(metrics, diagnostics)
            raise KeyboardInterrupt  # Ctrl-C after the first epoch was recorded

        return real(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(archbench.training.train, "train", interrupted)
    code, _, err = run_cli("run", str(spec), *RUN)
    assert code == 130 and "interrupted" in err
    store = ResultsStore(db)
    runs = store.runs(experiment="s")
    assert sorted(runs["status"]) == ["completed", "completed", "failed"]
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert len(store.epochs(run_ids=[int(failed["run_id"])])) == 1

    monkeypatch.setattr(archbench.training.train, "train", real)
    code, out, err = run_cli("run", str(spec), *RUN)
    assert code == 0, err
    assert "1 already done, 1 interrupted trial(s) re-queued" in out
    assert f"(run {failed['run_id']}) (resuming after epoch 1)" in out
    runs = store.runs(experiment="s")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}
    assert runs.groupby(["config_key", "seed"]).size().max() == 1
    resumed = runs[runs["run_id"] == failed["run_id"]].iloc[0]
    assert resumed["attempts"] == 2 and resumed["env"]["resumed_after_epoch"] == 1
    assert sorted(runs["attempts"]) == [1, 1, 1, 2]
    epochs = store.epochs(run_ids=[int(failed["run_id"])])
    assert sorted(epochs["epoch"]) == [1, 2]
    # The resumed run ends exactly where an uninterrupted one does (CPU, one thread).
    reference = ResultsStore(grid_study["db"]).runs(experiment="s")
    ref = reference.set_index(["name", "seed"])["val_err"]
    got = runs.set_index(["name", "seed"])["val_err"]
    pd.testing.assert_series_equal(got.sort_index(), ref.sort_index())

    study = load_study(spec)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]
    assert study_progress(load_spec(spec), study.trials).complete


def test_tpe_study_starts_with_the_baselines(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    data = tiny(
        db,
        name="b",
        variants=[],
        space={
            "family": ["resnet", "plain"],
            "depth": [8],
            "width": [4, 8],
            "recipe": {"lr": {"low": 0.02, "high": 0.2, "log": True}},
        },
        baselines=[
            {"family": "plain", "depth": 8, "width": 4},
            {"family": "resnet", "depth": 8, "width": 8},
        ],
        sampler={"name": "tpe", "seed": 0},
        trials=3,
        seeds=[0],
    )
    data["recipe"]["epochs"] = 1
    spec = write(tmp_path / "b.yaml", data)
    code, out, err = run_cli("run", str(spec), *RUN)
    assert code == 0, err
    study = load_study(spec)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    # (Changed for issue 19: derived depth/width are user attrs, not params.)
    assert trials[0].params == {
        "family": "plain",
        "plain.depth": 8,
        "plain.width": 4,
        "recipe.lr": 0.1,  # the spec's recipe, inside the space
    }
    assert trials[1].params == {
        "family": "resnet",
        "resnet.depth": 8,
        "resnet.width": 8,
        "recipe.lr": 0.1,
    }
    assert trials[1].user_attrs["width"] == 8 and trials[1].user_attrs["depth"] == 8
    assert (
        trials[1].user_attrs["block"] == "basic" and trials[0].user_attrs["block"] == "plain_basic"
    )
    assert "recipe.lr" in trials[2].params
    runs = ResultsStore(db).runs(experiment="b")
    assert len(runs) == 3 and set(runs["status"]) == {"completed"}
    first = runs.sort_values("trial_number")["name"].tolist()[:2]
    assert first == ["plain8_w4", "resnet8_w8"]
    # The store's hyperparameters are what was sampled, not the derived params.
    assert all("depth" not in hp and "family" in hp for hp in runs["hyperparameters"])
    # A rerun neither trains nor enqueues the baselines again.
    code, out, _ = run_cli("run", str(spec), *RUN)
    assert code == 0 and "already complete: 3/3" in out
    assert len(load_study(spec).trials) == 3


def test_nsga2_study_exposes_the_pareto_front(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    data = tiny(
        db,
        name="p",
        variants=[],
        space={"family": ["resnet", "plain"], "depth": [8], "width": [4, 8]},
        objectives=["val_acc", "params"],
        sampler={"name": "nsga2", "seed": 1},
        trials=3,
        seeds=[0],
    )
    data["recipe"]["epochs"] = 1
    spec = write(tmp_path / "p.yaml", data)
    code, _, err = run_cli("run", str(spec), *RUN)
    assert code == 0, err
    study = load_study(spec)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_acc", "params"]
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3
    front = study.best_trials
    assert front
    for trial in done:
        assert trial.values[1] == trial.user_attrs["params"]
    for good in front:  # nothing on the front is dominated
        for other in done:
            assert not (
                other.values[0] >= good.values[0]
                and other.values[1] <= good.values[1]
                and other.values != good.values
            )


def test_pruned_and_diverged_trials_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    data = tiny(
        db,
        name="d",
        variants=[],
        # Grid order is trial order: two good rates, then a hopeless one and an absurd one.
        space={
            "family": "resnet",
            "depth": [8],
            "width": [4],
            "recipe": {"lr": [0.1, 0.2, 1e-5, 1e6]},
        },
        pruner={"name": "median", "startup_trials": 2, "warmup_epochs": 0},
    )
    spec = write(tmp_path / "d.yaml", data)
    code, out, err = run_cli("run", str(spec), *RUN)
    assert code == 0, err
    study = load_study(spec)
    by_lr = {t.user_attrs["label"].split("lr=")[1]: t for t in study.trials}
    assert by_lr["0.1"].state == by_lr["0.2"].state == TrialState.COMPLETE
    assert by_lr["1e-05"].state == TrialState.PRUNED
    assert list(by_lr["1e-05"].intermediate_values) == [1]
    diverged = by_lr["1000000.0"]
    assert diverged.state == TrialState.COMPLETE and diverged.value == 0.0
    assert diverged.user_attrs["diverged"] is True

    runs = ResultsStore(db).runs(experiment="d")
    lr = runs["recipe"].map(lambda r: r["lr"])
    pruned = runs[lr == 1e-5]
    assert list(pruned["status"]) == ["pruned"] and list(pruned["epochs_done"]) == [1]
    assert list(pruned["seed"]) == [0]  # later seeds never start once the first is pruned
    bad = runs[lr == 1e6]
    assert list(bad["status"]) == ["diverged", "diverged"]
    assert all(d["epoch"] == 1 and d["step"] >= 0 for d in bad["diverged_at"])
    assert set(runs[lr < 1]["status"]) - {"pruned"} == {"completed"}
    assert "trial 2 pruned" in out and "4/4 trial(s) finished" in out
    code, out, _ = run_cli("results", str(spec))
    assert code == 0 and "n_diverged" in out


def test_journal_storage_runs_a_study(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    data = tiny(tmp_path / "unused.db", name="j", seeds=[0])
    data["recipe"]["epochs"] = 1
    spec = write(tmp_path / "j.yaml", data)
    code, _, err = run_cli("run", str(spec), "--storage", f"journal:{journal}", *RUN)
    assert code == 0, err
    assert journal.exists() and not (tmp_path / "unused.db").exists()
    runs = ResultsStore(tmp_path / "j.archbench.db").runs(experiment="j")
    assert len(runs) == 2 and set(runs["status"]) == {"completed"}
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(
        study_name="j:default", storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    assert all(HEARTBEAT_ATTR in t.system_attrs for t in study.trials)


def test_stale_journal_trials_are_failed_and_requeued(tmp_path: Path) -> None:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(storage=storage, study_name="x")
    alive, dead = study.ask(), study.ask()
    for trial in (alive, dead):
        trial.suggest_categorical("config", ["a", "b"])
    storage.set_trial_system_attr(alive._trial_id, HEARTBEAT_ATTR, time.time())
    storage.set_trial_system_attr(dead._trial_id, HEARTBEAT_ATTR, time.time() - 100)
    options = RunnerOptions(grace_period=10, max_retry=1)
    assert fail_stale_trials(study, options) == 1
    states = {t.number: t.state for t in study.trials}
    assert states[alive.number] == TrialState.RUNNING and states[dead.number] == TrialState.FAIL
    retry = study.get_trials(states=(TrialState.WAITING,))
    assert len(retry) == 1 and retry[0].params == study.trials[dead.number].params
    assert retry[0].system_attrs["failed_trial"] == dead.number
    assert fail_stale_trials(study, options) == 0


def test_progress_counts_distinct_grid_configurations(tmp_path: Path) -> None:
    spec = parse_spec(tiny(tmp_path / "x.db"))
    entries = grid_entries(spec)
    labels = [e.label for e in entries]
    study = optuna.create_study(direction="maximize")
    done = {"config_key": entries[0].key, "seeds": [0, 1]}
    for _ in range(2):  # one configuration finished twice
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=done))
    progress = study_progress(spec, study.trials)
    assert (progress.total, progress.done, progress.complete) == (2, 1, False)
    assert not progress.can_start and progress.missing == (labels[1],)
    study.enqueue_trial({}, user_attrs={"config_key": entries[1].key, "seeds": [0, 1]})
    progress = study_progress(spec, study.trials)
    assert progress.can_start and progress.waiting == 1 and progress.missing == ()


def test_worker_threads_default_is_fixed_not_load_dependent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pinned old behaviour changed (issue 12): the default was "idle cores / workers", so
    # machine load changed results. It is now a fixed count, whatever the load or env.
    assert worker_threads(3) == 3
    for bad in (0, -1, True, 1.5):
        with pytest.raises(SpecError, match="threads must be an integer >= 1"):
            worker_threads(bad)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert worker_threads() == DEFAULT_THREADS == 1


def test_default_run_is_reproducible_and_records_its_threads(tmp_path: Path) -> None:
    """Same spec, seed, thread count and device: bit-identical metrics in two studies."""
    finals = []
    for name in ("a", "b"):
        data = tiny(
            tmp_path / f"{name}.db", variants=[{"family": "resnet", "depth": 8, "width": 4}]
        )
        data["seeds"] = [0]
        code, _, err = run_cli("run", str(write(tmp_path / f"{name}.yaml", data)), "--quiet")
        assert code == 0, err
        store = ResultsStore(tmp_path / f"{name}.db")
        runs = store.runs(experiment="s")
        assert [env["cpu_threads"] for env in runs["env"]] == [DEFAULT_THREADS]
        epochs = store.epochs(experiment="s")
        finals.append(epochs[["epoch", "train_loss", "val_err", "test_err"]].to_dict("list"))
        store.close()
    assert finals[0] == finals[1]


# -- samplers and pruners: the class each spec name really gets ---------------------------------

# Written out here, not read from the runner's table: the test pins what each name must mean.
EXPECTED_SAMPLERS = {
    # grid enqueues every configuration itself; the sampler is never asked (see make_sampler)
    "grid": optuna.samplers.RandomSampler,
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
EXPECTED_PRUNERS = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}


def _sampled(tmp_path: Path, sampler: str, pruner: str = "none") -> dict[str, Any]:
    if sampler == "grid":
        return tiny(tmp_path / "x.db", pruner={"name": pruner})
    objectives = ["val_acc", "params"] if sampler == "nsga2" else ["val_acc"]
    return tiny(
        tmp_path / "x.db",
        variants=[],
        space={"family": "resnet", "depth": [8], "width": [4]},
        sampler={"name": sampler, "seed": 3},
        trials=2,
        objectives=objectives,
        pruner={"name": pruner},
    )


def test_every_sampler_and_pruner_name_is_tested() -> None:
    from archbench.runner.algorithms import PRUNERS, SAMPLERS

    assert set(SAMPLERS) == set(EXPECTED_SAMPLERS)
    assert set(PRUNERS) == set(EXPECTED_PRUNERS)


@pytest.mark.parametrize("name", sorted(EXPECTED_SAMPLERS))
def test_the_study_gets_the_sampler_the_spec_names(tmp_path: Path, name: str) -> None:
    from archbench.runner.study import create_study

    spec = parse_spec(_sampled(tmp_path, name))
    study = create_study(spec, optuna.storages.InMemoryStorage())
    assert type(study.sampler) is EXPECTED_SAMPLERS[name]


def test_nsga2_population_size_reaches_the_sampler(tmp_path: Path) -> None:
    from archbench.runner.study import create_study

    data = _sampled(tmp_path, "nsga2")
    default = create_study(parse_spec(data), optuna.storages.InMemoryStorage())
    assert default.sampler._population_size == 50  # Optuna's own default
    data["sampler"]["population_size"] = 6
    study = create_study(parse_spec(data), optuna.storages.InMemoryStorage(), worker=1)
    assert study.sampler._population_size == 6


@pytest.mark.parametrize("name", sorted(EXPECTED_PRUNERS))
def test_the_study_gets_the_pruner_the_spec_names(tmp_path: Path, name: str) -> None:
    from archbench.runner.study import create_study

    spec = parse_spec(_sampled(tmp_path, "tpe", name))
    study = create_study(spec, optuna.storages.InMemoryStorage())
    assert type(study.pruner) is EXPECTED_PRUNERS[name]


# -- datasets whose shape comes from their files ----------------------------------------------


def write_image_folder(root: Path, classes: int = 3, per_class: int = 4) -> Path:
    """train/ and test/ with ``classes`` class folders of 12x16 single-colour PNGs."""
    import numpy as np
    from PIL import Image

    for split, n in (("train", per_class), ("test", 2)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                arr = np.full((12, 16, 3), 40 * c + i, dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


def test_a_three_class_image_folder_runs_end_to_end(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images")
    data = tiny(
        tmp_path / "f.db",
        name="folder",
        dataset={"name": "image_folder", "val_size": 3, "options": {"path": str(folder)}},
        recipe={"epochs": 1, "batch_size": 4},
        variants=[{"family": "resnet", "depth": 8, "width": 4}],
        seeds=[0],
    )
    code, _, err = run_cli("run", str(write(tmp_path / "f.yaml", data)), *RUN)
    assert code == 0, err
    with ResultsStore(tmp_path / "f.db") as store:
        runs = store.runs(experiment="folder")
        variants = store.variants()
    assert runs["status"].tolist() == ["completed"]
    spec = json.loads(variants["spec_json"].iloc[0])
    # 3 classes, RGB, 12 px: the shorter side of the first training image
    assert (spec["num_classes"], spec["in_channels"], spec["input_size"]) == (3, 3, 12)
