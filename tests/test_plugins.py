"""Third-party blocks arrive through the ``archbench.blocks`` entry-point group."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from archbench.models.net import NetSpec, StageSpec, StemSpec, build_net
from archbench.registry import BLOCKS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin_block"


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install the example plugin the way pip lays it out: package + ``.dist-info``."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE / "archbench_se_block", site / "archbench_se_block")
    info = site / "archbench_se_block-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: archbench-se-block\nVersion: 0.1.0\n"
    )
    # The entry points exactly as declared in the example's pyproject.toml.
    (info / "entry_points.txt").write_text("[archbench.blocks]\nse_basic = archbench_se_block\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    BLOCKS.remove("se_basic")
    sys.modules.pop("archbench_se_block", None)


def test_entry_point_plugin_is_discovered(
    installed_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a fresh process: the first read of the registry discovers installed plugins.
    monkeypatch.setattr(BLOCKS, "_loaded", False)
    assert "se_basic" in BLOCKS
    entry = BLOCKS.entry("se_basic")
    assert entry.source == "archbench-se-block"
    assert entry.meta["family"] == "se"
    assert "squeeze-excitation" in entry.description

    spec = NetSpec(
        stem=StemSpec("cifar", 16),
        stages=(StageSpec("se_basic", 2, 16), StageSpec("se_basic", 2, 32, stride=2)),
    )
    y = build_net(spec)(torch.randn(2, 3, 16, 16))
    assert y.shape == (2, 10)


def test_plugin_declared_in_example_pyproject() -> None:
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points."archbench.blocks"]' in text
    assert 'se_basic = "archbench_se_block"' in text


def test_broken_plugin_is_logged_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[archbench.blocks]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert BLOCKS.load_plugins() == []
    assert "could not load block plugin 'broken' from broken-plugin" in caplog.text


def test_plugin_block_runs_in_an_experiment_through_resnet_variant(
    installed_plugin: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The variant families take any basic-shaped block: what they need to know (does the
    stem or head need pre-activation) is on the block class, plugins included."""
    import contextlib
    import io
    import json

    import yaml

    from archbench.cli import main
    from archbench.store import ResultsStore

    monkeypatch.setattr(BLOCKS, "_loaded", False)
    spec = {
        "name": "plugin",
        "dataset": {"name": "digits", "val_size": 100, "train_subset": 200},
        "recipe": {"epochs": 1, "batch_size": 64},
        "variants": [
            {"family": "resnet_variant", "depth": 8, "width": 4, "params": {"block": "se_basic"}}
        ],
        "storage": str(tmp_path / "p.db"),
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", str(path), "--quiet", "--threads", "1"])
    assert code == 0, err.getvalue()
    with ResultsStore(tmp_path / "p.db") as store:
        runs = store.runs(experiment="plugin")
    assert runs["status"].tolist() == ["completed"]
    assert runs["block"].tolist() == ["se_basic"]
    net = json.loads(store_spec_json(tmp_path / "p.db"))
    assert net["stem"]["params"] == {} and net["head"]["params"] == {}  # post-activation


def store_spec_json(db: Path) -> str:
    from archbench.store import ResultsStore

    with ResultsStore(db) as store:
        return str(store.variants()["spec_json"].iloc[0])
