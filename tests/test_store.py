"""The results store (archbench.store) and storage URLs (archbench.store.storage).

Store tests run on SQLite always and on PostgreSQL when ARCHBENCH_TEST_POSTGRES_URL is set
(each test in its own schema); `.ci/run` starts a server and sets it.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from archbench.errors import ArchbenchError, UnknownNameError
from archbench.store import (
    EPOCH_METRICS,
    SCHEMA_VERSION,
    LeaseLostError,
    ResultsStore,
    SchemaVersionError,
    StoreError,
    config_key,
)
from archbench.store.storage import (
    StorageError,
    create_engine,
    optuna_storage,
    redact,
    resolve_storage,
)

if TYPE_CHECKING:
    from archbench.models.net import NetSpec

# archbench.models.net (torch) is imported inside the helpers, so that the spawned writer processes
# of the concurrency test import this module in a fraction of the time.


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "results" / "store.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(url: str) -> Iterator[ResultsStore]:
    with ResultsStore(url) as s:
        yield s


def make_spec(depth: int = 2, width: int = 16, block: str = "basic", name: str = "") -> NetSpec:
    from archbench.models.net import NetSpec, StageSpec, StemSpec

    return NetSpec(
        stem=StemSpec("cifar", width),
        stages=(StageSpec(block, depth, width), StageSpec(block, depth, 2 * width, stride=2)),
        name=name,
    )


COUNTS = {"params": 100_000, "macs": 20_000_000, "acts": 50_000}


def add_run(
    store: ResultsStore,
    spec: NetSpec | None = None,
    *,
    seed: int = 0,
    experiment: str = "exp",
    profile: str | None = "cpu",
    counts: dict | None = None,
    family: str = "resnet",
    lr: float = 0.1,
    budget: dict | None = None,
) -> int:
    spec = spec or make_spec()
    spec_hash = store.record_variant(spec, family=family, complexity=counts or COUNTS)
    return store.start_run(
        experiment=experiment,
        profile=profile,
        study_name=f"{experiment}-{profile}",
        trial_number=seed,
        spec_hash=spec_hash,
        seed=seed,
        hyperparameters={"lr": lr, "wd": 5e-4},
        recipe={"epochs": 3, "batch_size": 128},
        device="cpu",
        env={"torch": "2.x", "archbench": "0.1.0"},
        budget=budget,
    )


def table_counts(store: ResultsStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            name: conn.execute(sa.text(f"SELECT COUNT(*) FROM archbench_{name}")).scalar_one()
            for name in ("variants", "runs", "epochs", "diagnostics")
        }


# -- round trips --------------------------------------------------------------------------------


def test_round_trip(store: ResultsStore) -> None:
    spec = make_spec(name="tiny_resnet")
    spec_hash = store.record_variant(
        spec,
        family="resnet",
        complexity=COUNTS,
        depth=8,
        width=16,
    )
    assert spec_hash == spec.spec_hash()
    run_id = add_run(store, spec, budget={"metric": "params", "target": 80_000, "tolerance": 0.3})
    for epoch in range(3):
        store.record_epoch(
            run_id,
            {"epoch": epoch, "lr": 0.1, "train_loss": 2.0 - epoch, "test_err": 0.5 - 0.1 * epoch},
        )
    store.record_diagnostics(
        run_id,
        [
            {"epoch": 2, "block": f"stages.0.{i}", "index": i, "grad_norm": 0.5 * i}
            for i in range(4)
        ],
    )
    store.finish_run(
        run_id,
        status="completed",
        final={"test_err": 0.3, "val_err": 0.32, "epochs_done": 3},
        wall_time_s=12.5,
    )

    variants = store.variants()
    assert len(variants) == 1
    row = variants.iloc[0]
    assert row["name"] == "tiny_resnet" and row["family"] == "resnet" and row["block"] == "basic"
    assert row["block_family"] == "resnet"  # the block registry's family of "basic"
    assert (row["depth"], row["width"], row["num_blocks"]) == (8, 16.0, 4)
    assert (row["params"], row["macs"], row["flops"], row["acts"]) == (
        100_000,
        20_000_000,
        40_000_000,
        50_000,
    )
    assert type(spec).from_dict(json.loads(row["spec_json"])) == spec.replace(name="")

    runs = store.runs()
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["run_id"] == run_id and run["status"] == "completed"
    assert (run["test_err"], run["val_err"], run["epochs_done"]) == (0.3, 0.32, 3)
    assert run["hyperparameters"] == {"lr": 0.1, "wd": 5e-4} and run["hp_lr"] == 0.1
    assert run["recipe"] == {"epochs": 3, "batch_size": 128}
    assert run["env"]["torch"] == "2.x" and run["device"] == "cpu"
    assert run["name"] == "tiny_resnet" and run["params"] == 100_000  # joined variant columns
    assert run["budget_error"] == pytest.approx(0.25)  # (100k - 80k) / 80k, signed
    assert (run["budget_metric"], run["budget_target"]) == ("params", 80_000)
    assert run["finished_at"] >= run["started_at"]
    assert str(run["started_at"].tz) == "UTC"
    assert run["config_key"] == config_key(
        spec_hash, {"epochs": 3, "batch_size": 128}, {"lr": 0.1, "wd": 5e-4}
    )

    epochs = store.epochs(experiment="exp")
    assert list(epochs["epoch"]) == [0, 1, 2]
    assert list(epochs["train_loss"]) == [2.0, 1.0, 0.0]
    assert epochs["val_err"].isna().all()  # not given -> NULL
    assert set(epochs["name"]) == {"tiny_resnet"}

    diags = store.diagnostics(run_ids=[run_id])
    assert list(diags["block_index"]) == [0, 1, 2, 3]
    assert list(diags["grad_norm"]) == [0.0, 0.5, 1.0, 1.5]
    assert diags["branch_ratio"].isna().all()
    assert set(diags["block_type"]) == {"basic"}  # the variant's block type, beside the name


def test_dataclass_metrics_are_accepted(store: ResultsStore) -> None:
    @dataclass(frozen=True)
    class EpochMetrics:
        epoch: int
        lr: float
        train_loss: float
        train_err: float
        val_loss: float
        val_err: float
        val_top5_err: float
        test_loss: float
        test_err: float
        test_top5_err: float
        epoch_time_s: float
        train_time_s: float
        images_per_s: float
        peak_mem_mb: float | None

    @dataclass(frozen=True)
    class BlockDiagnostics:
        epoch: int
        block: str
        index: int
        grad_norm: float
        branch_ratio: float

    run_id = add_run(store)
    values = dict.fromkeys(EPOCH_METRICS, 0.25)
    store.record_epoch(run_id, EpochMetrics(epoch=0, **values))
    n = store.record_diagnostics(
        run_id, [BlockDiagnostics(0, f"stages.0.{i}", i, np.float32(1.5), 0.1) for i in range(3)]
    )
    assert n == 3
    epochs = store.epochs()
    assert all(epochs.iloc[0][k] == 0.25 for k in EPOCH_METRICS)
    assert list(store.diagnostics()["grad_norm"]) == [1.5, 1.5, 1.5]
    # The trainer hands the last epoch's metrics as the final ones.
    last = EpochMetrics(epoch=7, **{**values, "test_err": 0.125, "peak_mem_mb": None})
    store.finish_run(run_id, status="completed", final=last, wall_time_s=3.0)
    run = store.run(run_id)
    assert run is not None and run["status"] == "completed"
    assert (run["epochs_done"], run["test_err"], run["train_loss"]) == (7, 0.125, 0.25)
    assert store.run(run_id + 1) is None


def test_nan_becomes_null_and_inf_survives(store: ResultsStore) -> None:
    run_id = add_run(store)
    store.record_epoch(run_id, {"epoch": 0, "train_loss": float("inf"), "val_err": float("nan")})
    store.finish_run(
        run_id,
        status="diverged",
        final={"train_loss": float("nan")},
        diverged_at={"epoch": 0, "step": 17, "loss": float("inf")},
    )
    epoch = store.epochs().iloc[0]
    assert math.isinf(epoch["train_loss"]) and pd.isna(epoch["val_err"])
    run = store.runs().iloc[0]
    assert run["status"] == "diverged"
    assert run["diverged_at"] == {"epoch": 0, "step": 17, "loss": "inf"}


# -- idempotency --------------------------------------------------------------------------------


def test_variant_upsert_is_idempotent_and_drift_raises(store: ResultsStore) -> None:
    spec = make_spec(name="first")
    h1 = store.record_variant(spec, family="resnet", complexity=COUNTS)
    h2 = store.record_variant(spec.replace(name="second"), family="other", complexity=COUNTS)
    assert h1 == h2
    variants = store.variants()
    assert len(variants) == 1 and variants.iloc[0]["name"] == "first"  # the first record stays
    drifted = {**COUNTS, "params": COUNTS["params"] + 1}
    with pytest.raises(StoreError, match=r"already stored with params=100000.*params=100001"):
        store.record_variant(spec, family="resnet", complexity=drifted)
    assert store.variants().iloc[0]["params"] == COUNTS["params"]


def test_a_variant_records_its_blocks_family(store: ResultsStore) -> None:
    """From the block registry (not the variant's family), unless the caller says; a block
    not registered here falls back to the variant's family."""
    h1 = store.record_variant(make_spec(block="preact_basic"), family="mine", complexity=COUNTS)
    h2 = store.record_variant(
        make_spec(depth=3), family="mine", complexity=COUNTS, block_family="x"
    )
    unknown = SpecDouble.of(make_spec(depth=4), block="not_registered_anywhere")
    h3 = store.record_variant(unknown, family="mine", complexity=COUNTS)
    families = store.variants().set_index("spec_hash")["block_family"]
    assert (families[h1], families[h2], families[h3]) == ("preact", "x", "mine")
    assert set(store.runs().columns) >= {"block_family"}
    with pytest.raises(StoreError, match="block_family"):
        store.record_variant(make_spec(depth=5), family="mine", complexity=COUNTS, block_family="")


def test_budgets_belong_to_runs(store: ResultsStore) -> None:
    """One architecture, budget-matched in one experiment, a fixed point in another: each
    run keeps its own budget (schema 1 kept the first experiment's on the variant)."""
    spec = make_spec()
    # A caller's own error figure is accepted; the stored one comes from the stored counts.
    budget = {"metric": "macs", "target": 25e6, "error": -0.19}
    add_run(store, spec, experiment="matched", budget=budget)
    add_run(store, spec, experiment="fixed")
    add_run(store, spec, experiment="other", budget={"metric": "params", "target": 200_000})
    runs = store.runs().set_index("experiment")
    assert runs.loc["matched", "budget_error"] == pytest.approx(-0.2)
    assert runs.loc["matched", "budget_metric"] == "macs"
    assert pd.isna(runs.loc["fixed", "budget_target"]) and pd.isna(
        runs.loc["fixed", "budget_metric"]
    )
    assert runs.loc["other", "budget_error"] == pytest.approx(-0.5)
    summary = store.summary("matched")
    assert summary.loc[0, "budget_target"] == 25e6
    assert set(store.epochs().columns) >= {"budget_metric", "budget_target", "budget_error"}


def test_rerun_maps_to_the_same_run(store: ResultsStore) -> None:
    run_id = add_run(store, seed=3)
    for epoch in range(3):
        store.record_epoch(run_id, {"epoch": epoch, "val_err": 0.5})
    store.finish_run(run_id, status="failed", wall_time_s=1.0)

    again = add_run(store, seed=3)  # the retried trial
    assert again == run_id
    run = store.runs().iloc[0]
    assert run["status"] == "running" and run["attempts"] == 2
    assert pd.isna(run["wall_time_s"]) and pd.isna(run["finished_at"])
    assert len(store.epochs()) == 3  # kept

    store.record_epoch(run_id, {"epoch": 2, "val_err": 0.25})  # the redone epoch replaces
    store.record_epoch(run_id, {"epoch": 3, "val_err": 0.2})
    epochs = store.epochs()
    assert list(epochs["epoch"]) == [0, 1, 2, 3]
    assert list(epochs["val_err"]) == [0.5, 0.5, 0.25, 0.2]

    store.finish_run(run_id, status="completed", final={"val_err": 0.2, "epochs_done": 4})
    assert add_run(store, seed=3) == run_id  # a completed run is returned untouched ...
    run = store.run(run_id)
    assert (run["status"], run["attempts"], run["val_err"]) == ("completed", 2, 0.2)
    spec_hash = make_spec().spec_hash()
    key = {"experiment": "exp", "profile": "cpu", "spec_hash": spec_hash, "seed": 3}
    config = store.runs().iloc[0]["config_key"]
    assert store.start_run(**key, config_key=config, rerun_completed=True) == run_id  # ... or rerun
    assert store.run(run_id)["status"] == "running"

    assert add_run(store, seed=4) != run_id  # another seed is another run
    assert add_run(store, seed=3, lr=0.05) != run_id  # another recipe is another configuration
    assert add_run(store, seed=3, profile="gpu") != run_id
    assert len(store.runs()) == 4


def test_diagnostics_upsert_and_discard_after_resume(store: ResultsStore) -> None:
    run_id = add_run(store)
    for epoch in range(4):
        store.record_epoch(run_id, {"epoch": epoch})
        rows = [{"epoch": epoch, "block": "stages.0.0", "index": 0, "grad_norm": epoch}]
        store.record_diagnostics(run_id, rows)
    store.record_diagnostics(
        run_id, [{"epoch": 1, "block": "stages.0.0", "block_index": 0, "grad_norm": 9}]
    )
    assert list(store.diagnostics()["grad_norm"]) == [0, 9, 2, 3]
    assert store.discard_epochs_after(run_id, 1) == 2  # resumed from the epoch-1 checkpoint
    assert list(store.epochs()["epoch"]) == [0, 1]
    assert list(store.diagnostics()["epoch"]) == [0, 1]


def test_heartbeat_and_stale_runs(store: ResultsStore) -> None:
    alive, dead, done = (add_run(store, seed=s) for s in range(3))
    store.finish_run(done, status="completed")
    past = pd.Timestamp.now(tz="UTC").to_pydatetime() - pd.Timedelta(minutes=10)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE archbench_runs SET heartbeat_at = :t"), {"t": past})
    store.heartbeat(alive)
    assert store.stale_runs(60) == [dead]
    assert store.stale_runs(60, experiment="other") == []
    with pytest.raises(StoreError, match="unknown run_id 999"):
        store.heartbeat(999)


# -- bad input writes nothing -------------------------------------------------------------------


def test_bad_input_raises_and_writes_nothing(store: ResultsStore) -> None:
    run_id = add_run(store)
    store.record_epoch(run_id, {"epoch": 0, "val_err": 0.5})
    before = table_counts(store)
    spec = make_spec(depth=3)
    bad_calls = {
        "unknown status": lambda: store.finish_run(run_id, status="exploded"),
        "running is not a final status": lambda: store.finish_run(run_id, status="running"),
        "unknown epoch key": lambda: store.record_epoch(run_id, {"epoch": 1, "val_acc": 0.5}),
        "epoch missing": lambda: store.record_epoch(run_id, {"val_err": 0.5}),
        "text metric": lambda: store.record_epoch(run_id, {"epoch": 1, "val_err": "low"}),
        "negative epoch": lambda: store.record_epoch(run_id, {"epoch": -1}),
        "unknown final key": lambda: store.finish_run(
            run_id, status="completed", final={"accuracy": 0.9}
        ),
        "unknown run": lambda: store.record_epoch(12345, {"epoch": 0}),
        "bad diagnostics row late in batch": lambda: store.record_diagnostics(
            run_id,
            [{"epoch": 0, "block": "a", "index": 0}, {"epoch": 0, "block": "b", "depth": 1}],
        ),
        "bad budget metric": lambda: add_run(
            store, seed=8, budget={"metric": "flops", "target": 1}
        ),
        "missing count": lambda: store.record_variant(
            spec, family="resnet", complexity={"params": 1, "macs": 2}
        ),
        "unknown variant": lambda: store.start_run(
            experiment="exp", profile="cpu", spec_hash="feedbeef", seed=0
        ),
        "not JSON": lambda: store.start_run(
            experiment="exp",
            profile="cpu",
            spec_hash=make_spec().spec_hash(),
            seed=9,
            hyperparameters={"lr": object()},
        ),
        "unknown status filter": lambda: store.runs(status="done"),
    }
    for what, call in bad_calls.items():
        with pytest.raises(ArchbenchError) as info:
            call()
        assert str(info.value), what
        assert table_counts(store) == before, what
    with pytest.raises(StoreError, match=r"status 'exploded' is not one of \['completed'"):
        store.finish_run(run_id, status="exploded")
    with pytest.raises(StoreError, match=r"unknown key\(s\) \['val_acc'\]; allowed: \["):
        store.record_epoch(run_id, {"epoch": 1, "val_acc": 0.5})
    assert store.runs().iloc[0]["status"] == "running"


# -- queries ------------------------------------------------------------------------------------

RUN_COLUMNS = {
    "run_id", "experiment", "profile", "config_key", "seed", "study_name", "trial_number",
    "spec_hash", "hyperparameters", "recipe", "status", "attempts", "val_err", "test_err",
    "test_top5_err", "train_err", "train_loss", "epochs_done", "diverged_at", "wall_time_s",
    "device", "env", "started_at", "finished_at", "heartbeat_at",
    "budget_metric", "budget_target", "budget_error",
}  # fmt: skip
VARIANT_COLUMNS = {
    "name", "family", "block", "block_family", "depth", "width", "num_blocks", "params",
    "macs", "flops", "acts",
}  # fmt: skip


def test_query_columns_on_empty_and_full_store(store: ResultsStore) -> None:
    def check() -> None:
        assert set(store.variants().columns) == VARIANT_COLUMNS | {
            "spec_hash",
            "spec_json",
            "created_at",
        }
        assert set(store.runs().columns) >= RUN_COLUMNS | VARIANT_COLUMNS
        epochs = store.epochs()
        assert {"run_id", "epoch", *EPOCH_METRICS, "experiment", "seed", "name"} <= set(
            epochs.columns
        )
        assert epochs["epoch"].dtype == "int64" and epochs["val_err"].dtype == "float64"
        diags = store.diagnostics()
        assert {"run_id", "epoch", "block", "block_index", "grad_norm", "branch_ratio"} <= set(
            diags.columns
        )
        assert {"experiment", "profile", "n_variants", "n_runs", "n_completed"} <= set(
            store.experiments().columns
        )

    check()
    run_id = add_run(store)
    store.record_epoch(run_id, {"epoch": 0, "val_err": 0.4})
    store.record_diagnostics(run_id, [{"epoch": 0, "block": "stages.0.0", "index": 0}])
    check()


def test_filters_and_experiments(store: ResultsStore) -> None:
    a = add_run(store, experiment="a", seed=0)
    add_run(store, experiment="a", seed=1, profile="gpu")
    add_run(store, experiment="b", seed=0, spec=make_spec(depth=3))
    store.finish_run(a, status="completed")
    assert list(store.runs(experiment="a")["seed"]) == [0, 1]
    assert list(store.runs(experiment="a", profile="gpu")["seed"]) == [1]
    assert list(store.runs(status="completed")["run_id"]) == [a]
    assert len(store.runs(status=["completed", "running"])) == 3
    assert store.runs(experiment="zzz").empty
    exps = store.experiments()
    assert list(zip(exps["experiment"], exps["profile"], exps["n_runs"])) == [
        ("a", "cpu", 1),
        ("a", "gpu", 1),
        ("b", "cpu", 1),
    ]
    assert list(exps["n_completed"]) == [1, 0, 0]
    assert list(exps["n_running"]) == [0, 1, 1]


def test_summary_math(store: ResultsStore) -> None:
    deep = make_spec(depth=4, name="deep")
    shallow = make_spec(depth=1, name="shallow")
    results = [(deep, [0.10, 0.12, 0.17]), (shallow, [0.20, 0.30])]
    for spec, errors in results:
        for seed, err in enumerate(errors):
            run_id = add_run(store, spec, seed=seed)
            store.finish_run(
                run_id,
                status="completed",
                final={"test_err": err, "val_err": err + 0.01, "epochs_done": 3},
            )
    diverged = add_run(store, shallow, seed=7)
    store.finish_run(diverged, status="diverged", final={"test_err": 0.9})
    add_run(store, shallow, seed=8)  # still running

    summary = store.summary("exp")
    assert list(summary["name"]) == ["deep", "shallow"]  # best mean test error first
    results[1][1].append(1.0)  # the diverged seed counts at error 1.0 (its 0.9 is pre-blow-up)
    for spec, errors in results:
        row = summary[summary["name"] == spec.name].iloc[0]
        assert row["n_seeds"] == len(errors)
        assert row["test_err_mean"] == pytest.approx(np.mean(errors))
        assert row["test_err_std"] == pytest.approx(np.std(errors, ddof=1))
        val = [e + 0.01 if e < 1 else 1.0 for e in errors]
        assert row["val_err_mean"] == pytest.approx(np.mean(val))
        assert row["params"] == COUNTS["params"]
    shallow_row = summary[summary["name"] == "shallow"].iloc[0]
    assert (shallow_row["n_runs"], shallow_row["n_diverged"], shallow_row["n_running"]) == (4, 1, 1)
    with pytest.raises(UnknownNameError, match=r"no runs recorded for experiment 'nope'.*'exp'"):
        store.summary("nope")


def test_export_csv_and_parquet(store: ResultsStore, tmp_path: Path) -> None:
    run_id = add_run(store)
    for epoch in range(2):
        store.record_epoch(run_id, {"epoch": epoch, "val_err": 0.5 - epoch / 10})
    store.finish_run(run_id, status="completed", final={"test_err": 0.3, "val_err": 0.4})

    csv = store.export(tmp_path / "out" / "runs.csv")
    back = pd.read_csv(csv)
    assert list(back["run_id"]) == [run_id] and back["test_err"].iloc[0] == 0.3
    assert json.loads(back["hyperparameters"].iloc[0]) == {"lr": 0.1, "wd": 5e-4}

    parquet = store.export(tmp_path / "epochs.parquet", table="epochs", experiment="exp")
    back = pd.read_parquet(parquet)
    assert list(back["val_err"]) == [0.5, 0.4] and "name" in back.columns

    summary = store.export(tmp_path / "s.bin", format="csv", table="summary", experiment="exp")
    assert pd.read_csv(summary)["test_err_mean"].iloc[0] == 0.3
    with pytest.raises(StoreError, match=r"export format 'xlsx' is not one of"):
        store.export(tmp_path / "runs.xlsx")
    with pytest.raises(StoreError, match=r"format 'csv' does not match the file name 'r.parquet'"):
        store.export(tmp_path / "r.parquet", format="csv")
    assert not (tmp_path / "r.parquet").exists()
    with pytest.raises(StoreError, match=r"export table 'trials' is not one of"):
        store.export(tmp_path / "runs.csv", table="trials")


# -- schema version -----------------------------------------------------------------------------


# A newer store, and an older one with no upgrade path (0: never released); older versions
# with a path are upgraded (test_a_schema_1_store_is_upgraded).
@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0])
def test_schema_version_mismatch(url: str, version: int) -> None:
    with ResultsStore(url) as store:
        add_run(store)
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE archbench_meta SET schema_version = :v"), {"v": version})
    with pytest.raises(
        SchemaVersionError,
        match=rf"schema version {version} .* reads schema version {SCHEMA_VERSION}",
    ):
        ResultsStore(url)


