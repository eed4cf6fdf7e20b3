"""Seeds until the question is answered (issue 17), the runner: the ``question`` section
(validated with one-line errors; a spec without one runs as before), rounds derived from the
store, racing that stops a dominated configuration's seeds, a kill -9 in the middle of a round
resumed with every seed trained once, and two workers sharing rounds. Tiny specs on digits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from archbench.errors import DataError, SpecError
from archbench.runner.spec import parse_spec
from archbench.store import ResultsStore

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
FOUR = [
    {"family": "resnet", "depth": 8, "width": 4},
    {"family": "resnet", "depth": 8, "width": 5},
    {"family": "plain", "depth": 8, "width": 4},
    {"family": "plain", "depth": 8, "width": 5},
]


def spec_data(storage: Path | str, question: dict[str, Any] | None, **changes: Any) -> dict:
    data: dict[str, Any] = {
        "name": "q",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 1, "batch_size": 64, "lr": 0.1, "schedule": "cosine"},
        "variants": FOUR[:3],
        "seeds": [0],
        "storage": str(storage),
    }
    if question is not None:
        data["question"] = question
    data.update(changes)
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- the section ------------------------------------------------------------------------------


def test_a_spec_without_a_question_has_none_and_one_with_it_parses() -> None:
    assert parse_spec(spec_data("x.db", None)).question is None
    q = parse_spec(
        spec_data("x.db", {"compare": "reference", "reference": "resnet8_w4", "max_seeds": 9})
    ).question
    assert q.metric == "test_err" and q.max_seeds == 9 and q.delta == pytest.approx(0.005)
    assert q.planned_seeds([0]) == tuple(range(9))
    assert q.planned_seeds([7, 3]) == (7, 3, 8, 9, 10, 11, 12, 13, 14)
    assert q.label_pairs(["resnet8_w4", "plain8_w4"]) == [("plain8_w4", "resnet8_w4")]


@pytest.mark.parametrize(
    ("question", "changes", "message"),
    [
        ({"compare": "reference", "reference": "nope"}, {}, "unknown variant label 'nope'"),
        ({"compare": "pairs", "pairs": [["resnet8_w4", "x"]]}, {}, "unknown variant label 'x'"),
        ({"compare": "reference"}, {}, "needs 'reference'"),
        ({"compare": "all", "min_seeds": 5, "max_seeds": 4}, {}, "max_seeds 4 is below"),
        ({"compare": "all", "alpha": 0.7}, {}, "alpha must be in (0, 0.5]"),
        ({"compare": "all", "smallest_difference_pp": 0}, {}, "smallest_difference_pp"),
        ({"compare": "all", "per_round": 0}, {}, "per_round must be >= 1"),
        ({"compare": "all", "max_seeds": 30}, {}, "max_seeds must be <= 20"),
        ({"compare": "all", "metric": "loss"}, {}, "'metric' must be one of"),
        ({"compare": "some"}, {}, "'compare' must be one of"),
        ({"compare": "pairs", "pairs": "a,b"}, {}, "list of [label, label] pairs"),
        ({"compare": "pairs", "pairs": [["plain8_w4", "plain8_w4"]]}, {}, "with itself"),
        ({"compare": "all", "tail": 1}, {}, "unknown key 'tail'"),
        ({"compare": "all"}, {"pruner": {"name": "median"}}, "use pruner 'none'"),
        (
            {"compare": "all", "min_seeds": 2, "max_seeds": 2},
            {"seeds": [0, 1, 2]},
            "more than question",
        ),
        (
            {"compare": "all"},
            {
                "sampler": {"name": "tpe"},
                "trials": 3,
                "variants": [],
                "space": {"family": "resnet"},
            },
            "use sampler 'grid'",
        ),
    ],
)
def test_a_bad_question_is_one_line_naming_the_value(
    question: dict, changes: dict, message: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec_data("x.db", question, **changes), where="q.yaml")
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("q.yaml")


def test_the_cli_refuses_a_bad_question_with_exit_code_2(tmp_path: Path) -> None:
    from tests.test_study import run_cli

    spec = write(
        tmp_path / "q.yaml",
        spec_data(tmp_path / "q.db", {"compare": "reference", "reference": "nope"}),
    )
    code, _out, err = run_cli("validate", str(spec))
    assert code == 2 and "unknown variant label 'nope'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_validate_says_when_no_look_can_decide_the_question(tmp_path: Path) -> None:
    """3 comparisons at alpha 0.05: the exact test's smallest p, 2/2^n, is below 0.05/3 from
    7 seeds on; a plan that stops at 6 trains every seed and can only end open."""
    from tests.test_study import run_cli

    for max_seeds, said in ((6, True), (7, False)):
        question = {"compare": "all", "min_seeds": 3, "max_seeds": max_seeds}
        spec = write(tmp_path / "q.yaml", spec_data(tmp_path / "q.db", question))
        code, out, err = run_cli("validate", str(spec))
        assert code == 0, err
        note = "no look can decide its 3 comparison(s): the exact test needs at least 7 seeds"
        assert (note in out + err) is said, out + err


# -- racing, end to end with made-up training outcomes ----------------------------------------

# Each configuration's test error by seed: resnet8_w4 best, resnet8_w5 within noise of it,
# plain8_w4 far worse, plain8_w5 a coin toss against plain8_w4.
_RNG = np.random.default_rng(0)
OUTCOMES = {
    "resnet8_w4": 0.20 + _RNG.normal(0, 0.004, 20),
    "resnet8_w5": 0.20 + _RNG.normal(0, 0.004, 20),
    "plain8_w4": 0.60 + _RNG.normal(0, 0.05, 20),
    "plain8_w5": 0.60 + _RNG.normal(0, 0.05, 20),
}


def _fake_train(self: Any, trial: Any, plan: Any, seed: int, *args: Any, **kwargs: Any) -> Any:
    from archbench.training.results import EpochMetrics, TrainResult

    err = float(OUTCOMES[plan.variant.label][seed])
    val = err - (0.01 if plan.variant.label == "resnet8_w4" else 0.0)
    m = EpochMetrics(1, 0.1, 1.0, err, 1.0, val, val, 1.0, err, err, 0.01, 0.01, 1e4, None)
    return TrainResult("completed", [m], [], m, None, 0.01, "cpu", {}), set()


def _seeds_by_label(db: Path, name: str = "q") -> dict[str, list[int]]:
    with ResultsStore(db, create=False) as store:
        runs = store.runs(experiment=name)
    assert not runs.duplicated(["config_key", "seed"]).any()
    return {str(label): sorted(int(s) for s in g["seed"]) for label, g in runs.groupby("name")}


def test_racing_stops_seeds_for_a_dominated_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archbench.runner.objective import Objective
    from tests.test_study import run_cli

    monkeypatch.setattr(Objective, "_train", _fake_train)
    question = {
        "compare": "pairs",
        "pairs": [
            ["resnet8_w4", "plain8_w4"],
            ["plain8_w4", "plain8_w5"],
            ["resnet8_w4", "resnet8_w5"],
        ],
        "smallest_difference_pp": 0.1,
        "min_seeds": 3,
        "max_seeds": 11,
        "per_round": 2,
    }
    db = tmp_path / "q.db"
    spec = write(tmp_path / "q.yaml", spec_data(db, question, variants=FOUR))
    code, out, err = run_cli("run", str(spec), "--quiet", "--threads", "1")
    assert code == 0, out + err
    seeds = _seeds_by_label(db)
    # plain8_w4 lost to the best at the first live look (9 seeds for a family of 3): it and
    # its coin-toss partner stop there; the close pair goes on to the planned maximum.
    assert seeds["plain8_w4"] == seeds["plain8_w5"] == list(range(9))
    assert seeds["resnet8_w4"] == seeds["resnet8_w5"] == list(range(11))
    assert "round 1: 3 comparisons open, training seeds 0-2 of 4 configurations" in out
    assert "round 5: 1 comparison open, training seeds 9-10 of 2 configurations" in out
    assert "the question (a - b" in out and "plain8_w4 raced out" in out  # the run's answer
    code, out, err = run_cli("stats", "q", "--storage", str(db))
    assert code == 0, err
    assert "stopped" in out and "plain8_w4 raced out" in out and "resolved" in out
    code, out, err = run_cli("stats", "q", "--storage", str(db), "--json")
    rows = {(r["a"], r["b"]): r for r in json.loads(out)["question"]}
    assert rows[("resnet8_w4", "plain8_w4")]["state"] == "resolved"
    assert rows[("resnet8_w4", "plain8_w4")]["seeds_n"] == 9
    assert rows[("resnet8_w4", "plain8_w4")]["diff_high_pct"] < 0
    assert rows[("plain8_w4", "plain8_w5")]["state"] == "stopped"
    close = rows[("resnet8_w4", "resnet8_w5")]
    assert close["seeds_n"] == 11 and close["state"] in ("open", "equivalent", "resolved")
    if close["state"] == "open":
        assert close["seeds_needed"] > 11  # the estimate says how many more it would take
    # The configurations the rounds stopped at 9 seeds are complete, not "2 seeds missing".
    configs = {r["variant"]: r for r in json.loads(out)["configurations"]}
    assert configs["plain8_w4"]["seeds_n"] == 9 and configs["plain8_w4"]["complete"]
    assert not configs["plain8_w4"]["note"]
    code, out, err = run_cli("stats", "q", "--storage", str(db), "--format", "markdown")
    assert code == 0 and "the spec's question (sequential: the verdicts)" in out, err
    assert "seeds missing" not in out and "| stopped" in out
    from archbench.analysis.data import load_experiment
    from archbench.analysis.report import build_html

    page = build_html(load_experiment(db, "q"), [])
    assert '<h2 id="question">' in page and "plain8_w4 raced out" in page
    # A rerun finds the question answered and trains nothing.
    code, out, err = run_cli("run", str(spec), "--quiet", "--threads", "1")
    assert code == 0 and "already complete" in out, out + err
    assert "question answered after" in out


def test_a_grown_question_reuses_the_stored_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archbench.runner.objective import Objective
    from tests.test_study import run_cli

    trained: list[tuple[str, int]] = []

    def counting(self: Any, trial: Any, plan: Any, seed: int, *a: Any, **k: Any) -> Any:
        trained.append((plan.variant.label, seed))
        return _fake_train(self, trial, plan, seed, *a, **k)

    monkeypatch.setattr(Objective, "_train", counting)
    db = tmp_path / "g.db"
    fixed = spec_data(db, None, variants=FOUR[:2], seeds=[0, 1, 2, 3])
    code, out, err = run_cli("run", str(write(tmp_path / "g.yaml", fixed)), "--quiet")
    assert code == 0, out + err
    assert len(trained) == 8
    trained.clear()
    # At alpha 0.05 no look before 6 seeds can resolve anything (2/2^5 > 0.05).
    question = {"compare": "all", "min_seeds": 3, "max_seeds": 6, "per_round": 1}
    grown = spec_data(db, question, variants=FOUR[:2], seeds=[0, 1, 2, 3])
    code, out, err = run_cli("run", str(write(tmp_path / "g.yaml", grown)), "--quiet")
    assert code == 0, out + err
    # The 4 stored seeds are reused: only seeds beyond them were trained, once each.
    assert sorted(trained) == [(label, s) for label in ("resnet8_w4", "resnet8_w5") for s in (4, 5)]
    assert "round 3: 1 comparison open, training seeds 4 of 2 configurations" in out


# -- a kill -9 mid-round, and two workers -----------------------------------------------------


def _run_rows(db: Path | str) -> Any:
    try:
        with ResultsStore(db, create=False) as store:
            return store.runs(experiment="q")
    except Exception:  # the schema may be mid-creation
        return None


def _check_every_seed_once(db: Path | str, spec_path: Path) -> dict[str, list[int]]:
    """Every planned seed of every configuration has one completed run, trained once (one
    epoch row per epoch), and the stored seeds are what the replay of the question asks."""
    from archbench.runner.rounds import current_round
    from archbench.runner.spec import load_spec

    spec = load_spec(spec_path)
    with ResultsStore(db, create=False) as store:
        runs = store.runs(experiment="q")
        epochs = store.epochs(experiment="q")
        state = current_round(spec, store)
    assert state.finished
    assert not runs.duplicated(["config_key", "seed"]).any()
    assert set(runs["status"]) == {"completed"}, runs[["name", "seed", "status"]]
    per_run = epochs.groupby("run_id")["epoch"].agg(["count", "nunique", "max"])
    assert (per_run["count"] == per_run["nunique"]).all()  # no epoch written twice
    assert (per_run["max"] == spec.recipe.epochs).all()
    seeds = {str(k): sorted(int(s) for s in g["seed"]) for k, g in runs.groupby("name")}
    looks = spec.question.design().looks
    for got in seeds.values():  # every configuration stopped at a planned look
        assert got == list(range(len(got))) and len(got) in looks
    return seeds


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_a_kill_9_in_the_middle_of_a_round_resumes_with_every_seed_trained_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "q.db"
    question = {"compare": "all", "min_seeds": 2, "max_seeds": 3, "per_round": 1}
    recipe = {"epochs": 3, "batch_size": 64, "lr": 0.1}
    spec = write(tmp_path / "q.yaml", spec_data(db, question, recipe=recipe, variants=FOUR[:2]))
    args = [sys.executable, "-m", "archbench", "run", str(spec), "--quiet", "--threads", "1"]
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        [*args, "--heartbeat", "1"], stdout=log, stderr=subprocess.STDOUT, env=ENV
    )
    try:
        end = time.monotonic() + 240
        mid_round = False
        while time.monotonic() < end and first.poll() is None:
            runs = _run_rows(db)
            # Round 2 (seed 2) under way: one run of it stored and one still training.
            if (
                runs is not None
                and (runs["seed"] == 2).any()
                and (runs["status"] == "running").any()
            ):
                mid_round = True
                break
            time.sleep(0.05)
        assert mid_round, (tmp_path / "first.log").read_text()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    killed = _run_rows(db)
    # Killed before round 2 was done (6 runs in all, each completed when it is).
    assert len(killed) < 6 or not (killed["status"] == "completed").all()
    second = subprocess.run(
        [*args, "--heartbeat", "1"], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "round 2: 1 comparison open, training seeds 2 of 2 configurations" in second.stdout
    assert _check_every_seed_once(db, spec) == {"resnet8_w4": [0, 1, 2], "resnet8_w5": [0, 1, 2]}


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_rounds_without_training_a_seed_twice(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = tmp_path / "q.db"
    storage = str(db) if backend == "sqlite" else request.getfixturevalue("pg_url")
    question = {"compare": "all", "min_seeds": 2, "max_seeds": 3, "per_round": 1}
    # 3 epochs a run: enough work that the later-starting worker finds trials left.
    recipe = {"epochs": 3, "batch_size": 64, "lr": 0.1}
    spec = write(tmp_path / "q.yaml", spec_data(storage, question, variants=FOUR, recipe=recipe))
    args = [sys.executable, "-m", "archbench", "run", str(spec), "--quiet", "--threads", "1"]
    done = subprocess.run(
        [*args, "--workers", "2"], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seeds = _check_every_seed_once(storage, spec)
    assert sum(map(len, seeds.values())) >= 8
    runs = _run_rows(storage)
    workers = {str(env["worker"]) for env in runs["env"]}
    assert len(workers) == 2  # both trained seeds
    # Each round was queued once: one trial per configuration and round.
    url = f"sqlite:///{db}" if backend == "sqlite" else storage
    study = optuna.load_study(study_name="q:default", storage=url)
    # A worker whose optimize() started after the other popped the last queued trial gets an
    # empty trial: pruned before training anything (runner.objective.grid_entry), no round.
    from archbench.runner.study import NOTHING_QUEUED, PRUNED_REASON_ATTR

    empty = [t for t in study.trials if "config_key" not in t.user_attrs]
    assert all(
        t.state == optuna.trial.TrialState.PRUNED
        and t.user_attrs.get(PRUNED_REASON_ATTR) == NOTHING_QUEUED
        for t in empty
    ), [(t.number, t.state, t.user_attrs) for t in empty]
    queued = [t for t in study.trials if "config_key" in t.user_attrs]
    rounds = [(t.user_attrs["config_key"], len(t.user_attrs["seeds"])) for t in queued]
    assert len(rounds) == len(set(rounds))
    assert done.stdout.count("round 2:") == 1  # said once, by the worker that queued it


def test_a_failed_seed_stops_the_round_and_the_next_run_retries_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archbench.cli.exit_codes import INCOMPLETE
    from archbench.runner.objective import Objective
    from tests.test_study import run_cli

    broken = {"on": True}

    def flaky(self: Any, trial: Any, plan: Any, seed: int, *a: Any, **k: Any) -> Any:
        if broken["on"] and plan.variant.label == "resnet8_w5" and seed == 3:
            raise DataError("disk on fire")  # a configuration's failure, not a bug
        return _fake_train(self, trial, plan, seed, *a, **k)

    monkeypatch.setattr(Objective, "_train", flaky)
    db = tmp_path / "f.db"
    question = {"compare": "all", "min_seeds": 3, "max_seeds": 6, "per_round": 1}
    spec = write(tmp_path / "f.yaml", spec_data(db, question, variants=FOUR[:2]))
    code, out, err = run_cli("run", str(spec), "--quiet")
    # Round 2 cannot finish: the run says which configuration failed and why, and stops.
    assert code == INCOMPLETE, out + err
    assert "resnet8_w5" in err and "disk on fire" in err
    assert _seeds_by_label(db)["resnet8_w4"] == [0, 1, 2, 3]  # no round 3 was started
    broken["on"] = False
    code, out, err = run_cli("run", str(spec), "--quiet")
    assert code == 0, out + err
    assert "round 2: 1 comparison open, training seeds 3 of 2 configurations" in out
    seeds = _seeds_by_label(db)
    assert seeds["resnet8_w4"] == seeds["resnet8_w5"] == list(range(6))


def test_a_variant_the_question_does_not_name_gets_the_first_round_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archbench.runner.objective import Objective
    from tests.test_study import run_cli

    monkeypatch.setattr(Objective, "_train", _fake_train)
    db = tmp_path / "b.db"
    question = {
        "compare": "pairs",
        "pairs": [["resnet8_w4", "resnet8_w5"]],
        "min_seeds": 3,
        "max_seeds": 5,
        "per_round": 1,
    }
    spec = write(tmp_path / "b.yaml", spec_data(db, question, variants=FOUR[:3]))
    code, out, err = run_cli("run", str(spec), "--quiet")
    assert code == 0, out + err
    seeds = _seeds_by_label(db)
    assert seeds["plain8_w4"] == [0, 1, 2]  # trained (shown in tables), never raced
    assert seeds["resnet8_w4"] == seeds["resnet8_w5"] == [0, 1, 2, 3, 4]


def test_a_question_changed_after_its_first_round_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from archbench.runner.objective import Objective
    from tests.test_study import run_cli

    monkeypatch.setattr(Objective, "_train", _fake_train)
    db = tmp_path / "c.db"
    question = {"compare": "all", "min_seeds": 2, "max_seeds": 3, "per_round": 1}
    spec = write(tmp_path / "c.yaml", spec_data(db, question, variants=FOUR[:2]))
    code, out, err = run_cli("run", str(spec), "--quiet")
    assert code == 0 and "changed since its first round" not in caplog.text, out + err
    question["max_seeds"] = 5
    write(tmp_path / "c.yaml", spec_data(db, question, variants=FOUR[:2]))
    code, out, err = run_cli("run", str(spec), "--quiet")
    assert code == 0, out + err
    assert "changed since its first round (max_seeds)" in caplog.text
