"""Review of issue 16 (config identity): a variant removed while its trial was queued, then
added back, is trained (its queued trial was pruned unrun: that covers nothing)."""

from __future__ import annotations

from pathlib import Path

from test_identity import A, B, assert_clean, run, runs_of, spec_data, write

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