# The schema 1 tables exactly as archbench 0.1 created them (PostgreSQL spelling; SQLite takes
# the same text, with INTEGER for SERIAL). Written out here, not derived from the code.
V1_DDL = """
CREATE TABLE archbench_meta (
    id INTEGER NOT NULL, schema_version INTEGER NOT NULL,
    archbench_version VARCHAR(32) NOT NULL, created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id));
CREATE TABLE archbench_variants (
    spec_hash VARCHAR(64) NOT NULL, name VARCHAR(200) NOT NULL, spec_json TEXT NOT NULL,
    family VARCHAR(100) NOT NULL, block VARCHAR(100) NOT NULL, depth INTEGER NOT NULL,
    width FLOAT NOT NULL, num_blocks INTEGER NOT NULL, params BIGINT NOT NULL,
    macs BIGINT NOT NULL, flops BIGINT NOT NULL, acts BIGINT NOT NULL,
    budget_metric VARCHAR(16), budget_target FLOAT, budget_error FLOAT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, PRIMARY KEY (spec_hash));
CREATE TABLE archbench_runs (
    run_id {serial} NOT NULL, experiment VARCHAR(200) NOT NULL, profile VARCHAR(100) NOT NULL,
    config_key VARCHAR(200) NOT NULL, seed INTEGER NOT NULL, study_name VARCHAR(300),
    trial_number INTEGER, spec_hash VARCHAR(64) NOT NULL, hyperparameters JSON NOT NULL,
    recipe JSON NOT NULL, status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL,
    val_err FLOAT, test_err FLOAT, test_top5_err FLOAT, train_err FLOAT, train_loss FLOAT,
    epochs_done INTEGER, diverged_at JSON, wall_time_s FLOAT, device VARCHAR(200),
    env JSON NOT NULL, started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE, heartbeat_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (run_id),
    CONSTRAINT uq_archbench_runs_config_seed UNIQUE (experiment, profile, config_key, seed),
    CONSTRAINT ck_archbench_runs_status CHECK (status IN
        ('running', 'completed', 'diverged', 'pruned', 'failed')),
    FOREIGN KEY(spec_hash) REFERENCES archbench_variants (spec_hash));
CREATE INDEX ix_archbench_runs_spec_hash ON archbench_runs (spec_hash);
CREATE INDEX ix_archbench_runs_experiment_profile ON archbench_runs (experiment, profile);
CREATE TABLE archbench_epochs (
    run_id INTEGER NOT NULL, epoch INTEGER NOT NULL, lr FLOAT, train_loss FLOAT,
    train_err FLOAT, val_loss FLOAT, val_err FLOAT, val_top5_err FLOAT, test_loss FLOAT,
    test_err FLOAT, test_top5_err FLOAT, epoch_time_s FLOAT, train_time_s FLOAT,
    images_per_s FLOAT, peak_mem_mb FLOAT, PRIMARY KEY (run_id, epoch),
    FOREIGN KEY(run_id) REFERENCES archbench_runs (run_id) ON DELETE CASCADE);
CREATE TABLE archbench_diagnostics (
    run_id INTEGER NOT NULL, epoch INTEGER NOT NULL, block VARCHAR(100) NOT NULL,
    block_index INTEGER NOT NULL, grad_norm FLOAT, branch_ratio FLOAT,
    PRIMARY KEY (run_id, epoch, block),
    FOREIGN KEY(run_id) REFERENCES archbench_runs (run_id) ON DELETE CASCADE);
"""
_T = "'2026-01-01 00:00:00.000000'"  # SQLAlchemy's SQLite spelling; PostgreSQL reads it too
V1_ROWS = f"""
INSERT INTO archbench_meta VALUES (1, 1, '0.1.0', {_T});
INSERT INTO archbench_variants VALUES ('aaa', 'matched', '{{}}', 'resnet', 'basic', 8, 16.0, 3,
    110000, 20000000, 40000000, 5000, 'params', 100000.0, 0.1, {_T});
INSERT INTO archbench_variants VALUES ('bbb', 'fixed', '{{}}', 'resnet', 'basic', 8, 8.0, 3,
    30000, 6000000, 12000000, 2000, NULL, NULL, NULL, {_T});
INSERT INTO archbench_runs (experiment, profile, config_key, seed, spec_hash, hyperparameters,
    recipe, status, attempts, val_err, env, started_at, heartbeat_at)
    VALUES ('old', 'cpu', 'k1', 0, 'aaa', '{{}}', '{{}}', 'completed', 1, 0.25, '{{}}', {_T}, {_T});
INSERT INTO archbench_runs (experiment, profile, config_key, seed, spec_hash, hyperparameters,
    recipe, status, attempts, val_err, env, started_at, heartbeat_at)
    VALUES ('old', 'cpu', 'k2', 0, 'bbb', '{{}}', '{{}}', 'completed', 1, 0.35, '{{}}', {_T}, {_T});
"""


