"""Plot kinds from installed packages: the ``archbench.plots`` entry-point group."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from archbench.cli import main
from archbench.registry import PLOTS
from archbench.testing import registries_restored

PLUGIN = '''
"""A plot kind from another package."""
import matplotlib.pyplot as plt
from archbench.analysis.plots import register_plot

@register_plot("seed_hist", "Test error of every seed", "one bar per run", order=900)
def seed_hist(data, options):
    fig, ax = plt.subplots()
    ax.hist(data.runs[options.metric])
    return fig, ["drawn by a plugin"]
'''


@pytest.fixture
def plot_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_archbench_plots.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "my_archbench_plots-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-archbench-plots\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[archbench.plots]\nseed_hist = my_archbench_plots\n")
    monkeypatch.syspath_prepend(str(site))
    with registries_restored():
        monkeypatch.setattr(PLOTS, "_loaded", False)  # as in a fresh process
        yield
    monkeypatch.delitem(__import__("sys").modules, "my_archbench_plots", raising=False)


def test_a_plot_kind_from_an_entry_point(
    plot_plugin: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    from archbench.analysis.plots import PlotOptions, plot_kinds, render

    assert plot_kinds()[-1] == "seed_hist" and "depth" in plot_kinds()  # built-ins too
    assert PLOTS.entry("seed_hist").source == "my-archbench-plots"
    assert main(["plot", "list"]) == 0
    assert "seed_hist" in capsys.readouterr().out
    data = SimpleNamespace(runs=pd.DataFrame({"test_err": [0.1, 0.12, 0.11]}))
    result = render(data, "seed_hist", PlotOptions(metric="test_err"))  # type: ignore[arg-type]
    assert result.figure is not None and result.notes == ["drawn by a plugin"]
