"""Analysis: statistics on hand-computed examples, every plot and table from a fixture store
(tests/fixtures_store.py, SYNTHETIC numbers through the real ResultsStore API), the HTML
report, the CLI, and (when Chromium is installed) a headless-browser render of the report.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from fixtures_store import BUDGET, BUDGET_SEEDS, BUDGET_VARIANTS, SWEEP, THIN, build_fixture_store
from scipy import stats as sps

from archbench.analysis import stats
from archbench.analysis.data import config_stats, load_experiment, select_best
from archbench.analysis.plots import (
    PlotOptions,
    PlotSkipped,
    make_plots,
    plot_kinds,
    register_plot,
    render,
)
from archbench.analysis.report import build_html, write_report
from archbench.analysis.tables import (
    comparisons_table,
    display,
    fairness_facts,
    summary_table,
    to_text,
)
from archbench.cli import main
from archbench.errors import ArchbenchError, UnknownNameError

# -- statistics -------------------------------------------------------------------------------


def test_t_interval_matches_hand_computation() -> None:
    s = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5 / 3)  # sum of squared deviations 5, n - 1 = 3
    half = 3.182446305284263 * std / 2  # t(0.975, 3) * s / sqrt(4)
    assert (s.n, s.mean) == (4, 2.5)
    assert s.std == pytest.approx(std)
    assert (s.ci_low, s.ci_high) == pytest.approx((2.5 - half, 2.5 + half))
    assert s.half_width == pytest.approx(half)


def test_t_interval_one_value_has_no_interval() -> None:
    s = stats.t_interval([0.3, float("nan")])
    assert s.n == 1 and s.mean == 0.3
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_error_intervals_respect_0_and_100_percent() -> None:
    # Two seeds: t(0.975, 1 df) = 12.7, so the raw interval of 2% and 40% error runs from
    # below -100% to above 100%; bounded, it is clipped to the possible range and says so.
    raw = stats.t_interval([0.02, 0.40])
    assert raw.ci_low < -1 and raw.ci_high > 1
    s = stats.t_interval([0.02, 0.40], bounds=stats.ERROR_BOUNDS)
    assert (s.ci_low, s.ci_high, s.clipped) == (0.0, 1.0, True)
    assert (s.mean, s.std) == (raw.mean, raw.std)
    inside = stats.t_interval([0.30, 0.31, 0.32], bounds=stats.ERROR_BOUNDS)
    assert not inside.clipped and inside.ci_low > 0.25
    caption = stats.interval_caption([2, 3], 0.95)
    assert "t-interval over seeds, clipped to 0-100%" in caption and "too few" in caption
    assert "too few" not in stats.interval_caption([3, 5], 0.95)
    assert stats.interval_caption([1], 0.95) == "1 seed per point: no confidence interval"


def test_config_intervals_and_report_table_stay_within_bounds(sweep) -> None:
    runs = sweep.runs[sweep.runs["seed"].isin([0, 1])].copy()
    key = runs["config_key"].iloc[0]
    mask = runs["config_key"] == key
    assert mask.sum() == 2
    runs.loc[mask, "test_err"] = [0.02, 0.40]
    table = config_stats(runs, "test_err")
    assert table["ci_low"].min() >= 0 and table["ci_high"].max() <= 1
    row = table[table["config_key"] == key].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (0.0, 1.0)
    shown = display(summary_table(replace(sweep, runs=runs)))
    assert shown["95% CI %"].str.endswith("few seeds").all()  # 2 seeds everywhere
    assert "[0.00, 100.00] few seeds" in set(shown["95% CI %"])


def test_paired_difference_matches_scipy_on_shared_seeds() -> None:
    a = {0: 0.10, 1: 0.12, 2: 0.11, 3: 0.13, 4: 0.10, 5: 0.12, 6: 0.2}
    b = {0: 0.11, 1: 0.125, 2: 0.118, 3: 0.139, 4: 0.102, 5: 0.131, 9: 0.5}
    res = stats.paired_difference(a, b)
    shared = [0, 1, 2, 3, 4, 5]
    xa, xb = np.array([a[s] for s in shared]), np.array([b[s] for s in shared])
    assert res.seeds == tuple(shared) and res.n == 6
    assert res.mean_diff == pytest.approx(float(np.mean(xa - xb)))
    ref = sps.permutation_test((xa - xb,), np.mean, permutation_type="samples", n_resamples=np.inf)
    assert res.p == pytest.approx(ref.pvalue) == 2 / 2**6  # every difference negative
    assert res.p_min == 2 / 2**6 and res.method.startswith("exact")
    assert res.ci_low < res.mean_diff < res.ci_high < 0  # a is clearly lower


def test_paired_difference_small_and_degenerate_samples() -> None:
    few = stats.paired_difference({0: 1.0, 1: 2.0, 2: 3.5}, {0: 1.5, 1: 2.2, 2: 3.0})
    assert few.n == 3 and few.p_min == 0.25
    assert (few.ci_low, few.ci_high) == (-math.inf, math.inf)  # 3 pairs reject nothing
    same = stats.paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert (same.mean_diff, same.p) == (0.0, 1.0)
    shift = stats.paired_difference({0: 1.5, 1: 2.5}, {0: 1.0, 1: 2.0})
    assert shift.p == 0.5  # 2 of 4 sign vectors: no p = 0 from a constant shift
    none = stats.paired_difference({0: 1.0}, {1: 1.0})
    assert none.n == 0 and math.isnan(none.p)


def test_holm_hand_example_and_nan() -> None:
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.02, float("nan"), 0.04])  # NaN is not counted: m = 2
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1


def _weighted_hist(groups, values, weights, edges, group):
    mask = np.asarray(groups) == group
    idx = stats.bin_index(np.asarray(values)[mask], edges)
    return np.bincount(idx, weights=np.asarray(weights)[mask], minlength=len(edges) - 1)


def test_complexity_weights_reproduce_the_target_distribution() -> None:
    rng = np.random.default_rng(0)
    groups = ["a"] * 40 + ["b"] * 25
    params = np.r_[10 ** rng.uniform(4, 6, 40), 10 ** rng.uniform(4.5, 6.5, 25)]
    edges = stats.log_bins(params, 6)
    weights = stats.complexity_weights(groups, params, edges)
    counts = {
        g: np.bincount(stats.bin_index(params[np.asarray(groups) == g], edges), minlength=6)
        for g in "ab"
    }
    common = (counts["a"] > 0) & (counts["b"] > 0)
    target = common / common.sum()  # uniform over the bins both populate
    for g in "ab":
        w = weights[np.asarray(groups) == g]
        assert w.sum() == pytest.approx(1.0)
        assert _weighted_hist(groups, params, weights, edges, g) == pytest.approx(target)
    # Models outside the shared bins get no weight.
    outside = ~common[stats.bin_index(params, edges)]
    assert np.all(weights[outside] == 0) and outside.any()
    # A custom target is reproduced too.
    custom = np.arange(1.0, 7.0)
    weights = stats.complexity_weights(groups, params, edges, custom)
    want = np.where(common, custom, 0) / np.where(common, custom, 0).sum()
    assert _weighted_hist(groups, params, weights, edges, "b") == pytest.approx(want)


def test_complexity_weights_without_common_bins_raise() -> None:
    edges = np.array([1.0, 10.0, 100.0])
    with pytest.raises(ValueError, match="share no complexity bin"):
        stats.complexity_weights(["a", "b"], [2.0, 50.0], edges)


def test_weighted_edf() -> None:
    x, f = stats.weighted_edf([3.0, 1.0, 2.0, 2.0])
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0] and f.tolist() == [0.25, 0.5, 0.75, 1.0]
    x, f = stats.weighted_edf([1.0, 2.0, 3.0], [0.5, 0.0, 1.5])
    assert x.tolist() == [1.0, 3.0] and f.tolist() == [0.25, 1.0]


def test_pareto_front() -> None:
    cost = [1, 2, 3, 4, 5]
    err = [0.5, 0.6, 0.4, 0.45, 0.3]
    assert stats.pareto_front(cost, err).tolist() == [0, 2, 4]


# -- the fixture store ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_store(tmp_path_factory.mktemp("analysis") / "fixture.db")


@pytest.fixture(scope="module")
def sweep(store_path: Path):
    return load_experiment(store_path, SWEEP)


@pytest.fixture(scope="module")
def budget(store_path: Path):
    return load_experiment(store_path, BUDGET)


@pytest.fixture(scope="module")
def thin(store_path: Path):
    return load_experiment(store_path, THIN)


def test_load_experiment(sweep, budget, thin) -> None:
    assert sweep.profile == "cpu" and budget.profile == "default"
    assert sweep.study is not None and "objectives" in sweep.spec  # from the system attrs
    assert budget.spec.get("budget")  # an older study: the spec in its user attrs
    assert thin.study is None and "no Optuna study named" in thin.study_note
    roles = dict(zip(sweep.runs["family"], sweep.runs["role"]))
    assert roles == {"plain": "plain", "resnet": "residual", "preact": "preact"}
    assert len(sweep.diagnostics) and budget.diagnostics.empty


def test_unknown_experiment_and_profile(store_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="known experiments: fixture_budget, fixture_swe"):
        load_experiment(store_path, "nope")
    with pytest.raises(UnknownNameError, match="known profiles: cpu"):
        load_experiment(store_path, SWEEP, "gpu")


def test_several_profiles_need_a_choice(tmp_path: Path) -> None:
    from archbench.models.presets import get_family
    from archbench.store import ResultsStore

    with ResultsStore(tmp_path / "two.db") as store:
        spec = get_family("resnet").build(8, 8, num_classes=10, in_channels=1, input_size=28)
        key = store.record_variant(
            spec, family="resnet", complexity={"params": 1, "macs": 1, "acts": 1}
        )
        for profile in ("cpu", "gpu"):
            run = store.start_run(experiment="e", profile=profile, spec_hash=key, seed=0)
            store.finish_run(run, status="completed", final={"test_err": 0.1, "val_err": 0.1})
    with pytest.raises(UnknownNameError, match=r"several profiles \(cpu, gpu\)"):
        load_experiment(tmp_path / "two.db", "e")
    assert load_experiment(tmp_path / "two.db", "e", "gpu").profile == "gpu"


def test_config_stats_and_selection(sweep) -> None:
    table = config_stats(sweep.runs, "test_err")
    assert len(table) == 36 and set(table["n"]) == {3}
    row = table[table["label"] == "resnet20_w16"].iloc[0]
    values = sweep.runs.loc[sweep.runs["config_key"] == row["config_key"], "test_err"]
    ref = stats.t_interval(values.tolist())
    assert row["mean"] == pytest.approx(ref.mean)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high))
    assert row["epochs"] == 6 and row["seeds"] == (0, 1, 2)
    # Two recipes of one cell: the lower *validation* error wins.
    two = table.iloc[:2].copy()
    two["group"], two["depth"], two["width"] = "x", 1, 1
    two["val_mean"] = [0.3, 0.2]
    picked, notes = select_best(two, ["group", "depth", "width"])
    assert picked.index.tolist() == [1] and "validation" in notes[0]


def test_labels_of_one_architecture_with_several_recipes_name_what_differs() -> None:
    import pandas as pd

    from archbench.analysis.data import unique_labels

    arch = {"family": "resnet", "resnet.depth": 14}
    table = pd.DataFrame(
        {
            "name": ["resnet14", "resnet14", "wrn16", "plain8", "plain8"],
            "hyperparameters": [
                {**arch, "recipe.lr": 0.0846478746510684, "recipe.weight_decay": 5e-4},
                {**arch, "recipe.lr": 0.1, "recipe.weight_decay": 5e-4},
                {"family": "wrn"},
                None,
                None,
            ],
        }
    )
    assert unique_labels(table) == [
        "resnet14 [lr=0.0846]",  # only what differs; floats to 3 significant digits
        "resnet14 [lr=0.1]",
        "wrn16",
        "plain8",
        "plain8 #2",  # nothing tells them apart but the recipe itself
    ]


def test_variant_names_follow_the_experiments_trials() -> None:
    from types import SimpleNamespace

    import pandas as pd

    from archbench.analysis.data import relabel, trial_labels

    trials = [
        SimpleNamespace(user_attrs={"spec_hash": "h1", "label": "plain8"}),
        SimpleNamespace(user_attrs={"label": "no hash"}),
    ]
    study = SimpleNamespace(get_trials=lambda deepcopy: trials)
    labels = trial_labels(study)
    assert labels == {"h1": "plain8"}
    frame = pd.DataFrame({"spec_hash": ["h1", "h2"], "name": ["plain8_w8", "resnet8_w8"]})
    assert relabel(frame, labels)["name"].tolist() == ["plain8", "resnet8_w8"]


# -- plots ------------------------------------------------------------------------------------

# Every registered kind in report order: the expectations below derive from the registry, so
# a new kind needs no edit here unless it draws from a fixture it should skip.
PLOT_KINDS = tuple(plot_kinds())

EXPECTED_DRAWN = {
    SWEEP: set(PLOT_KINDS) - {"budget"},
    BUDGET: {"cost", "time", "budget", "preact", "optuna-history"},
    THIN: {"cost", "time"},
}
LEGEND = {
    "depth",
    "width",
    "cost",
    "time",
    "degradation",
    "preact",
    "gradflow",
    "branch",
    "edf",
    "optuna-history",
    "optuna-pareto",
    "budget",
}
PERCENT_Y = {"depth", "width", "cost", "time", "budget", "degradation", "preact"}


def test_plot_kinds_registry(thin) -> None:
    from archbench.registry import PLOTS

    assert set(plot_kinds()) == set(PLOTS.names()) and len(PLOT_KINDS) >= 13
    orders = [PLOTS.get(k).order for k in PLOT_KINDS]
    assert orders == sorted(orders)  # report order is each kind's own ``order``
    assert PLOT_KINDS[:2] == ("depth", "width") and PLOT_KINDS[-1] == "optuna-pareto"

    # A new kind is one decorated function: listed last, rendered, and removed again.
    def draw(data, options):
        raise PlotSkipped("nothing to draw")

    try:
        register_plot("test-kind", "Test", "A kind registered by a test.")(draw)
        assert plot_kinds()[-1] == "test-kind"
        assert render(thin, "test-kind").skipped == "nothing to draw"
        with pytest.raises(ArchbenchError, match="already registered"):
            register_plot("test-kind", "Test", "again")(draw)
    finally:
        PLOTS.remove("test-kind")
    assert "test-kind" not in plot_kinds()


def _check_figure(kind: str, fig) -> None:
    width, height = fig.get_size_inches()
    assert 4 <= width <= 20 and 3 <= height <= 14, (kind, width, height)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes
    for ax in axes:
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel(), f"{kind}: colour bar without a label"
            continue  # each panel labelled, or in a grid whose outer panels carry the labels
        spec = ax.get_subplotspec()
        same_col = [
            a
            for a in axes
            if a.get_subplotspec() and spec and a.get_subplotspec().colspan == spec.colspan
        ]
        same_row = [
            a
            for a in axes
            if a.get_subplotspec() and spec and a.get_subplotspec().rowspan == spec.rowspan
        ]
        assert ax.get_xlabel() or any(a.get_xlabel() for a in same_col), f"{kind}: no x label"
        assert ax.get_ylabel() or any(a.get_ylabel() for a in same_row), f"{kind}: no y label"
    assert any(ax.get_xlabel() for ax in axes) and any(ax.get_ylabel() for ax in axes)
    assert any(ax.get_title() for ax in axes) or fig.get_suptitle()
    if kind in LEGEND:
        assert fig.legends or any(ax.get_legend() for ax in axes), f"{kind}: no legend"
    if kind in PERCENT_Y:
        assert "(%)" in axes[0].get_ylabel(), kind
    if kind == "heatmap":
        assert "(%)" in axes[-1].get_ylabel()  # the colour bar


@pytest.fixture(scope="module")
def sweep_plots(sweep, tmp_path_factory: pytest.TempPathFactory):
    """Every plot of the sweep, rendered once for the plot and report tests (and the
    rcParams before rendering)."""
    before = dict(mpl.rcParams)
    out = tmp_path_factory.mktemp("sweep_plots")
    return make_plots(sweep, out_dir=out), out, before


@pytest.mark.parametrize("experiment", [SWEEP, BUDGET, THIN])
def test_every_plot_from_the_fixture(experiment, request, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    if experiment == SWEEP:
        results, tmp_path, before = request.getfixturevalue("sweep_plots")
    else:
        data = request.getfixturevalue({BUDGET: "budget", THIN: "thin"}[experiment])
        before = dict(mpl.rcParams)
        results = make_plots(data, out_dir=tmp_path)
    assert [r.kind for r in results] == list(PLOT_KINDS)
    drawn = {r.kind for r in results if r.figure is not None}
    assert drawn == EXPECTED_DRAWN[experiment]
    for r in results:
        if r.kind in drawn:
            _check_figure(r.kind, r.figure)
            assert r.path == tmp_path / f"{r.kind}.png"
            assert r.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert r.path.stat().st_size > 15_000, r.kind
        else:
            assert r.skipped and r.figure is None and r.path is None
    assert plt.get_fignums() == []  # Optuna's pyplot figures were detached
    assert dict(mpl.rcParams) == before  # and its ggplot style did not leak


def test_depth_plot_shows_the_stored_means(sweep) -> None:
    fig = render(sweep, "depth").figure
    panel = next(ax for ax in fig.axes if ax.get_title() == "at width 16")
    line = next(ln for ln in panel.get_lines() if ln.get_label() == "plain")
    table = config_stats(sweep.runs)
    want = table[(table["family"] == "plain") & (table["width"] == 16)].sort_values("depth")
    assert line.get_xdata().tolist() == want["depth"].tolist()
    assert line.get_ydata() == pytest.approx(want["mean"].to_numpy() * 100)


def test_time_plot_places_each_configuration_at_its_mean_wall_time(budget) -> None:
    fig = render(budget, "time").figure
    runs = budget.runs[budget.runs["status"] == "completed"]
    want = runs.groupby("config_key")["wall_time_s"].mean()
    table = config_stats(budget.runs).set_index("config_key")
    drawn = sorted(
        (round(float(x), 6), round(float(y), 6))
        for bars in fig.axes[0].containers  # one errorbar per family; lines[0]: its markers
        for x, y in zip(bars.lines[0].get_xdata(), bars.lines[0].get_ydata())
    )
    expected = sorted(
        (round(float(want[k]), 6), round(float(table.loc[k, "mean"] * 100), 6)) for k in want.index
    )
    assert drawn == expected
    assert "wall time per run" in fig.axes[0].get_xlabel()


def test_skip_reasons(budget, thin) -> None:
    reasons = {r.kind: r.skipped for r in make_plots(thin, keep_figures=False)}
    assert "diagnostics" in reasons["gradflow"]
    assert "per-epoch" in reasons["degradation"]
    assert "no Optuna study" in reasons["optuna-history"]
    assert "budget" in reasons["budget"]
    assert "single-objective" in render(budget, "optuna-pareto").skipped
    assert "every trial has its own family" in render(budget, "optuna-importance").skipped


def test_heatmap_family_option(sweep) -> None:
    fig = render(sweep, "heatmap", PlotOptions(family="resnet")).figure
    assert fig.axes[0].get_title().startswith("resnet:")
    with pytest.raises(UnknownNameError, match="known: plain, preact, resnet"):
        render(sweep, "heatmap", PlotOptions(family="vgg"))
    with pytest.raises(UnknownNameError, match="unknown plot kind"):
        render(sweep, "nope")


# -- tables -----------------------------------------------------------------------------------


def test_summary_table_carries_the_fairness_columns(budget) -> None:
    table = summary_table(budget)
    assert len(table) == len(BUDGET_VARIANTS)
    assert table["test_err_mean_pct"].is_monotonic_increasing
    assert (table["flops"] == 2 * table["macs"]).all()
    assert set(table["budget"]) == {"75K params"}
    assert table["budget_error_pct"].abs().max() <= 10
    assert set(table["epochs"]) == {4} and set(table["seeds_n"]) == {len(BUDGET_SEEDS)}
    text = to_text(table)
    assert "95% CI %" in text and "budget err %" in text and "75K params" in text


def test_comparisons_against_the_best(budget) -> None:
    table = comparisons_table(budget)
    summary = config_stats(budget.runs)
    best = summary.sort_values("val_mean").iloc[0]["label"]
    assert set(table["b"]) == {best} and len(table) == len(BUDGET_VARIANTS) - 1
    # Holm over every pair (the reference was chosen on the same seeds' models).
    every = comparisons_table(budget, pairs="all")
    family = dict(zip(zip(every["a"], every["b"]), stats.holm(every["p"].tolist())))
    want = [family.get((a, b), family.get((b, a))) for a, b in zip(table["a"], table["b"])]
    assert table["p_holm"].tolist() == pytest.approx(want)
    assert set(table["p_min"]) == {2 / 2 ** len(BUDGET_SEEDS)}
    for row in table.to_dict("records"):
        outside = not row["diff_ci95_low_pct"] <= 0 <= row["diff_ci95_high_pct"]
        assert outside == (row["p"] < 0.05)  # the interval is the inverted test
        noise = row["p_holm"] >= 0.05
        assert (row["verdict"] == "within seed noise") == noise
    verdicts = dict(zip(table["a"], table["verdict"]))
    assert verdicts["plain14"] == f"{best} lower test error"  # 1.5 pp vs ~0.3 pp seed noise
    assert "within seed noise" in verdicts.values()
    pairs = comparisons_table(budget, pairs="all")
    assert len(pairs) == len(BUDGET_VARIANTS) * (len(BUDGET_VARIANTS) - 1) // 2
    # The row of a pair equals the statistic computed by hand on the runs.
    runs = budget.completed
    key = dict(zip(summary["label"], summary["config_key"]))
    a = runs[runs["config_key"] == key["plain14"]].set_index("seed")["test_err"].to_dict()
    b = runs[runs["config_key"] == key[best]].set_index("seed")["test_err"].to_dict()
    ref = stats.paired_difference(a, b)
    row = table[table["a"] == "plain14"].iloc[0]
    assert row["diff_mean_pct"] == pytest.approx(ref.mean_diff * 100)
    assert row["p"] == pytest.approx(ref.p)


def test_fairness_facts(budget, sweep) -> None:
    facts = dict(zip(*fairness_facts(budget).to_dict("list").values()))
    assert facts["epochs trained (completed runs)"] == "4 for every run"
    assert facts["seeds"].startswith(f"{list(BUDGET_SEEDS)} for every configuration")
    assert facts["budget target"] == "75K params, tolerance ±10%"
    assert "FLOPs = 2 x MACs" in facts["complexity convention"]
    assert "epochs=4" in facts["recipe (shared by every configuration)"]
    assert facts["recipe differences"] == "none"
    facts = dict(zip(*fairness_facts(sweep).to_dict("list").values()))
    assert facts["budget"].startswith("none")


def test_display_merges_interval_columns(sweep) -> None:
    shown = display(summary_table(sweep))
    assert "95% CI %" in shown.columns and "test_err_ci95_low_pct" not in shown.columns
    assert re.fullmatch(r"\[\d+\.\d\d, \d+\.\d\d\]", shown["95% CI %"].iloc[0])


# -- report -----------------------------------------------------------------------------------


def test_report_is_self_contained(sweep, sweep_plots) -> None:
    plots = sweep_plots[0]
    text = build_html(sweep, plots)
    for anchor in ("fairness", "results", "comparisons", "figures", "skipped", "spec"):
        assert f'id="{anchor}"' in text
    drawn = [p for p in plots if not p.skipped]
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) == len(drawn) == len(PLOT_KINDS) - 1
    for src in images:
        assert src.startswith("data:image/png;base64,")
    png = base64.b64decode(images[0].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"https?://|<script|<link|@import|url\(", text)
    assert "objectives: [val_acc, params]" in text  # the spec from the study's user attr
    assert "Equal-budget comparison</b> (budget)" in text  # listed as skipped, with reason
    assert "FLOPs = 2 x MACs" in text


def test_report_of_a_thin_experiment(thin, tmp_path: Path) -> None:
    text = write_report(thin, tmp_path / "thin.html").path.read_text(encoding="utf-8")
    assert text.count("<img ") == len(EXPECTED_DRAWN[THIN])  # the kinds a thin store draws
    assert "no per-block diagnostics" in text and "No spec stored" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(budget, tmp_path: Path) -> None:
    # CI (.ci/run) installs Chromium and sets ARCHBENCH_REQUIRE_CHROMIUM=1: never a skip there.
    if CHROMIUM is None:
        if os.environ.get("ARCHBENCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail("ARCHBENCH_REQUIRE_CHROMIUM=1 but chromium is not on PATH")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    report = write_report(budget, tmp_path / "budget.html").path
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        report.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    dom = subprocess.run(
        [*cmd[:-2], "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0 and "Paired comparisons" in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") == len(EXPECTED_DRAWN[BUDGET])


# -- CLI --------------------------------------------------------------------------------------


def test_cli_stats(store_path: Path, tmp_path: Path, capsys) -> None:
    rc = main(["stats", BUDGET, "--storage", str(store_path), "--csv", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "fairness facts" in out and "paired comparisons" in out and "plain14" in out
    assert "FLOPs = 2 x MACs" in out
    for name in ("facts", "summary", "comparisons"):
        assert (tmp_path / f"{BUDGET}-default-{name}.csv").stat().st_size > 100


def test_cli_stats_json(store_path: Path, capsys) -> None:
    assert main(["stats", BUDGET, "--storage", str(store_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "archbench.stats/1" and data["experiment"] == BUDGET
    assert "clipped to 0-100%" in data["facts"]["statistics"]
    rows = data["configurations"]
    assert {r["variant"] for r in rows} >= {"plain14", "resnet14"}
    assert all(0 <= r["test_err_ci95_low_pct"] <= r["test_err_ci95_high_pct"] <= 100 for r in rows)
    assert data["comparisons"] and "verdict" in data["comparisons"][0]


def test_gradflow_family_picks_the_families_and_refuses_unknown_ones(sweep) -> None:
    from archbench.analysis.plots import PlotOptions
    from archbench.errors import UnknownNameError

    default = render(sweep, "gradflow")
    assert default.figure is not None
    groups = sorted({ax.get_title().split(" ")[0] for ax in default.figure.axes if ax.get_title()})
    one = render(sweep, "gradflow", PlotOptions(family=groups[-1])).figure
    assert one is not None and len(one.axes) < len(default.figure.axes)
    with pytest.raises(UnknownNameError, match="no per-block diagnostics of 'nope'"):
        render(sweep, "gradflow", PlotOptions(family=f"{groups[0]},nope"))


def test_cli_plot_and_report(store_path: Path, tmp_path: Path, capsys) -> None:
    rc = main(["plot", "all", BUDGET, "--storage", str(store_path), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        f"{k}.png" for k in EXPECTED_DRAWN[BUDGET]
    )
    assert "gradflow           skipped: no per-block diagnostics" in out
    rc = main(["plot", "gradflow", BUDGET, "--storage", str(store_path), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("archbench: no plot drawn: no per-block diagnostics")
    html = tmp_path / "r.html"
    rc = main(["report", THIN, "--storage", str(store_path), "--out", str(html)])
    assert rc == 0 and html.stat().st_size > 10_000
    assert f"report: {html}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["stats", "nope"], "known experiments: fixture_budget, fixture_sweep, fixture_thin"),
        (["report", SWEEP, "--profile", "gpu"], "known profiles: cpu"),
        (["plot", "bogus", SWEEP], "unknown plot kind 'bogus'"),
        (["plot", "heatmap", SWEEP, "--family", "vgg"], "no family 'vgg'"),
    ],
)
def test_cli_errors_are_one_line(store_path: Path, argv, message, capsys) -> None:
    rc = main([*argv, "--storage", str(store_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("archbench: error: ") and message in err


def test_cli_missing_store(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["stats", "quickstart"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results/quickstart.db" in err and "--storage" in err


def test_cli_takes_a_spec_file(store_path: Path, tmp_path: Path, capsys) -> None:
    from fixtures_store import BUDGET_SPEC

    spec = tmp_path / "budget.yaml"
    spec.write_text(BUDGET_SPEC + f"storage: {store_path}\n")
    assert main(["stats", str(spec)]) == 0  # name, profile and storage from the spec
    assert "fixture_budget (profile default)" in capsys.readouterr().out


def test_make_report_script(store_path: Path, tmp_path: Path, capsys) -> None:
    import importlib.util

    path = Path(__file__).parents[1] / "analysis" / "make_report.py"
    spec = importlib.util.spec_from_file_location("make_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([THIN, "--storage", str(store_path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file() and (tmp_path / "figures" / "cost.png").is_file()
    assert {p.name for p in tmp_path.glob("*.csv")} == {
        "facts.csv",
        "summary.csv",
        "comparisons.csv",
    }
    assert module.main(["nope", "--storage", str(store_path)]) == 2


def test_heatmap_annotates_clipped_intervals_with_their_bounds(sweep) -> None:
    """Two seeds give t-intervals wider than the error's range: a cell clipped at 0% shows
    its real bounds, not a symmetric ±h reaching below 0%."""
    runs = sweep.runs[sweep.runs["seed"].isin([0, 1])].copy()
    key = runs.loc[runs["family"] == "resnet", "config_key"].iloc[0]
    for metric in ("val_err", "test_err"):  # 2% and 40%: the raw interval is below 0%
        runs.loc[runs["config_key"] == key, metric] = [0.02, 0.40]
    fig = render(replace(sweep, runs=runs), "heatmap", PlotOptions(family="resnet")).figure
    notes = [t.get_text() for t in fig.axes[0].texts if "\n" in t.get_text()]
    assert notes
    for note in notes:
        shown, interval = note.split("\n")
        mean = float(shown)
        if interval.startswith("±"):
            half = float(interval[1:])
            assert mean - half + 0.05 >= 0 and mean + half - 0.05 <= 100, note
        else:
            low, high = (float(v) for v in interval.strip("[]").split(","))
            assert 0 <= low <= mean <= high <= 100, note
    assert any(note.split("\n")[1].startswith("[") for note in notes)


def test_preact_plot_prefers_full_preactivation_and_takes_two_families() -> None:
    from archbench.analysis.plots.training import _preact_pair
    from archbench.errors import UnknownNameError

    groups = [
        "resnet_variant:basic",
        "resnet_variant:basic_bn_after_add",
        "resnet_variant:preact_basic",
    ]
    ep = pd.DataFrame({"group": groups})
    roles = dict(zip(groups, ["residual", "preact", "preact"]))
    # Sorted by name, BN-after-addition came first and was drawn as "pre-activation".
    assert _preact_pair(ep, roles, None) == {
        "residual": "resnet_variant:basic",
        "preact": "resnet_variant:preact_basic",
    }
    picked = _preact_pair(ep, roles, "resnet_variant:basic,resnet_variant:basic_bn_after_add")
    assert picked["preact"] == "resnet_variant:basic_bn_after_add"
    with pytest.raises(UnknownNameError, match="two families"):
        _preact_pair(ep, roles, "resnet_variant:basic")
    with pytest.raises(UnknownNameError, match="known: "):
        _preact_pair(ep, roles, "resnet_variant:basic,nope")


def test_curve_titles_say_the_seed_range_when_rounds_gave_some_configs_more() -> None:
    from archbench.analysis.plots.training import _seed_span

    ep = pd.DataFrame({"config_key": ["a"] * 8 + ["b"] * 12, "seed": [*range(8), *range(12)]})
    assert _seed_span(ep) == "8-12"
    assert _seed_span(ep[ep["config_key"] == "b"]) == "12"


def test_degradation_title_counts_the_seeds_of_the_drawn_configurations_only(sweep) -> None:
    """The plot draws one width; a width it does not draw with fewer seeds (a question's
    rounds stopped it) must not change the seed range in its title."""
    ep = sweep.epochs
    undrawn = ep["run_id"].isin(sweep.runs.loc[sweep.runs["width"] == 8, "run_id"])
    fewer = ep[~(undrawn & (ep["seed"] == ep["seed"].min()))]
    fig = render(replace(sweep, epochs=fewer), "degradation").figure
    assert [a.get_title() for a in fig.axes] == ["plain (width 16)", "resnet (width 16)"]
    assert fig._suptitle.get_text().endswith("mean of 3 seed(s)")