def test_a_schema_1_store_is_upgraded(url: str) -> None:
    engine = create_engine(resolve_storage(url))
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    with engine.begin() as conn:
        for statement in (V1_DDL.format(serial=serial) + V1_ROWS).split(";"):
            if statement.strip():
                conn.execute(sa.text(statement))
        first = conn.execute(sa.text("SELECT MIN(run_id) FROM archbench_runs")).scalar_one()
        conn.execute(
            sa.text(
                f"INSERT INTO archbench_epochs (run_id, epoch, val_err) VALUES ({first}, 1, 0.3)"
            )
        )
    engine.dispose()

    with ResultsStore(url) as store:
        with store.engine.connect() as conn:
            version = conn.execute(sa.text("SELECT schema_version FROM archbench_meta")).scalar()
            variant_columns = {
                c["name"] for c in sa.inspect(conn).get_columns("archbench_variants")
            }
        assert version == SCHEMA_VERSION == 4
        assert not variant_columns & {"budget_metric", "budget_target", "budget_error"}
        # the block registry's family of each variant's block, filled by the upgrade
        assert store.variants()["block_family"].tolist() == ["resnet", "resnet"]
        runs = store.runs(experiment="old").set_index("config_key")
        # each run has its variant's schema 1 budget; nothing else changed
        assert runs.loc["k1", ["budget_metric", "budget_target"]].tolist() == ["params", 100000.0]
        assert runs.loc["k1", "budget_error"] == pytest.approx(0.1)
        assert pd.isna(runs.loc["k2", "budget_metric"]) and pd.isna(runs.loc["k2", "budget_error"])
        assert runs["val_err"].tolist() == [0.25, 0.35] and set(runs["name"]) == {
            "matched",
            "fixed",
        }
        assert store.epochs(experiment="old")["val_err"].tolist() == [0.3]
        assert runs["lease"].tolist() == runs["attempts"].tolist() == [1, 1]  # schema 4
        # and it is an ordinary store of this schema now
        new = add_run(store, experiment="new", budget={"metric": "params", "target": 50_000})
        assert store.run(new)["budget_error"] == pytest.approx(1.0)
    ResultsStore(url, create=False).close()  # opening again finds nothing to upgrade


