"""Experiment trackers (``--log``): what is written is read back with the tools' own readers
(TensorBoard's ``EventAccumulator``, ``MlflowClient``); kept weights and ``archbench eval``."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from archbench.cli import main
from archbench.registry import LOGGERS
from archbench.store import ResultsStore
from archbench.store.schema import variants as variants_table
from archbench.tracking import ExperimentLogger, TrackerError, Trackers, parse_target

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

TRAIN = ["train", "resnet8", "--dataset", "digits", "--epochs", "2", "--batch-size", "64"]
TRAIN += ["--train-subset", "300", "--diagnostics-every", "0", "--quiet"]


VARIANTS = variants_table.name


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def write_spec(tmp_path: Path, *, variants: int = 2, seeds: tuple[int, ...] = (0,)) -> Path:
    data = {
        "name": "tracked",
        "dataset": {"name": "digits", "val_size": 100, "train_subset": 400},
        "recipe": {"epochs": 2, "batch_size": 64, "lr": 0.1, "schedule": "cosine"},
        "variants": [{"family": f, "depth": 8, "width": 4} for f in ("resnet", "plain")[:variants]],
        "seeds": list(seeds),
        "storage": str(tmp_path / "t.db"),
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tb_scalars(folder: Path) -> tuple[dict[str, dict[int, float]], Any]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    scalars = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    return scalars, acc


def tb_text(acc: Any, tag: str) -> str:
    return acc.Tensors(f"{tag}/text_summary")[-1].tensor_proto.string_val[0].decode()


# -- the CLI end to end ------------------------------------------------------------------------


@pytest.mark.integration
def test_run_with_workers_logs_every_run_to_tensorboard_and_mlflow_and_keeps_weights(
    tmp_path: Path,
) -> None:
    """Two worker processes, each logging its own runs; every run's per-epoch metrics, config
    and final results read back equal the store's; each run's kept weights re-evaluate to
    exactly the stored errors."""
    from mlflow.tracking import MlflowClient

    spec = write_spec(tmp_path, variants=2)
    tb, ml = tmp_path / "tb", f"sqlite:///{tmp_path / 'ml.db'}"
    code, out, err = cli(
        [
            *("run", str(spec), "--workers", "2", "--threads", "1", "--quiet", "--keep-weights"),
            *("--log", f"tensorboard:{tb}", "--log", f"mlflow:{ml}"),
        ]
    )
    assert code == 0, err
    assert "WARNING" not in err, err  # no tracker failed
    with ResultsStore(tmp_path / "t.db", create=False) as store:
        runs = store.runs(experiment="tracked")
        epochs = store.epochs(experiment="tracked")
    assert len(runs) == 2 and set(runs["status"]) == {"completed"}
    client = MlflowClient(tracking_uri=ml)
    experiment = client.get_experiment_by_name("tracked")
    logged = {
        int(r.data.tags["archbench.run_id"]): r
        for r in client.search_runs([experiment.experiment_id])
    }
    assert sorted(logged) == sorted(runs["run_id"])
    workers = set()
    for row in runs.itertuples():
        mine = epochs[epochs["run_id"] == row.run_id].set_index("epoch")
        label = f"run{row.run_id}_{row.name}_seed{row.seed}"
        # TensorBoard: per-epoch scalars, final results, config
        scalars, acc = tb_scalars(tb / "tracked" / "default" / label)
        for metric in ("train_loss", "val_err", "test_err", "lr"):
            assert scalars[metric] == pytest.approx(mine[metric].to_dict(), rel=1e-6)
        assert scalars["final/test_err"] == {2: pytest.approx(row.test_err, rel=1e-6)}
        config = json.loads("\n".join(x[4:] for x in tb_text(acc, "config").splitlines()))
        assert config["run_id"] == row.run_id and config["recipe"]["lr"] == 0.1
        assert tb_text(acc, "status") == "completed"
        # MLflow: the same, with the run's params and status
        run = logged[row.run_id]
        assert run.info.status == "FINISHED" and run.info.run_name == label
        assert run.data.tags["archbench.status"] == "completed"
        assert run.data.params["recipe.lr"] == "0.1" and run.data.params["label"] == row.name
        history = client.get_metric_history(run.info.run_id, "val_err")
        assert {m.step: m.value for m in history} == mine["val_err"].to_dict()
        assert run.data.metrics["final/test_err"] == row.test_err
        workers.add(row.env["worker"])
        # kept weights: re-evaluated exactly
        assert row.weights_path and Path(row.weights_path).is_file()
        code, out, err = cli(["eval", str(row.run_id), "--storage", str(tmp_path / "t.db")])
        assert code == 0, out + err
        assert "identical to the stored errors" in out
        assert f"{100 * row.test_err:.2f}%" in out


def test_train_logs_to_tensorboard_and_mlflow(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    tb, ml = tmp_path / "tb", f"sqlite:///{tmp_path / 'ml.db'}"
    result = tmp_path / "r.json"
    code, _, err = cli(
        [*TRAIN, "--json", str(result), "--log", f"tensorboard:{tb}", "--log", f"mlflow:{ml}"]
    )
    assert code == 0, err
    written = json.loads(result.read_text())
    test_err = {e["epoch"]: e["test_err"] for e in written["epochs"]}
    scalars, acc = tb_scalars(tb / "train" / "resnet8_seed0")
    assert scalars["test_err"] == pytest.approx(test_err, rel=1e-6)
    assert scalars["final/epochs_done"] == {2: 2.0}
    assert '"dataset": "digits"' in tb_text(acc, "config")
    client = MlflowClient(tracking_uri=ml)
    (run,) = client.search_runs([client.get_experiment_by_name("archbench-train").experiment_id])
    history = client.get_metric_history(run.info.run_id, "test_err")
    assert {m.step: m.value for m in history} == test_err
    assert run.data.params["recipe.epochs"] == "2" and run.info.status == "FINISHED"


def test_a_run_trained_again_replaces_its_tensorboard_curve(tmp_path: Path) -> None:
    """The same run logged twice (a retry from scratch) holds each epoch once: the writer's
    purge_step drops the earlier attempt's events (a resume purges only after its epoch)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = tmp_path / "tb"
    for _ in range(2):
        assert cli([*TRAIN, "--log", f"tensorboard:{tb}"])[0] == 0
    folder = tb / "train" / "resnet8_seed0"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert [e.step for e in acc.Scalars("test_err")] == [1, 2]


