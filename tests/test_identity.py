"""Issue 16 (config identity): a configuration is what it trains, not its label or position.

Experiments grow (added variants and seeds train alone), shrink (removed variants leave the
tables, not the store), edited variants are new configurations, entries that build one net
train once under every label, incomparable changes are refused by validate and run alike,
and nothing archbench writes into Optuna's storage lets its views credit a family's effect
to budget-solved widths or depths (issue 19). Smoke-sized: digits, 1 epoch, depth 8.
"""

from __future__ import annotations

import ast
import contextlib
import io
import sqlite3
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from archbench.cli import main
from archbench.store import ResultsStore

RUN = ["--quiet", "--threads", "1"]
A = {"family": "resnet", "depth": 8, "width": 4}
B = {"family": "plain", "depth": 8, "width": 4}
C = {"family": "resnet", "depth": 8, "width": 8}


def spec_data(storage: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "g",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 1, "batch_size": 128, "lr": 0.1},
        "variants": [A, B],
        "seeds": [0],
        "storage": str(storage),
    }
    data.update(changes)
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def run(tmp_path: Path, data: dict[str, Any], *extra: str) -> tuple[int, str, str]:
    return cli("run", str(write(tmp_path / "g.yaml", data)), *RUN, *extra)


def study_of(db: Path, name: str = "g:default") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def runs_of(db: Path, name: str = "g") -> Any:
    return ResultsStore(db).runs(experiment=name)


def assert_clean(code: int, out: str, err: str) -> None:
    assert code == 0, err
    assert "Traceback" not in out + err and "dynamic value space" not in out + err


# -- case 1: an experiment grows ----------------------------------------------------------