def test_a_schema_2_store_without_block_families_is_completed(url: str) -> None:
    """Stores written at schema 2 before variants had ``block_family`` (the same unreleased
    version) gain the column on open, filled from the block registry (the variant's family
    for a block not registered here)."""
    with ResultsStore(url) as store:
        add_run(store, make_spec(block="preact_basic"), experiment="early")
        add_run(store, make_spec(), experiment="early", seed=1)
        unknown = SpecDouble.of(make_spec(depth=4), block="not_registered_anywhere")
        spec_hash = store.record_variant(unknown, family="mine", complexity=COUNTS)
        early = dict(experiment="early", profile="cpu", spec_hash=spec_hash, seed=2)
        store.finish_run(store.start_run(**early), status="failed")
        store.start_run(**early)  # claimed again: attempts and lease 2
        with store.engine.begin() as conn:  # back to an early schema 2 store
            conn.execute(sa.text("ALTER TABLE archbench_variants DROP COLUMN block_family"))
            # and back to schema 2 (before runs had weights_path)
            conn.execute(sa.text("ALTER TABLE archbench_runs DROP COLUMN weights_path"))
            # and back to schema 3 (before runs had a lease)
            conn.execute(sa.text("ALTER TABLE archbench_runs DROP COLUMN lease"))
            conn.execute(sa.text("UPDATE archbench_meta SET schema_version = 2"))
            columns = {c["name"] for c in sa.inspect(conn).get_columns("archbench_variants")}
        assert "block_family" not in columns

    with ResultsStore(url, create=False) as store:
        runs = store.runs(experiment="early").set_index("seed")
        assert runs["block_family"].to_dict() == {0: "preact", 1: "resnet", 2: "mine"}
        # schema 3 -> 4: each run's lease is its attempts (the seed-2 run was claimed twice)
        assert runs["lease"].to_dict() == runs["attempts"].to_dict() == {0: 1, 1: 1, 2: 2}
        with store.engine.connect() as conn:
            version = conn.execute(sa.text("SELECT schema_version FROM archbench_meta")).scalar()
        assert version == SCHEMA_VERSION
        add_run(store, make_spec(depth=5), experiment="later")  # an ordinary store again
    ResultsStore(url, create=False).close()  # opening again finds nothing to do