# -- bad input: one line, exit 2, before any trial ---------------------------------------------


def test_a_missing_tracker_package_is_one_line_before_any_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import archbench.tracking.base as base

    real = base._importable
    monkeypatch.setattr(base, "_importable", lambda m: m != "mlflow" and real(m))
    spec = write_spec(tmp_path, variants=1)
    for argv in (
        ["run", str(spec), "--log", "mlflow:sqlite:///x.db"],
        ["validate", str(spec), "--log", "mlflow:sqlite:///x.db"],
        [*TRAIN, "--log", "mlflow:sqlite:///x.db"],
    ):
        code, _, err = cli(argv)
        assert code == 2 and "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "--log mlflow needs `pip install 'archbench[mlflow]'`" in lines[0]
    assert not (tmp_path / "t.db").exists()  # nothing written, nothing trained


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tensorboard", "expected KIND:TARGET"),
        ("wandb:project", "unknown logger 'wandb'"),
        ("tensorbord:runs", "did you mean 'tensorboard'"),
        ("mlflow:", "give a target after 'mlflow:'"),
    ],
)
def test_bad_log_values_are_refused_naming_what_is_allowed(value: str, message: str) -> None:
    with pytest.raises(TrackerError, match=message):
        parse_target(value)


def test_a_tensorboard_target_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    code, _, err = cli([*TRAIN, "--log", f"tensorboard:{tmp_path / 'f'}"])
    assert code == 2 and "is a file; give a folder" in err


def test_an_mlflow_store_that_cannot_be_opened_stops_run_before_any_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow >= 3.7 refuses its file store unless told otherwise: said in one line before
    the first trial, not found out as a warning in every run."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    spec = write_spec(tmp_path, variants=1)
    code, out, err = cli(["run", str(spec), "--log", f"mlflow:file://{tmp_path / 'mlruns'}"])
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "cannot be used" in err
    assert "running" not in out
    assert not (tmp_path / "t.db").exists()  # stopped before the study was set up


# -- a tracker's failure never breaks the run; plugins -----------------------------------------


class Recording(ExperimentLogger):
    """Writes every call to a JSON-lines file (the target)."""

    def _write(self, *item: Any) -> None:
        with open(self.target, "a") as f:
            f.write(json.dumps(item, default=str) + "\n")

    def start_run(self, config: Mapping[str, Any]) -> None:
        self._write("start_run", config["label"], config["seed"])

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        self._write("log_epoch", step, metrics["test_err"])

    def finish_run(self, final: Mapping[str, Any]) -> None:
        self._write("finish_run", final["status"], final.get("epochs_done"))


class Broken(ExperimentLogger):
    calls = 0

    def start_run(self, config: Mapping[str, Any]) -> None:
        pass

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        Broken.calls += 1
        raise ConnectionError("tracking server went away")

    def finish_run(self, final: Mapping[str, Any]) -> None:
        raise ConnectionError("still away")


