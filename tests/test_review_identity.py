"""Review of issue 16 (config identity): a variant removed while its trial was queued, then
added back, is trained (its queued trial was pruned unrun: that covers nothing); removed seeds
leave the tables; a grid continued as a search shows its runs."""

from __future__ import annotations

from pathlib import Path

import yaml
from test_identity import A, B, C, assert_clean, cli, run, runs_of, sampled, spec_data, write

from archbench.analysis.data import config_stats, load_experiment
from archbench.runner.spec import load_spec
from archbench.runner.study import RunnerOptions, prepare_study


def test_a_variant_removed_while_queued_and_added_back_is_trained(tmp_path: Path) -> None:
    db = tmp_path / "g.db"

    def prepare(data: dict) -> None:
        prepare_study(load_spec(write(tmp_path / "g.yaml", data)), RunnerOptions())

    prepare(spec_data(db, variants=[A, B]))  # queued; the run stopped before training
    prepare(spec_data(db, variants=[A]))  # B removed: its queued trial pruned, untrained
    code, out, err = run(tmp_path, spec_data(db, variants=[A, B]))
    assert_clean(code, out, err)
    runs = runs_of(db)
    assert sorted(runs["name"]) == ["plain8_w4", "resnet8_w4"]
    assert set(runs["status"]) == {"completed"}
    assert "already done" not in out


def test_removed_seeds_are_no_longer_required_nor_counted(tmp_path: Path) -> None:
    """README: "removed seeds are no longer required". A variant added after a seed was
    removed trains the spec's seeds and is complete; the stored configurations' means are
    over the spec's seeds too (not over a seed the added one never ran)."""
    db = tmp_path / "g.db"
    assert_clean(*run(tmp_path, spec_data(db, variants=[A, B], seeds=[0, 1])))
    assert_clean(*run(tmp_path, spec_data(db, variants=[A, B, C], seeds=[0])))
    data = load_experiment(db, "g")
    table = config_stats(data.runs, "test_err", seeds=data.expected_seeds)
    assert table["complete"].all(), table["note"].tolist()
    assert set(table["n"]) == {1}
    every = load_experiment(db, "g", all_configs=True)
    assert sorted(every.runs["seed"]) == [0, 0, 0, 1, 1]  # stored, reachable on request
    code, out, _ = cli("results", str(tmp_path / "g.yaml"), "--json")  # results alike
    assert code == 0 and {r["n_seeds"] for r in yaml.safe_load(out)["rows"]} == {1}


def test_a_grid_study_continued_as_a_sampled_search_shows_the_sampled_runs(
    tmp_path: Path,
) -> None:
    """The sampler may change between runs (README): a search continued after a grid must
    not be filtered by the grid the study last recorded (every sampled run was hidden)."""
    db = tmp_path / "g.db"
    assert_clean(*run(tmp_path, spec_data(db, variants=[A])))
    assert_clean(*run(tmp_path, sampled(db, name="g", trials=2)))
    stored = runs_of(db)
    assert len(stored) > 1
    data = load_experiment(db, "g")
    assert sorted(data.runs["run_id"]) == sorted(stored["run_id"])