def test_a_schema_2_store_gains_weights_path_on_open(url: str) -> None:
    """Schema 3 adds ``runs.weights_path`` (kept weights): NULL for every earlier run, and
    set_weights_path records an absolute path afterwards; a reopened run forgets it."""
    with ResultsStore(url) as store:
        run_id = add_run(store, experiment="before")
        with store.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE archbench_runs DROP COLUMN weights_path"))
            conn.execute(sa.text("ALTER TABLE archbench_runs DROP COLUMN lease"))
            conn.execute(sa.text("UPDATE archbench_meta SET schema_version = 2"))

    with ResultsStore(url, create=False) as store:
        with store.engine.connect() as conn:
            version = conn.execute(sa.text("SELECT schema_version FROM archbench_meta")).scalar()
        assert version == SCHEMA_VERSION == 4
        assert store.run(run_id)["weights_path"] is None
        store.set_weights_path(run_id, "w/run.pt")
        assert store.run(run_id)["weights_path"] == str(Path("w/run.pt").resolve())
        with pytest.raises(StoreError, match="unknown run_id 999"):
            store.set_weights_path(999, "x.pt")
        store.finish_run(run_id, status="failed")
        again = add_run(store, experiment="before")  # the same run, retried
        assert again == run_id and store.run(run_id)["weights_path"] is None


