"""What every plot kind shares: the kind type and its registration, the options a kind
draws with, the skip exception, and the drawing helpers (bands, sweeps, colours, labels).

Kinds live in :mod:`.tradeoff`, :mod:`.training` and :mod:`.optuna_views` and import only
from here, so nothing imports back into :mod:`archbench.analysis.plots`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from archbench.analysis.data import (
    METRICS,
    ExperimentData,
    config_stats,
    fixed_quantity,
    select_best,
)
from archbench.analysis.questions import owed_seeds
from archbench.analysis.style import (
    MARKERS,
    figure,
    palette,
)
from archbench.registry import PLOTS

ROLE_ORDER = ("plain", "residual", "preact")
#: Report position of a kind registered without one (third-party kinds): after the built-ins.
DEFAULT_ORDER = 1000


class PlotSkipped(Exception):
    """A plot that cannot be drawn from this experiment's data; the message says why."""


@dataclass(frozen=True)
class PlotOptions:
    metric: str = "test_err"  # final metric of the trade-off plots (val_err for selection)
    level: float = 0.95  # confidence level of bands and error bars
    family: str | None = None  # the family of the heatmap (default: the fullest grid)


@dataclass(frozen=True)
class PlotKind:
    name: str
    title: str
    description: str
    draw: Callable[[ExperimentData, PlotOptions], tuple[Figure, list[str]]]
    order: int = DEFAULT_ORDER  # position in the report and in ``plot_kinds()``


@dataclass
class PlotResult:
    """One plot kind's outcome: a figure (and file), or the reason it was skipped."""

    kind: str
    title: str
    description: str
    figure: Figure | None = None
    path: Path | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


def register_plot(
    name: str, title: str, description: str, *, order: int = DEFAULT_ORDER
) -> Callable:
    """Decorator: register ``fn(data, options) -> (figure, notes)`` as plot kind ``name`` in
    :data:`archbench.registry.PLOTS`; ``order`` is its place in reports (lower first)."""

    def decorate(fn: Callable) -> Callable:
        PLOTS.add(name, PlotKind(name, title, description, fn, order), description=description)
        return fn

    return decorate


# -- helpers ----------------------------------------------------------------------------------


def metric_label(metric: str) -> str:
    return f"{METRICS[metric]} (%)"


def _table(data: ExperimentData, options: PlotOptions) -> pd.DataFrame:
    # Diverged seeds count at 100% error (config_stats), as in every table.
    table = config_stats(data.runs, options.metric, options.level, owed_seeds(data))
    table = table[table["n"] > 0].copy()
    if table.empty:
        raise PlotSkipped(f"no completed run has a final {METRICS[options.metric]}")
    table["fixed"] = [fixed_quantity(row) for row in table.to_dict("records")]
    return table


def _seed_note(table: pd.DataFrame, level: float) -> str:
    from archbench.analysis.stats import interval_caption

    text = interval_caption(table["n"].tolist(), level)
    if "n_diverged" in table and table["n_diverged"].sum():
        text += "; diverged seeds counted at 100% error"
    if "complete" in table and not table["complete"].all():
        short = table.loc[~table["complete"], "label"].tolist()
        text += f"; lacking seeds: {', '.join(map(str, short[:3]))}" + (
            f" (+{len(short) - 3})" if len(short) > 3 else ""
        )
    return text


def _band(ax, x, sub: pd.DataFrame, colour, label: str, ls: str = "-", marker: str = "o") -> None:
    x = np.asarray(x, dtype=float)
    ax.plot(x, sub["mean"] * 100, ls=ls, marker=marker, color=colour, label=label, ms=5)
    ok = (sub["n"] >= 2).to_numpy()
    if ok.any():
        ax.fill_between(
            x[ok],
            sub["ci_low"].to_numpy()[ok] * 100,
            sub["ci_high"].to_numpy()[ok] * 100,
            color=colour,
            alpha=0.18,
            linewidth=0,
        )