def test_a_failing_tracker_is_warned_about_once_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = tmp_path / "calls.jsonl"
    Broken.calls = 0
    with LOGGERS.registered("broken", Broken), LOGGERS.registered("recording", Recording):
        trackers = Trackers.from_targets(["broken:x", f"recording:{record}"])
        with caplog.at_level(logging.WARNING):
            for seed in (0, 1):
                with trackers.run({"label": "net", "seed": seed}) as run:
                    for epoch in (1, 2):
                        run.log_epoch({"epoch": epoch, "test_err": 0.5 / epoch})
                    run.finish("completed", {"epoch": 2, "test_err": 0.25})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tracking server went away" in warnings[0].getMessage()
    assert Broken.calls == 2  # once per run: skipped for the rest of the run after failing
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls == [
        ["start_run", "net", 0],
        ["log_epoch", 1, 0.5],
        ["log_epoch", 2, 0.25],
        ["finish_run", "completed", 2],
        ["start_run", "net", 1],
        ["log_epoch", 1, 0.5],
        ["log_epoch", 2, 0.25],
        ["finish_run", "completed", 2],
    ]


def test_a_run_that_raises_is_finished_as_failed(tmp_path: Path) -> None:
    record = tmp_path / "calls.jsonl"
    with LOGGERS.registered("recording", Recording):
        trackers = Trackers.from_targets([f"recording:{record}"])
        with pytest.raises(KeyboardInterrupt), trackers.run({"label": "n", "seed": 0}):
            raise KeyboardInterrupt
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls[-1][:2] == ["finish_run", "failed"]


def test_a_plugin_tracker_from_an_entry_point_logs_archbench_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_tracker.py").write_text(
        "from archbench.registry import LOGGERS\n"
        "from tests.test_tracking import Recording\n"
        "LOGGERS.add('recording', Recording, description='calls as JSON lines')\n"
    )
    info = site / "my_tracker-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tracker\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[archbench.loggers]\nrecording = my_tracker\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    monkeypatch.setattr(LOGGERS, "_loaded", False)
    record = tmp_path / "calls.jsonl"
    try:
        code, _, err = cli([*TRAIN, "--log", f"recording:{record}"])
        assert code == 0, err
        assert LOGGERS.entry("recording").source == "my-tracker"
    finally:
        LOGGERS.remove("recording")
        sys.modules.pop("my_tracker", None)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [c[0] for c in calls] == ["start_run", "log_epoch", "log_epoch", "finish_run"]
    assert calls[0][1:] == ["resnet8", 0] and calls[-1][1:] == ["completed", 2]


# -- kept weights and eval: bad input ----------------------------------------------------------


def test_eval_of_a_run_without_kept_weights_says_how_to_keep_them(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, variants=1)
    assert cli(["run", str(spec), "--quiet", "--threads", "1"])[0] == 0
    code, _, err = cli(["eval", "1", "--storage", str(tmp_path / "t.db")])
    assert code == 2 and "has no kept weights" in err and "--keep-weights" in err
    code, _, err = cli(["eval", "1"])
    assert code == 2 and "give --storage" in err
    code, _, err = cli(["eval", str(spec), "--label", "resnet8_w4", "--seed", "7"])
    assert code == 2 and "no run with seed 7; seeds: [0]" in err
    code, _, err = cli(["eval", str(spec), "--label", "nope", "--seed", "0"])
    assert code == 2 and "no variant labelled 'nope'" in err and "resnet8_w4" in err
    code, _, err = cli(["eval", "99", "--storage", str(tmp_path / "t.db")])
    assert code == 2 and "no run 99" in err


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    from archbench.models.presets import get_preset
    from archbench.training.weights import WeightsError, load_weights, save_weights

    small = get_preset("resnet8", num_classes=10, in_channels=1, input_size=8)
    from archbench.models.net import build_net

    path = save_weights(build_net(small), tmp_path / "w.pt", spec_hash=small.spec_hash())
    other = get_preset("resnet14", num_classes=10, in_channels=1, input_size=8)
    with pytest.raises(WeightsError, match="belongs to variant"):
        load_weights(build_net(other), path, spec_hash=other.spec_hash())
    with pytest.raises(WeightsError, match="does not fit the net"):
        load_weights(build_net(other), path)
    (tmp_path / "bad.pt").write_bytes(b"not a weights file")
    with pytest.raises(WeightsError, match="cannot be read"):
        load_weights(build_net(small), tmp_path / "bad.pt")
    net = build_net(small)
    assert load_weights(net, path, spec_hash=small.spec_hash()) == {}