def test_reader_does_not_create(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(StoreError, match="no results store at"):
        ResultsStore(missing, create=False)
    assert not missing.exists()
    sqlite3.connect(missing).close()  # an empty database file: not a store either
    with pytest.raises(StoreError, match="no archbench results store"):
        ResultsStore(missing, create=False)
    ResultsStore(missing).close()
    ResultsStore(missing, create=False).close()


# -- concurrency --------------------------------------------------------------------------------

EPOCHS_PER_WORKER = 25
BLOCKS = 6


@dataclass(frozen=True)
class _Stage:
    block: str
    depth: int
    width: int


@dataclass(frozen=True)
class SpecDouble:
    """What record_variant reads from a NetSpec, without importing torch in the workers."""

    name: str
    json: str
    hash: str
    stages: tuple[_Stage, ...]
    depth: int

    @classmethod
    def of(cls, spec: NetSpec, block: str | None = None) -> SpecDouble:
        """``spec``'s double; ``block`` replaces every stage's block type (a name the block
        registry need not know)."""
        stages = tuple(_Stage(block or s.block, s.depth, s.width) for s in spec.stages)
        return cls(spec.name, spec.canonical_json(), spec.spec_hash(), stages, spec.depth)

    def canonical_json(self) -> str:
        return self.json

    def spec_hash(self) -> str:
        return self.hash


def _worker(
    url: str, seed: int, spec: SpecDouble, barrier: multiprocessing.synchronize.Barrier
) -> None:
    """One writer process: the same variant and a shared run as the other, plus its own run."""
    barrier.wait(timeout=60)
    with ResultsStore(url) as store:  # both create the schema at once
        # block_family given: looking it up would import the blocks (torch) in each worker.
        spec_hash = store.record_variant(
            spec, family="resnet", complexity=COUNTS, block_family="resnet"
        )
        runs = [
            store.start_run(experiment="mp", profile="cpu", spec_hash=spec_hash, seed=s)
            for s in (seed, 100)  # seed 100: both processes open the same run
        ]
        for epoch in range(EPOCHS_PER_WORKER):
            for run_id in list(runs):
                rows = [
                    {"epoch": epoch, "block": f"stages.0.{i}", "index": i, "grad_norm": i}
                    for i in range(BLOCKS)
                ]
                try:
                    store.record_epoch(run_id, {"epoch": epoch, "val_err": 1.0 / (epoch + 1)})
                    store.record_diagnostics(run_id, rows)
                    store.heartbeat(run_id)
                except LeaseLostError:  # the other process claimed the shared run after us
                    assert run_id == runs[1]
                    runs.remove(run_id)
            store.runs(experiment="mp")  # a reader in the mix
        store.finish_run(runs[0], status="completed", final={"val_err": 0.04})


def test_two_processes_write_concurrently(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    spec = SpecDouble.of(make_spec(name="shared"))
    procs = [ctx.Process(target=_worker, args=(url, seed, spec, barrier)) for seed in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with ResultsStore(url) as store:
        runs = store.runs(experiment="mp")
        assert sorted(runs["seed"]) == [1, 2, 100]
        assert store.variants()["spec_hash"].tolist() == [make_spec().spec_hash()]
        epochs = store.epochs(experiment="mp")
        assert len(epochs) == 3 * EPOCHS_PER_WORKER  # the shared run's epochs not duplicated
        assert len(store.diagnostics(experiment="mp")) == 3 * EPOCHS_PER_WORKER * BLOCKS
        assert set(runs[runs["seed"] != 100]["status"]) == {"completed"}


def test_sqlite_writer_waits_for_a_held_lock_and_readers_do_not_block(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = ResultsStore(path)
    run_id = add_run(store)
    # A reader mid-transaction (e.g. optuna-dashboard): WAL lets the writer go on.
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM archbench_runs").fetchone()
    store.record_epoch(run_id, {"epoch": 0})
    reader.execute("COMMIT")
    # Another writer holding the lock for a moment: the store waits instead of failing.
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    start = time.perf_counter()
    store.record_epoch(run_id, {"epoch": 1})
    waited = time.perf_counter() - start
    release.join()
    assert waited >= 0.3
    assert list(store.epochs()["epoch"]) == [0, 1]
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


# -- storage URLs -------------------------------------------------------------------------------


def test_resolve_storage_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain = resolve_storage("results/q.db")
    assert plain.kind == "sqlite"
    assert plain.store_url == plain.optuna_url == f"sqlite:///{tmp_path}/results/q.db"
    assert resolve_storage("sqlite:///results/q.db") == plain  # relative -> absolute

    journal = resolve_storage("journal:results/q.log")
    assert journal.kind == "journal" and journal.optuna_url is None
    assert journal.journal_path == tmp_path / "results" / "q.log"
    assert journal.store_url == f"sqlite:///{tmp_path}/results/q.archbench.db"

    pg = resolve_storage("postgres://bob:s3cret@db.example:5432/bench")
    assert pg.kind == "postgresql"
    assert pg.store_url == pg.optuna_url == "postgresql+psycopg2://bob:s3cret@db.example:5432/bench"
    assert "s3cret" not in str(pg) and "s3cret" not in pg.redacted_store_url

    assert resolve_storage(":memory:").kind == "memory"
    override = resolve_storage("journal:q.log", store_url="other.db")
    assert override.store_url == f"sqlite:///{tmp_path}/other.db"
    for bad, message in [
        ("", "empty storage value"),
        ("journal:", "journal storage needs a file path"),
        (str(tmp_path), "is a directory"),
        ("sqlite:///file:x?mode=memory&uri=true", "unsupported SQLite URL"),
    ]:
        with pytest.raises(StorageError, match=message):
            resolve_storage(bad)


def test_redact() -> None:
    assert redact("postgresql://bob:s3cret@host/db") == "postgresql://bob:***@host/db"
    assert redact(sa.make_url("postgresql+psycopg2://bob:p%40ss@host:5/db")) == (
        "postgresql+psycopg2://bob:***@host:5/db"
    )
    assert redact("postgresql://host/db?user=bob&password=s3cret") == (
        "postgresql://host/db?user=bob&password=***"
    )
    assert redact("postgresql://bob@host/db") == "postgresql://bob@host/db"
    assert redact("results/q.db") == "results/q.db"


def test_memory_store_is_shared_within_the_engine() -> None:
    store = ResultsStore(":memory:")
    add_run(store)
    assert len(store.runs()) == 1
    store.close()


def test_optuna_shares_the_sqlite_file_and_its_cli_lists_the_study(tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = tmp_path / "both.db"
    storage = resolve_storage(path)
    store = ResultsStore(storage)
    study = optuna.create_study(study_name="coexist", storage=optuna_storage(storage))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    add_run(store, experiment="coexist")
    store.close()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"studies", "trials", "archbench_runs", "archbench_meta"} <= tables
    out = subprocess.run(
        [Path(sys.executable).parent / "optuna", "study-names", "--storage", storage.optuna_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "coexist" in out
    assert ResultsStore(path, create=False).runs()["experiment"].tolist() == ["coexist"]


def test_journal_storage(tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = resolve_storage(f"journal:{tmp_path}/j/study.log")
    study = optuna.create_study(study_name="j", storage=optuna_storage(storage))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert (tmp_path / "j" / "study.log").exists()
    with ResultsStore(storage) as store:
        add_run(store)
    assert (tmp_path / "j" / "study.archbench.db").exists()
    with pytest.raises(StorageError, match="journal storage has no Optuna heartbeats"):
        optuna_storage(storage, heartbeat_interval=10)


def test_engine_can_be_passed_in(tmp_path: Path) -> None:
    engine = create_engine(str(tmp_path / "e.db"))
    store = ResultsStore(engine)
    add_run(store)
    store.close()  # does not dispose an engine it did not create
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM archbench_runs")).scalar_one() == 1
    engine.dispose()
