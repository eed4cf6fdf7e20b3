"""Every shipped experiment spec runs end to end: its ``smoke`` profile (sklearn digits, one
epoch, tiny widths) through ``archbench run``, into a throw-away store, and its results table
prints. The experiments themselves (``cpu``/``gpu`` profiles) are not tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archbench.cli import main

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))


def test_every_spec_has_cpu_gpu_and_smoke_profiles() -> None:
    for path in EXPERIMENTS:
        data = yaml.safe_load(path.read_text())
        profiles = data.get("profiles") or {}
        assert {"cpu", "gpu", "smoke"} <= set(profiles), path.name
        cpu = {**data, **profiles["cpu"]}
        seeds = cpu.get("seeds", [0])
        assert isinstance(seeds, list) and len(seeds) >= 3, f"{path.name}: cpu needs >= 3 seeds"
        name = (profiles["cpu"].get("dataset") or {}).get("name", data["dataset"]["name"])
        assert name == "fashion_mnist", f"{path.name}: cpu profile runs on {name}"


def test_every_smoke_profile_runs_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in EXPERIMENTS:
        db = tmp_path / f"{path.stem}.db"
        argv = ["run", str(path), "--profile", "smoke", "--storage", str(db), "--quiet"]
        assert main([*argv, "--threads", "1"]) == 0, (path.name, capsys.readouterr().err)
        out = capsys.readouterr().out
        assert "trial(s) finished" in out and "warning:" not in out, (path.name, out)
        assert main(["results", str(path), "--profile", "smoke", "--storage", str(db)]) == 0
        assert "smoke" in capsys.readouterr().out, path.name
