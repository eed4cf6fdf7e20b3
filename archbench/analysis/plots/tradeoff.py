"""Trade-off plots: error vs depth, width, cost and budget; design-space EDFs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from archbench.analysis import stats
from archbench.analysis.data import (
    METRICS,
    ExperimentData,
    format_count,
    select_best,
)
from archbench.analysis.plots.shared import (
    PlotOptions,
    PlotSkipped,
    _colours,
    _group_order,
    _roles,
    _seed_note,
    _sweep_figure,
    _sweep_lines,
    _sweep_title,
    _table,
    metric_label,
    register_plot,
)
from archbench.analysis.style import LINESTYLES, MARKERS, count_axis, figure
from archbench.errors import UnknownNameError

#: Fewest configurations per family for an error EDF to mean anything.
MIN_EDF_CONFIGS = 3

# -- trade-offs -------------------------------------------------------------------------------


@register_plot(
    "depth",
    "Depth trade-off",
    "Final error vs depth, one line per family at a fixed width (or at a fixed budget, when "
    "the width was solved to one); the band is the t-interval of the mean over seeds, clipped to 0-100%. "
    "Depth is the family's depth parameter (20 for resnet20).",
    order=10,
)
def plot_depth(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    table = _table(data, options)
    lines, notes = _sweep_lines(table, "depth", ["fixed"])
    if not lines:
        raise PlotSkipped(
            "no family has completed runs at two or more depths with the same width or budget"
        )
    fig, axes, facets, more = _sweep_figure(data, options, lines, "depth")
    depths = sorted({int(d) for _, _, sub in lines for d in sub["depth"]})
    for ax in axes[0]:
        ax.set_xticks(depths)
        ax.set_xlabel("depth (family's depth parameter)")
    where = f" at {facets[0]}" if len(facets) == 1 else ""
    used = pd.concat([sub for _, _, sub in lines])
    _sweep_title(fig, axes, f"Error vs depth{where}", _seed_note(used, options.level))
    return fig, notes + more


@register_plot(
    "width",
    "Width trade-off",
    "Final error vs width, one line per family and depth; width is the family's width "
    "parameter (first-stage channels; the widening factor's 16k for wrn). Band: t-interval "
    "over seeds, clipped to 0-100%.",
    order=20,
)
def plot_width(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    table = _table(data, options)
    table["at_depth"] = [f"depth {d}" for d in table["depth"]]
    budget = [
        f"{format_count(t)} {m}" if isinstance(m, str) and pd.notna(t) else ""
        for m, t in zip(table["budget_metric"], table["budget_target"])
    ]
    table["at"] = [f"{d}, {b}" if b else d for d, b in zip(table["at_depth"], budget)]
    lines, notes = _sweep_lines(table, "width", ["at"])
    if not lines:
        raise PlotSkipped(
            "no family has completed runs at two or more widths at the same depth (under a "
            "budget the width is solved, so one depth has one width)"
        )
    fig, axes, facets, more = _sweep_figure(data, options, lines, "width")
    widths = sorted({float(w) for _, _, sub in lines for w in sub["width"]})
    for ax in axes[0]:
        if widths[-1] / widths[0] >= 4:
            ax.set_xscale("log", base=2)
        ax.set_xticks(widths)
        ax.set_xticklabels([f"{w:g}" for w in widths])
        ax.minorticks_off()
        ax.set_xlabel("width (family's width parameter)")
    where = f" at {facets[0]}" if len(facets) == 1 else ""
    used = pd.concat([sub for _, _, sub in lines])
    _sweep_title(fig, axes, f"Error vs width{where}", _seed_note(used, options.level))
    return fig, notes + more


def interval_note(mean: float, low: float, high: float) -> str:
    """A cell's annotation: the mean and its interval, ``±h`` when symmetric, else the
    (clipped) bounds, so a band cut at 0% is not shown as reaching below it."""
    if pd.isna(mean):
        return ""
    if pd.isna(low) or pd.isna(high):
        return f"{mean:.1f}"
    if abs((high - mean) - (mean - low)) < 0.05:  # symmetric to the shown precision
        return f"{mean:.1f}\n±{(high - low) / 2:.1f}"
    return f"{mean:.1f}\n[{low:.1f}, {high:.1f}]"


@register_plot(
    "heatmap",
    "Depth x width grid",
    "Mean final error (with the t-interval: ±half-width, or its bounds where clipped to "
    "0-100%) of one family over its depth x width grid: where extra capacity pays off, "
    "deeper or wider.",
    order=30,
)
def plot_heatmap(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    table = _table(data, options)
    table, notes = select_best(table, ["group", "depth", "width"])
    candidates = {}
    for group, sub in table.groupby("group"):
        if sub["depth"].nunique() >= 2 and sub["width"].nunique() >= 2:
            candidates[group] = len(sub)
    if options.family is not None:
        if options.family not in set(table["group"]):
            raise UnknownNameError(
                f"no family {options.family!r} in this experiment; known: "
                f"{', '.join(sorted(set(table['group'])))}"
            )
        if options.family not in candidates:
            raise PlotSkipped(f"family {options.family!r} has no depth x width grid (>= 2 each)")
        group = options.family
    elif not candidates:
        raise PlotSkipped("no family has runs at two or more depths and two or more widths")
    else:
        group = max(sorted(candidates), key=lambda g: candidates[g])
    sub = table[table["group"] == group]
    mean = sub.pivot_table(index="depth", columns="width", values="mean") * 100
    mean = mean.sort_index(ascending=False)
    low, high = (
        (sub.pivot_table(index="depth", columns="width", values=col) * 100).reindex_like(mean)
        for col in ("ci_low", "ci_high")
    )
    annot = mean.copy().astype(object)
    for d in mean.index:
        for w in mean.columns:
            annot.loc[d, w] = interval_note(mean.loc[d, w], low.loc[d, w], high.loc[d, w])
    fig, axes = figure(width=1.2 * len(mean.columns) + 3.2, height=0.75 * len(mean.index) + 2.0)
    ax = axes[0, 0]
    sns.heatmap(
        mean,
        ax=ax,
        annot=annot.to_numpy(),
        fmt="",
        cmap="viridis_r",
        linewidths=0.5,
        cbar_kws={"label": metric_label(options.metric)},
    )
    ax.set_xticklabels([f"{float(w):g}" for w in mean.columns])
    ax.set_xlabel("width (family's width parameter)")
    ax.set_ylabel("depth (family's depth parameter)")
    ax.set_title(
        f"{group}: {METRICS[options.metric]} over depth x width\n({_seed_note(sub, options.level)})"
    )
    if len(candidates) > 1 and options.family is None:
        others = ", ".join(sorted(set(candidates) - {group}))
        notes.append(f"other families with a grid (pick with --family): {others}")
    return fig, notes


def _errorbars_with_front(
    ax: Axes,
    table: pd.DataFrame,
    x_col: str,
    groups: list[str],
    colours: dict[str, Any],
    *,
    x_range: tuple[str, str] | None = None,
) -> None:
    """Per group, the mean error at ``x_col`` with its (clipped) t-interval, and horizontal
    bars from ``x_range`` columns; then the Pareto front of (x, mean error), circled."""
    for i, group in enumerate(groups):
        sub = table[table["group"] == group]
        x, y = sub[x_col].to_numpy(float), sub["mean"].to_numpy() * 100
        yerr = np.vstack([y - sub["ci_low"] * 100, sub["ci_high"] * 100 - y])
        xerr = None
        if x_range is not None:
            xerr = np.vstack([x - sub[x_range[0]], sub[x_range[1]] - x])
        ax.errorbar(
            x,
            y,
            xerr=xerr,
            yerr=np.where(np.isnan(yerr), 0.0, yerr),
            fmt=MARKERS[i % len(MARKERS)],
            color=colours[group],
            label=group,
            ms=6,
            capsize=2,
            alpha=0.9,
            zorder=3,
        )
    front = stats.pareto_front(table[x_col].astype(float), table["mean"])
    fx = table[x_col].to_numpy(float)[front]
    fy = table["mean"].to_numpy()[front] * 100
    ax.step(fx, fy, where="post", color="black", lw=1.3, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, s=110, facecolors="none", edgecolors="black", lw=1.0, zorder=4)


@register_plot(
    "cost",
    "Cost trade-off",
    "Final error vs parameters and vs MACs per image (log axes), one colour per family, "
    "error bars the t-interval over seeds (clipped to 0-100%); the black staircase is the Pareto front (no other "
    "configuration is both cheaper and better).",
    order=40,
)
def plot_cost(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    table = _table(data, options)
    if len(table) < 2:
        raise PlotSkipped("needs at least two configurations")
    colours = _colours(data)
    groups = _group_order(table["group"], _roles(data))
    fig, axes = figure(1, 2, width=5.6, height=4.4, sharey=True)
    for ax, col, label in (
        (axes[0, 0], "params", "parameters (count, log scale)"),
        (axes[0, 1], "macs", "MACs per image (log scale; FLOPs = 2 x MACs)"),
    ):
        _errorbars_with_front(ax, table, col, groups, colours)
        count_axis(ax, "x")
        ax.set_xlabel(label)
        ax.set_title(f"vs {'parameters' if col == 'params' else 'MACs'}")
    axes[0, 0].set_ylabel(metric_label(options.metric))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    fig.suptitle(f"Error vs cost ({_seed_note(table, options.level)})")
    return fig, []


@register_plot(
    "time",
    "Error vs training time",
    "Final error vs wall-clock time per run (one seed: training and evaluation), one colour "
    "per family; vertical bars the t-interval over seeds of the error (clipped to 0-100%), "
    "horizontal bars the seeds' range of the time; the staircase is the Pareto front. Times "
    "compare only runs on the same device under the same load.",
    order=45,
)
def plot_time(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    table = _table(data, options)
    done = data.runs[(data.runs["status"] == "completed") & data.runs["wall_time_s"].notna()]
    times = done.groupby("config_key")["wall_time_s"].agg(["mean", "min", "max"])
    table = table.join(times.add_prefix("time_"), on="config_key", how="inner")
    if len(table) < 2:
        raise PlotSkipped("needs at least two configurations with a recorded wall time")
    colours = _colours(data)
    groups = _group_order(table["group"], _roles(data))
    fig, axes = figure(1, 1, width=6.4, height=4.4)
    ax = axes[0, 0]
    _errorbars_with_front(ax, table, "time_mean", groups, colours, x_range=("time_min", "time_max"))
    for xi, yi, name in zip(table["time_mean"], table["mean"] * 100, table["label"]):
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=7)
    if table["time_mean"].max() / table["time_mean"].min() >= 10:
        ax.set_xscale("log")
    ax.set_xlabel("wall time per run (s; mean over seeds, bar: range)")
    ax.set_ylabel(metric_label(options.metric))
    ax.legend(fontsize="small")
    devices = sorted({str(d) for d in done["device"].dropna()})
    where = f" on {', '.join(devices)}" if devices else ""
    fig.suptitle(f"Error vs training time{where}\n({_seed_note(table, options.level)})")
    return fig, []


@register_plot(
    "budget",
    "Equal-budget comparison",
    "Each variant solved to the same parameter (or MAC) budget: the mean final error with its "
    "t-interval over seeds, clipped to 0-100% (dots: single seeds), and below it the achieved budget error "
    "(achieved - target, % of target) with the spec's tolerance band.",
    order=50,
)
def plot_budget(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    table = _table(data, options)
    table = table[table["budget_target"].notna() & table["budget_metric"].notna()]
    if table.empty:
        raise PlotSkipped("no variant was solved to a budget (the spec has no 'budget' section)")
    budgets = sorted(
        {(m, float(t)) for m, t in zip(table["budget_metric"], table["budget_target"])}
    )
    colours = _colours(data)
    tolerance = (data.spec.get("budget") or {}).get("tolerance")
    width = max(6.0, 0.75 * table.groupby(["budget_metric", "budget_target"]).size().max() + 2)
    fig = Figure(figsize=(min(22.0, width * len(budgets)), 6.6), layout="constrained")
    axes = fig.subplots(
        2, len(budgets), squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 1.4]}
    )
    for col, (metric, target) in enumerate(budgets):
        sub = table[(table["budget_metric"] == metric) & (table["budget_target"] == target)]
        sub = sub.sort_values("mean").reset_index(drop=True)
        top, bottom = axes[0, col], axes[1, col]
        _draw_budget_variants(top, bottom, sub, data.scored, colours, options.metric)
        top.set_ylabel(metric_label(options.metric))
        n_note = _seed_note(sub, options.level)
        top.set_title(f"Equal budget: {format_count(target)} {metric}\n({n_note}; dots: seeds)")
        _budget_error_axis(bottom, sub, metric, tolerance)
    return fig, []


def _draw_budget_variants(
    top: Axes,
    bottom: Axes,
    sub: pd.DataFrame,
    runs: pd.DataFrame,
    colours: dict[str, Any],
    metric: str,
) -> None:
    """Per variant (in ``sub``'s order): its seeds, mean and t-interval on ``top``, its
    achieved budget error as a labelled bar on ``bottom``."""
    rng = np.random.default_rng(0)  # the same jitter in every budget's column
    for i, row in sub.iterrows():
        colour = colours[row["group"]]
        seeds = runs.loc[runs["config_key"] == row["config_key"], metric].dropna()
        jitter = rng.uniform(-0.12, 0.12, len(seeds))
        top.scatter(i + jitter, seeds * 100, s=12, color=colour, alpha=0.45, zorder=2)
        y = row["mean"] * 100
        err = None
        if row["n"] >= 2:
            err = [[y - row["ci_low"] * 100], [row["ci_high"] * 100 - y]]
        top.errorbar(
            i,
            y,
            yerr=err,
            fmt="o",
            color=colour,
            ms=8,
            capsize=5,
            lw=2,
            zorder=3,
            mec="black",
            mew=0.6,
        )
        be = row["budget_error"] * 100
        bottom.bar(i, be, color=colour, width=0.6, edgecolor="black", lw=0.5)
        bottom.annotate(
            f"{be:+.1f}%",
            (i, be),
            xytext=(0, 3 if be >= 0 else -3),
            textcoords="offset points",
            ha="center",
            va="bottom" if be >= 0 else "top",
            fontsize="x-small",
        )


def _budget_error_axis(bottom: Axes, sub: pd.DataFrame, metric: str, tolerance: Any) -> None:
    """The budget-error axis: zero line, the spec's tolerance band, limits and labels."""
    bottom.axhline(0, color="black", lw=0.8)
    if tolerance:
        tol = float(tolerance) * 100
        bottom.axhspan(-tol, tol, color="grey", alpha=0.12, lw=0, label=f"tolerance ±{tol:g}%")
        bottom.legend(loc="lower right", fontsize="x-small")
    lim = max(
        1.0,
        float(np.nanmax(np.abs(sub["budget_error"] * 100))) * 1.6,
        float(tolerance or 0) * 100 * 1.15,
    )
    bottom.set_ylim(-lim, lim)
    bottom.set_ylabel(f"achieved {metric}\n- target (%)")
    bottom.set_xticks(range(len(sub)))
    bottom.set_xticklabels(sub["label"], rotation=30, ha="right")
    bottom.set_xlabel("variant (sorted by mean error)")


# -- design spaces ----------------------------------------------------------------------------


@register_plot(
    "edf",
    "Design-space error EDFs",
    "Empirical distribution of the configurations' mean final error per family (left), and "
    "the same with each family's models reweighted so that every family has the same "
    "parameter-count distribution (right; Radosavovic et al. 2019, 'On Network Design "
    "Spaces for Visual Recognition'): a curve further up and left is a better design space.",
    order=100,
)
def plot_edf(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    table = _table(data, options)
    sizes = table.groupby("group").size()
    keep = sorted(sizes[sizes >= MIN_EDF_CONFIGS].index)
    if len(keep) < 2:
        raise PlotSkipped(
            f"needs two or more families with >= {MIN_EDF_CONFIGS} configurations each "
            f"(have: {', '.join(f'{g}={n}' for g, n in sizes.items())})"
        )
    table = table[table["group"].isin(keep)]
    n_bins = int(np.clip(sizes[keep].min() // 2, 2, 6))
    edges = stats.log_bins(table["params"].astype(float), n_bins)
    try:
        weights = stats.complexity_weights(table["group"], table["params"].astype(float), edges)
    except ValueError as exc:
        raise PlotSkipped(f"cannot normalise complexity: {exc}") from None
    colours = _colours(data)
    fig, axes = figure(1, 2, width=5.4, height=4.4, sharey=True)
    notes = []
    for i, group in enumerate(_group_order(keep, _roles(data))):
        mask = (table["group"] == group).to_numpy()
        values = table["mean"].to_numpy()[mask] * 100
        for ax, w in ((axes[0, 0], None), (axes[0, 1], weights[mask])):
            x, f = stats.weighted_edf(values, w)
            x = np.r_[x[0], x]
            f = np.r_[0.0, f]
            ax.step(
                x,
                f,
                where="post",
                color=colours[group],
                lw=2,
                ls=LINESTYLES[i % len(LINESTYLES)],
                label=f"{group} (n={mask.sum()})",
            )
        dropped = int((weights[mask] == 0).sum())
        if dropped:
            notes.append(f"{group}: {dropped} model(s) outside the shared parameter range")
    axes[0, 0].set_title("Error EDF")
    axes[0, 1].set_title(f"Complexity-normalised EDF\n(params in {n_bins} log bins, equal mass)")
    for ax in axes[0]:
        ax.set_xlabel(f"mean {metric_label(options.metric)} of a configuration")
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel("fraction of configurations with error <= x")
    axes[0, 0].legend(fontsize="small", loc="lower right")
    fig.suptitle("Design spaces: distribution of configuration errors per family")
    return fig, notes
