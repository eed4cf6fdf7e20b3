"""The prepared GPU check runs end to end on the CPU at toy sizes (``--dry-run``) and writes
its one summary; the sections that start processes are skipped here (slow on 2 cores)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_writes_the_summary(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    code = gpu_check.main(
        ["--dry-run", "--out", str(tmp_path), "--skip", "pytest", "workers", "profile"]
    )
    assert code == 0
    summary = json.loads((tmp_path / "gpu_summary.json").read_text())
    sections = summary["sections"]
    assert summary["dry_run"] is True
    rows = sections["images/s fused vs unfused"]["rows"]
    assert {(r["net"], r["k"]) for r in rows} == {("resnet20", 1), ("resnet20", 2)}
    assert all(r["unfused_img_s"] > 0 and r["fused_img_s"] > 0 for r in rows)
    share = sections["bf16 training share of matmul rate"]
    assert share["share_of_matmul"] > 0 and share["macs_per_image"] > 0
    assert (tmp_path / "gpu_summary.md").read_text().startswith("# GPU check summary")
    # The estimate of the degradation profile from measured rates (fed GPU-like rows here).
    rows = [
        {"net": "resnet20", "fused_img_s": 60000.0},
        {"net": "resnet56", "fused_img_s": 20000.0},
    ]
    hours = gpu_check.estimate_degradation(rows)["hours_one_gpu_fused"]
    # 164 epochs x 2 families x 3 seeds x 45k images x mean(1/60k, 1/40k, 1/.., 1/20k) s
    per_image = [1 / 60000 + (1 / 20000 - 1 / 60000) * (d - 20) / 36 for d in (20, 32, 44, 56)]
    expected = 164 * 2 * 3 * 45000 * sum(per_image) * gpu_check.EVAL_SHARE / 3600
    assert abs(hours - expected) < 0.01