def _group_order(groups: Sequence[str], roles: dict[str, str]) -> list[str]:
    def key(g: str) -> tuple[int, str]:
        role = roles.get(g, "")
        return (ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER), g)

    return sorted(set(groups), key=key)


def _roles(data: ExperimentData) -> dict[str, str]:
    return dict(zip(data.runs["group"], data.runs["role"]))


def _colours(data: ExperimentData) -> dict[str, tuple[float, float, float]]:
    return palette(data.runs["group"])


def _sweep_lines(
    table: pd.DataFrame, x: str, fixed_cols: list[str]
) -> tuple[list[tuple[str, str, pd.DataFrame]], list[str]]:
    """Lines of ``x`` per group and fixed quantity, keeping the ones with two or more points."""
    table, notes = select_best(table, ["group", x, *fixed_cols])
    lines = []
    for (group, *fixed), sub in table.groupby(["group", *fixed_cols], sort=True):
        if sub[x].nunique() >= 2:
            lines.append((group, ", ".join(map(str, fixed)), sub.sort_values(x)))
    return lines, notes


def natural_key(text: str) -> tuple:
    """'width 8' < 'width 16': numbers inside labels compare as numbers."""
    parts = re.split(r"(\d+(?:\.\d+)?)", str(text))
    return tuple(float(p) if i % 2 else p for i, p in enumerate(parts))


def _sweep_figure(
    data: ExperimentData,
    options: PlotOptions,
    lines: list[tuple[str, str, pd.DataFrame]],
    x: str,
    max_panels: int = 4,
) -> tuple[Figure, np.ndarray, list[str], list[str]]:
    """Small multiples: one panel per fixed quantity (a width, a depth or a budget), one
    line per family, colours shared with every other plot; the legend outside on the right."""
    notes = []
    facets = sorted({f for _, f, _ in lines}, key=natural_key)
    if len(facets) > max_panels:
        ranked = sorted(facets, key=lambda f: -sum(1 for _, ff, _ in lines if ff == f))
        keep = set(ranked[:max_panels])
        notes.append(f"showing {', '.join(sorted(keep, key=natural_key))} of {len(facets)} panels")
        facets = [f for f in facets if f in keep]
    colours = _colours(data)
    roles = _roles(data)
    groups = _group_order({g for g, _, _ in lines}, roles)
    ncols = len(facets) if len(facets) <= 3 else 2
    nrows = -(-len(facets) // ncols)
    fig, grid = figure(nrows, ncols, width=4.6 if len(facets) > 1 else 6.4, height=4.0, sharey=True)
    axes = grid.reshape(1, -1)
    for ax in axes[0, len(facets) :]:
        ax.set_visible(False)
    axes = axes[:, : len(facets)]
    for ax, facet in zip(axes[0], facets):
        for group, fixed, sub in sorted(lines, key=lambda line: groups.index(line[0])):
            if fixed == facet:
                marker = MARKERS[groups.index(group) % len(MARKERS)]
                _band(ax, sub[x], sub, colours[group], group, marker=marker)
        if len(facets) > 1:
            ax.set_title(f"at {facet}", fontsize="medium")
    for row in grid:
        row[0].set_ylabel(metric_label(options.metric))
    handles = [
        Line2D([], [], color=colours[g], marker=MARKERS[i % len(MARKERS)], label=g)
        for i, g in enumerate(groups)
    ]
    fig.legend(handles=handles, title="family", loc="outside right upper", fontsize="small")
    return fig, axes, facets, notes


def _sweep_title(fig: Figure, axes: np.ndarray, title: str, note: str) -> None:
    if axes.size == 1:  # one panel: a two-line axes title fits where a long suptitle would not
        # wrapped to the axes' width: the legend sits right of it, over any overhang
        axes[0, 0].set_title(f"{title}\n" + textwrap.fill(f"({note})", 52))
    else:
        fig.suptitle(f"{title} ({note})")