def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path) -> None:
    """Found by its archbench.run_key tag: the epochs after the checkpoint extend the earlier
    attempt's curve; a run started from scratch is a new MLflow run."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    config = {"experiment": "e", "label": "net", "seed": 0, "run_key": "e:p:k:seed0"}
    trackers = Trackers.from_targets([f"mlflow:{uri}"])
    with trackers.run(config) as run:  # killed after epoch 1: never finished
        run.log_epoch({"epoch": 1, "val_err": 0.5})
        run.finished = True  # as if the process died here
    with trackers.run({**config, "resumed_after_epoch": 1}) as run:
        run.log_epoch({"epoch": 2, "val_err": 0.25})
        run.finish("completed", {"epoch": 2, "val_err": 0.25})
    with trackers.run(config) as run:  # trained again from scratch
        run.finish("completed", {"epoch": 2, "val_err": 0.25})
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("e").experiment_id], order_by=["attributes.start_time"]
    )
    assert len(runs) == 2
    history = client.get_metric_history(runs[0].info.run_id, "val_err")
    assert {m.step: m.value for m in history} == {1: 0.5, 2: 0.25}
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["archbench.resumed_after_epoch"] == "1"


def test_eval_reproduces_a_kept_run_and_says_when_weights_no_longer_match(tmp_path: Path) -> None:
    """In-process run with --keep-weights: eval by experiment, label and seed gives the
    stored errors exactly; weights changed behind its back give a stated difference, exit 1."""
    import torch

    spec = write_spec(tmp_path, variants=1)
    assert cli(["run", str(spec), "--quiet", "--threads", "1", "--keep-weights"])[0] == 0
    code, out, err = cli(["eval", str(spec), "--label", "resnet8_w4", "--seed", "0", "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["matches"] and result["now"] == result["stored"]
    assert result["stored"]["test_err"] is not None and result["stored"]["val_err"] is not None
    path = Path(result["weights_path"])
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = {
        k: torch.zeros_like(v) if v.is_floating_point() else v
        for k, v in payload["state_dict"].items()
    }
    torch.save(payload, path)
    code, out, _ = cli(["eval", str(spec), "--label", "resnet8_w4", "--seed", "0"])
    assert code == 1 and "differs from the stored errors" in out
    # A stored spec edited after the run no longer builds its hash: refused.
    import sqlite3

    with sqlite3.connect(tmp_path / "t.db") as db:
        stored = json.loads(db.execute(f"SELECT spec_json FROM {VARIANTS}").fetchone()[0])
        stored["zero_init_last"] = not stored["zero_init_last"]
        db.execute(f"UPDATE {VARIANTS} SET spec_json = ?", (json.dumps(stored),))
    code, _, err = cli(["eval", str(spec), "--label", "resnet8_w4", "--seed", "0"])
    assert code == 2 and "its stored JSON was changed after the run" in err and err.count("\n") == 1


def test_train_with_a_failing_tracker_completes_and_logs_to_the_others(tmp_path: Path) -> None:
    tb = tmp_path / "tb"
    with LOGGERS.registered("broken", Broken):
        code, out, err = cli([*TRAIN, "--log", "broken:x", "--log", f"tensorboard:{tb}"])
    assert code == 0 and out.startswith("completed:"), err
    scalars, _ = tb_scalars(tb / "train" / "resnet8_seed0")
    assert sorted(scalars["test_err"]) == [1, 2]


def test_eval_refuses_a_run_whose_block_default_changed_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept by a version that did not pin the dropout shortcut's 'inverted' (its default was
    inverted dropout then): the stored spec lacks it, so this version builds the paper's
    block from it under another hash. eval names the pinned param instead of reporting the
    old weights' errors on the new net."""
    from archbench.models.blocks.gating import DropoutShortcutParams

    path = write_spec(tmp_path, variants=1)
    data = yaml.safe_load(path.read_text())
    data["variants"] = [
        {
            "family": "resnet_variant",
            "depth": 8,
            "width": 4,
            "params": {"block": "basic_dropout_shortcut"},
            "label": "drop",
        }
    ]
    path.write_text(yaml.safe_dump(data))
    with monkeypatch.context() as earlier:
        earlier.setattr(DropoutShortcutParams, "PINNED", ())
        assert cli(["run", str(path), "--quiet", "--threads", "1", "--keep-weights"])[0] == 0
    code, _, err = cli(["eval", str(path), "--label", "drop", "--seed", "0"])
    assert code == 2 and "pins stages[0].params.inverted (stored: -, now: False)" in err
    assert "a block default changed since the run" in err and err.count("\n") == 1