def test_a_grown_grid_trains_only_the_new_variant(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    assert_clean(*run(tmp_path, spec_data(db)))
    before = runs_of(db).set_index("run_id")
    code, out, err = run(tmp_path, spec_data(db, variants=[A, B, C]))
    assert_clean(code, out, err)
    after = runs_of(db).set_index("run_id")
    new = after.drop(index=before.index)
    assert new["name"].tolist() == ["resnet8_w8"]  # only the added variant trained
    assert (after.loc[before.index, "attempts"] == 1).all()
    assert (after.loc[before.index, "finished_at"] == before["finished_at"]).all()
    study = study_of(db)
    assert not study.get_trials(states=(TrialState.FAIL,))
    assert "1 already done" not in out and "2 already done" in out
    # Compared with the stored ones: all three in the results.
    code, out, _ = cli("results", str(tmp_path / "g.yaml"))
    assert code == 0 and all(n in out for n in ("resnet8_w4", "plain8_w4", "resnet8_w8"))
    # A second rerun trains nothing and says so.
    code, out, _ = run(tmp_path, spec_data(db, variants=[A, B, C]))
    assert code == 0 and "nothing to train" in out


def sampled(db: Path, **changes: Any) -> dict[str, Any]:
    data = spec_data(
        db,
        name="t",
        variants=[],
        space={"family": ["resnet", "plain"], "depth": {"resnet": [8], "plain": [8]}},
        sampler={"name": "random", "seed": 0},
        trials=2,
    )
    data.update(changes)
    return data


def test_a_sampled_study_continues_when_its_choices_grow(tmp_path: Path) -> None:
    """Issue 16 for sampled studies: a TPE study over two families gets a third (and a new
    choice of a categorical recipe param); the rerun continues (no refusal, no traceback, no
    failed trial), the stored configurations' runs are reused, not trained again, and the
    results show all three families."""
    db = tmp_path / "t.db"
    tpe = {"name": "tpe", "seed": 0}
    small = {"name": "digits", "val_size": 200, "train_subset": 400}
    space = {"family": ["resnet", "plain"], "depth": {"resnet": [8], "plain": [8]}}
    first = sampled(db, sampler=tpe, dataset=small, space={**space, "recipe": {"lr": [0.1]}})
    assert_clean(*run(tmp_path, first))
    assert_clean(*run(tmp_path, {**first, "trials": 3}))  # more trials: only the new one runs
    study = study_of(db, "t:default")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    before = runs_of(db, "t")
    assert (before["attempts"] == 1).all()
    grown = sampled(
        db,
        sampler=tpe,
        dataset=small,
        trials=9,
        space={
            "family": ["resnet", "plain", "preact"],
            "depth": {"resnet": [8], "plain": [8], "preact": [8]},
            "recipe": {"lr": [0.1, 0.05]},
        },
        baselines=[{"family": "preact", "depth": 8}],
    )
    spec = write(tmp_path / "g.yaml", grown)
    code, out, err = cli("validate", str(spec))
    assert code == 0, err
    code, out, err = cli("run", str(spec), *RUN)
    assert_clean(code, out, err)
    assert "Traceback" not in out + err and "dynamic value space" not in out + err
    trials = study_of(db, "t:default").get_trials()
    assert len(trials) == 9 and {t.state for t in trials} == {TrialState.COMPLETE}
    # The grown choice sets are new params for the sampler (a suffix names the set).
    assert all(any(p.startswith("family~") for p in t.params) for t in trials[3:])
    runs = runs_of(db, "t")
    # Every configuration trained once: the stored ones kept (same rows, one attempt) ...
    assert (runs["attempts"] == 1).all() and runs["config_key"].is_unique
    kept = runs.set_index("run_id").loc[before["run_id"]]
    assert kept["finished_at"].tolist() == before["finished_at"].tolist()
    # ... and reused by the new trials that drew them again.
    old_keys = set(before["config_key"])
    again = [t for t in trials[3:] if t.user_attrs.get("config_key") in old_keys]
    assert again, "no new trial drew a stored configuration"
    assert set(runs["family"]) == {"resnet", "plain", "preact"}
    # The runs' hyperparameters are named as in the space, whatever Optuna called them.
    for hp in runs["hyperparameters"]:
        assert {"family", "recipe.lr"} <= set(hp) and not any("~" in k for k in hp), hp
    code, out, _ = cli("results", str(spec))
    assert code == 0 and all(f in out for f in ("resnet8", "plain8", "preact8")), out
    # Changed back: the first names (and the sampler's history under them) continue.
    assert_clean(*run(tmp_path, {**first, "trials": 10}))
    assert {t.state for t in study_of(db, "t:default").get_trials()} == {TrialState.COMPLETE}


def test_an_interrupted_sampled_trial_is_retried_under_the_grown_spaces_names(
    tmp_path: Path,
) -> None:
    """A trial interrupted before the family grew is re-queued with the same configuration
    under the new param names; one of a family since removed is not re-queued."""
    from optuna.distributions import CategoricalDistribution

    from archbench.runner.spec import parse_spec
    from archbench.runner.study import RunnerOptions, create_study, open_storage, prepare_study

    db = tmp_path / "t.db"
    space = {"family": ["resnet", "plain"], "depth": {"resnet": [8], "plain": [8]}}
    options = RunnerOptions(results_dir=str(tmp_path / "res"), threads=1)
    spec = parse_spec(sampled(db, space=space))
    storage, store = open_storage(spec, options)
    store.close()
    study = create_study(spec, storage)
    for fam in ("plain", "resnet"):
        study.add_trial(
            optuna.create_trial(
                state=TrialState.FAIL,
                params={"family": fam, f"{fam}.depth": 8},
                distributions={
                    "family": CategoricalDistribution(["resnet", "plain"]),
                    f"{fam}.depth": CategoricalDistribution([8]),
                },
            )
        )
    grown = sampled(
        db,
        space={"family": ["plain", "preact"], "depth": {"plain": [8], "preact": [8]}},
    )
    study, requeued = prepare_study(parse_spec(grown), options)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert requeued == 1 and len(waiting) == 1  # resnet left the space: not retried
    (family,) = [k for k in waiting[0].params if k.startswith("family~")]
    assert waiting[0].params == {family: "plain", "plain.depth": 8}


# -- case 2: an edited variant is new; a removed one leaves the tables ----------------------


def test_an_edited_variant_is_trained_anew_and_a_removed_one_is_not_shown(
    tmp_path: Path,
) -> None:
    db = tmp_path / "g.db"
    labelled = {**A, "label": "resnet8_A"}
    assert_clean(*run(tmp_path, spec_data(db, variants=[labelled, B])))
    old = runs_of(db)
    edited = {**labelled, "width": 8}  # the same label, another net
    code, out, err = run(tmp_path, spec_data(db, variants=[edited]))
    assert_clean(code, out, err)
    assert "nothing to train" not in out
    runs = runs_of(db)
    assert len(runs) == len(old) + 1  # trained anew; the old runs stay in the store
    new = runs[~runs["run_id"].isin(old["run_id"])]
    assert new["config_key"].iloc[0] not in set(old["config_key"])
    # results/stats show the current spec: the edited variant's numbers only, plain removed.
    code, out, _ = cli("results", str(tmp_path / "g.yaml"), "--json")
    assert code == 0
    rows = yaml.safe_load(out)["rows"]
    assert [r["name"] for r in rows] == ["resnet8_A"]
    assert rows[0]["params"] == int(new["params"].iloc[0])
    code, out, _ = cli("stats", str(tmp_path / "g.yaml"))
    assert code == 0 and "plain8_w4" not in out
    # Every stored configuration on request.
    code, out, _ = cli("results", str(tmp_path / "g.yaml"), "--all-configs", "--json")
    assert code == 0
    names = sorted(r["name"] for r in yaml.safe_load(out)["rows"])
    assert names == ["plain8_w4 (not in the spec)", "resnet8_A", "resnet8_A (not in the spec)"]


# -- case 7: one net, one training, every label ----------------------------------------------


def test_entries_building_one_net_train_once_under_every_label(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    same = [{**A, "label": "resnet8_w4"}, {**A, "family": "resnet_variant", "label": "rv8"}]
    spec = write(tmp_path / "g.yaml", spec_data(db, variants=[*same, B]))
    code, out, err = cli("validate", str(spec))
    assert code == 0, err
    assert "'resnet8_w4', 'rv8' build the same net" in err and "2 trial(s)" in out
    code, out, err = cli("run", str(spec), *RUN)
    assert_clean(code, out, err)
    runs = runs_of(db)
    assert len(runs) == 2  # two nets, one seed: the shared one trained once
    code, out, _ = cli("results", str(spec), "--json")
    names = {r["name"] for r in yaml.safe_load(out)["rows"]}
    assert names == {"resnet8_w4 = rv8", "plain8_w4"}
    assert "#2" not in out


# -- seeds ------------------------------------------------------------------------------------


def test_added_seeds_train_only_the_new_seeds(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    assert_clean(*run(tmp_path, spec_data(db)))
    before = runs_of(db)
    code, out, err = run(tmp_path, spec_data(db, seeds=[0, 1]))
    assert_clean(code, out, err)
    after = runs_of(db)
    new = after[~after["run_id"].isin(before["run_id"])]
    assert sorted(new["seed"]) == [1, 1] and (after["attempts"] == 1).all()
    code, out, _ = cli("results", str(tmp_path / "g.yaml"), "--json")
    assert {r["n_seeds"] for r in yaml.safe_load(out)["rows"]} == {2}


# -- incomparable changes ---------------------------------------------------------------------


def test_an_incomparable_change_is_refused_by_validate_and_run_alike(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    assert_clean(*run(tmp_path, spec_data(db)))
    changed = spec_data(db, dataset={"name": "digits", "val_size": 300})
    spec = write(tmp_path / "g.yaml", changed)
    code, out, err = cli("validate", str(spec))
    assert code == 2 and err.count("\n") == 1, (out, err)
    assert "another dataset" in err and "another experiment name, profile or storage" in err
    code2, _, err2 = cli("run", str(spec), *RUN)
    assert code2 == 2 and err2 == err
    assert len(study_of(db).trials) == 2 and len(runs_of(db)) == 2


# -- several workers on a grown experiment ------------------------------------------------------


def test_two_workers_grow_an_experiment_training_each_run_once(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    assert_clean(*run(tmp_path, spec_data(db, variants=[A])))
    grown = spec_data(db, variants=[A, B, C, {**B, "width": 8}])
    code, out, err = run(tmp_path, grown, "--workers", "2")
    assert_clean(code, out, err)
    runs = runs_of(db)
    assert len(runs) == 4 and (runs["attempts"] == 1).all()
    assert set(runs["status"]) == {"completed"}
    study = study_of(db)
    assert not study.get_trials(states=(TrialState.FAIL,))


# -- stores made before configuration keys -----------------------------------------------------


def test_a_store_keyed_by_labels_opens_and_its_runs_are_reused(tmp_path: Path) -> None:
    """Simulates a store of the label-keyed archbench: 12-hex run keys, trials without a
    configuration key. A rerun retrains nothing: the runs get their keys."""
    db = tmp_path / "g.db"
    assert_clean(*run(tmp_path, spec_data(db)))
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE archbench_runs SET config_key = substr(hex(run_id) || '000000000000', 1, 12)"
        )
        conn.execute(
            "UPDATE trial_user_attributes SET value_json = '\"0123456789ab\"' "
            "WHERE key = 'config_key'"
        )
        conn.execute("DELETE FROM study_system_attributes WHERE key = 'archbench:grid'")
    before = runs_of(db)
    assert_clean(*run(tmp_path, spec_data(db, variants=[A, B, C])))
    after = runs_of(db).set_index("run_id")
    assert (after.loc[before["run_id"], "attempts"] == 1).all()  # reused, not retrained
    assert all("-" in k for k in after["config_key"])
    assert len(after) == len(before) + 1


# -- issue 19: Optuna's views --------------------------------------------------------------


def test_optuna_importances_never_credit_solved_width_or_depth(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    data = sampled(
        db,
        trials=3,
        budget={"metric": "params", "target": "20K", "solve": "width", "tolerance": 0.3},
    )
    assert_clean(*run(tmp_path, data))
    study = study_of(db, "t:default")
    assert all(t.user_attrs["width"] for t in study.trials)  # the facts stay user attrs
    importances = optuna.importance.get_param_importances(study)
    assert not {"width", "depth"} & set(importances)
    assert not any({"width", "depth"} & set(t.params) for t in study.trials)


# -- runner without cycles ---------------------------------------------------------------------


def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports (at any level: deferred ones count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith(package + ".")}
    return found


def test_the_runner_import_graph_has_no_cycles() -> None:
    import archbench.runner

    root = Path(archbench.runner.__file__).parent
    package = "archbench.runner"
    modules = {f"{package}.{p.stem}": p for p in root.glob("*.py") if p.stem != "__init__"}
    graph = {m: _imports(p, package) & set(modules) - {m} for m, p in modules.items()}
    assert {"archbench.runner.heartbeat", "archbench.runner.worker"} <= set(graph)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*path, nxt]
                if nxt not in path:
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for m in graph if (c := cycle_from(m))]
    assert not cycles, " -> ".join(cycles[0])


def test_added_seeds_in_a_sampled_study_train_only_the_new_seeds(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    assert_clean(*run(tmp_path, sampled(db)))
    before = runs_of(db, "t")
    code, out, err = run(tmp_path, sampled(db, seeds=[0, 1]))
    assert_clean(code, out, err)
    after = runs_of(db, "t")
    new = after[~after["run_id"].isin(before["run_id"])]
    assert set(new["seed"]) == {1} and len(new) == before["config_key"].nunique()
    assert (after["attempts"] == 1).all()
    assert set(after.groupby("config_key")["seed"].nunique()) == {2}
    code, out, _ = run(tmp_path, sampled(db, seeds=[0, 1]))
    assert code == 0 and "nothing to train" in out
