"""Training-dynamics plots: error curves per epoch, gradient flow, residual-branch ratios."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from archbench.analysis import stats
from archbench.analysis.data import (
    METRICS,
    ExperimentData,
    fixed_quantity,
)
from archbench.analysis.plots.shared import (
    PlotOptions,
    PlotSkipped,
    _colours,
    _group_order,
    _roles,
    _seed_note,
    register_plot,
)
from archbench.analysis.style import MARKERS, figure, sequential
from archbench.errors import UnknownNameError

# -- training curves --------------------------------------------------------------------------


def _curve_metric(epochs: pd.DataFrame) -> str:
    for name in ("test_err", "val_err"):
        if name in epochs and epochs[name].notna().any():
            return name
    raise PlotSkipped("no epoch has a test or validation error recorded")


def _curves(data: ExperimentData) -> tuple[pd.DataFrame, str]:
    ep = data.epochs
    ep = ep[ep["status"].isin(["completed", "diverged"])]
    if ep.empty or ep["train_err"].notna().sum() == 0:
        raise PlotSkipped("no per-epoch training error was recorded")
    ep = ep.copy()
    ep["fixed"] = [fixed_quantity(row) for row in ep.to_dict("records")]
    return ep, _curve_metric(ep)


def _mean_curve(ep: pd.DataFrame, metric: str) -> pd.DataFrame:
    return ep.groupby("epoch", as_index=False)[["train_err", metric]].mean().sort_values("epoch")


def _most_depths(ep: pd.DataFrame) -> str:
    """The fixed quantity (width or budget) at which this group ran the most depths."""
    counts = ep.groupby("fixed")["depth"].nunique()
    return str(counts.sort_values(ascending=False, kind="stable").index[0])


def _style_legend(ax, extra: list[Line2D], metric: str) -> None:
    handles, _labels = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="black", ls="--", label="training error"),
        Line2D([], [], color="black", ls="-", label=METRICS[metric]),
        *extra,
    ]
    ax.legend(handles=handles, fontsize="small")


@register_plot(
    "degradation",
    "Degradation: plain vs residual",
    "Training error (dashed) and test error (solid) per epoch, mean over seeds, for plain "
    "and residual nets at several depths (cf. He et al. 2016, Fig. 1 and 6): a deeper plain "
    "net training worse is the degradation problem; shortcuts remove it.",
    order=60,
)
def plot_degradation(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    ep, metric = _curves(data)
    roles = _roles(data)
    panels = []
    for role in ("plain", "residual"):
        groups = sorted({g for g in ep["group"] if roles.get(g) == role})
        if not groups:
            raise PlotSkipped(f"no {role} family has per-epoch metrics in this experiment")
        panels.append(groups[0])
    chosen = []
    for group in panels:
        sub = ep[ep["group"] == group]
        fixed = _most_depths(sub)
        chosen.append((group, fixed, sub[sub["fixed"] == fixed]))
    if max(s["depth"].nunique() for _, _, s in chosen) < 2:
        raise PlotSkipped("plain and residual nets ran at one depth only; needs two or more")
    depths = sorted({int(d) for _, _, s in chosen for d in s["depth"]})
    colours = dict(zip(depths, sequential(len(depths))))
    fig, axes = figure(1, len(chosen), width=5.4, height=4.4, sharey=True)
    for ax, (group, fixed, sub) in zip(axes[0], chosen):
        for depth, dsub in sub.groupby("depth"):
            curve = _mean_curve(dsub, metric)
            c = colours[int(depth)]
            ax.plot(curve["epoch"], curve["train_err"] * 100, ls="--", color=c)
            ax.plot(curve["epoch"], curve[metric] * 100, ls="-", color=c, label=f"{group}-{depth}")
        ax.set_title(f"{group} ({fixed})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _style_legend(ax, [], metric)
    axes[0, 0].set_ylabel("error (%)")
    seeds = _seed_span(pd.concat([sub for _, _, sub in chosen]))  # the drawn ones only
    fig.suptitle(f"Training (dashed) and {METRICS[metric]} (solid), mean of {seeds} seed(s)")
    notes = [
        f"other {roles[g]} families: {g}"
        for g in sorted(set(ep["group"]) - set(panels))
        if roles.get(g) in ("plain", "residual")
    ]
    return fig, notes


@register_plot(
    "preact",
    "Original vs a pre-activation ordering",
    "Training (dashed) and test (solid) error per epoch of the original (post-activation) "
    "residual net and a family of the 'preact' role (a block that moves BN/ReLU): full "
    "pre-activation when the experiment has it, else the first by name; the title names "
    "both; --family a,b picks the two. At the largest depth both ran (cf. He et al. 2016, "
    "'Identity Mappings in Deep Residual Networks', Fig. 6).",
    order=70,
)
def plot_preact(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    ep, metric = _curves(data)
    found = _preact_pair(ep, _roles(data), options.family)
    a = ep[ep["group"] == found["residual"]]
    b = ep[ep["group"] == found["preact"]]
    common = sorted(set(zip(a["depth"], a["fixed"])) & set(zip(b["depth"], b["fixed"])))
    notes = []
    if common:
        depth = max(d for d, _ in common)
        fixed = sorted(f for d, f in common if d == depth)[0]
        picks = [
            (found["residual"], a[(a["depth"] == depth) & (a["fixed"] == fixed)]),
            (found["preact"], b[(b["depth"] == depth) & (b["fixed"] == fixed)]),
        ]
        title = f"Depth {depth} ({fixed})"
    else:
        picks = [
            (g, s[s["depth"] == s["depth"].max()])
            for g, s in ((found["residual"], a), (found["preact"], b))
        ]
        title = "At each family's largest depth (no depth and width in common)"
        notes.append("the two families share no depth and width; each shown at its largest")
    colours = _colours(data)
    fig, axes = figure(width=6.8, height=4.4)
    ax = axes[0, 0]
    for i, (group, sub) in enumerate(picks):
        label = f"{group}-{int(sub['depth'].iloc[0])}"
        curve = _mean_curve(sub, metric)
        style_kw = {"color": colours[group], "marker": MARKERS[i], "ms": 5}
        ax.plot(curve["epoch"], curve["train_err"] * 100, ls="--", **style_kw)
        ax.plot(curve["epoch"], curve[metric] * 100, ls="-", label=label, **style_kw)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("error (%)")
    seeds = _seed_span(pd.concat([sub for _, sub in picks]))
    # Name the two groups drawn: the "preact" role covers every Fig. 4 ordering that moves
    # BN/ReLU (BN after addition, ReLU before addition, ...), not only full pre-activation.
    drawn = " vs ".join(group for group, _ in picks)
    if len(drawn) > 55:  # long family names: one per line, not cut off at the edge
        drawn = "\nvs ".join(group for group, _ in picks)
    ax.set_title(f"{drawn}\n{title}, mean of {seeds} seed(s)")
    _style_legend(ax, [], metric)
    return fig, notes


def _seed_span(ep: pd.DataFrame) -> str:
    """Seeds per configuration: "12", or "8-12" when a question's rounds gave some more."""
    counts = ep.groupby("config_key")["seed"].nunique()
    low, high = int(counts.min()), int(counts.max())
    return str(high) if low == high else f"{low}-{high}"


def _preact_pair(ep: pd.DataFrame, roles: dict[str, str], family: str | None) -> dict[str, str]:
    """The two groups of the preact plot: ``residual`` and ``preact`` (``family``: "a,b")."""
    known = set(ep["group"])
    if family:
        wanted = [g.strip() for g in family.split(",")]
        unknown = [g for g in wanted if g not in known]
        if len(wanted) != 2 or unknown:
            raise UnknownNameError(
                f"--family for the preact plot: two families with per-epoch metrics, "
                f"'original,other', got {family!r}; known: {', '.join(sorted(known))}"
            )
        return {"residual": wanted[0], "preact": wanted[1]}
    found = {}
    for role in ("residual", "preact"):
        groups = sorted({g for g in known if roles.get(g) == role})
        if not groups:
            raise PlotSkipped(f"no {role} family has per-epoch metrics in this experiment")
        # Full pre-activation is the paper's comparison; other Fig. 4 orderings share the role.
        full = [g for g in groups if g.split(":")[-1] in FULL_PREACT_BLOCKS]
        found[role] = (full or groups)[0]
    return found


#: Blocks of the full pre-activation unit (He et al. 2016, Fig. 4(e)).
FULL_PREACT_BLOCKS = ("preact_basic", "preact_bottleneck", "preact")


# -- gradient flow ----------------------------------------------------------------------------


def _diagnostics(data: ExperimentData, column: str, what: str) -> pd.DataFrame:
    diag = data.diagnostics
    if diag.empty:
        raise PlotSkipped(
            "no per-block diagnostics (gradient norms, branch ratios) were recorded for these runs"
        )
    diag = diag[diag[column].notna() & diag["status"].isin(["completed", "diverged"])]
    if diag.empty:
        raise PlotSkipped(f"no {what} was recorded")
    diag = diag.copy()
    diag["fixed"] = [fixed_quantity(row) for row in diag.to_dict("records")]
    return diag


def _pick_depths(depths: Sequence[int], most: int = 4) -> list[int]:
    depths = sorted(set(depths))
    if len(depths) <= most:
        return depths
    idx = np.unique(np.linspace(0, len(depths) - 1, most).round().astype(int))
    return [depths[i] for i in idx]


def _epoch_name(epoch: int) -> str:
    return "at initialisation (epoch 0)" if epoch == 0 else f"after epoch {epoch}"


@register_plot(
    "gradflow",
    "Gradient flow",
    "L2 norm of each block's parameter gradients vs its position (0 = nearest the input), "
    "measured on a fixed batch at initialisation and at the last recorded epoch, mean over "
    "seeds, log scale: plain nets' gradients shrink towards the input, residual ones do not.",
    order=80,
)
def plot_gradflow(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    diag = _diagnostics(data, "grad_norm", "gradient norm")
    roles = _roles(data)
    groups = _group_order(diag["group"], roles)[:4]
    if options.family:  # --family a,b,c: the (up to 4) families to compare
        wanted = [g.strip() for g in options.family.split(",")]
        known = set(diag["group"])
        unknown = [g for g in wanted if g not in known]
        if unknown:  # as the heatmap: a misspelt name is an error, not a silent default
            raise UnknownNameError(
                f"no per-block diagnostics of {', '.join(map(repr, unknown))} in this "
                f"experiment; known: {', '.join(sorted(known))}"
            )
        groups = wanted[:4]
    notes = []
    if len(set(diag["group"])) > len(groups):
        notes.append(f"showing families {', '.join(groups)}")
    epochs = sorted({int(diag["epoch"].min()), int(diag["epoch"].max())})
    picks = {}
    for group in groups:
        sub = diag[diag["group"] == group]
        fixed = _most_depths(sub)
        sub = sub[sub["fixed"] == fixed]
        picks[group] = (fixed, sub[sub["depth"].isin(_pick_depths(sub["depth"]))])
    depths = sorted({int(d) for _, s in picks.values() for d in s["depth"]})
    colours = dict(zip(depths, sequential(len(depths))))
    fig, axes = figure(len(epochs), len(groups), width=4.3, height=3.5, sharey=True)
    for r, epoch in enumerate(epochs):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            fixed, sub = picks[group]
            at = sub[sub["epoch"] == epoch]
            for depth, dsub in at.groupby("depth"):
                curve = dsub.groupby("block_index")["grad_norm"].mean()
                ax.plot(
                    curve.index,
                    curve.to_numpy(),
                    marker=".",
                    color=colours[int(depth)],
                    label=f"depth {depth}",
                )
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # blocks are counted
            ax.set_title(f"{group} ({fixed})\n{_epoch_name(epoch)}", fontsize="medium")
            if r == len(epochs) - 1:
                ax.set_xlabel("block index (0 = input side)")
            if c == 0:
                ax.set_ylabel("gradient L2 norm (log)")
            if at.empty:
                ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center")
    handles = [Line2D([], [], color=colours[d], marker=".", label=f"depth {d}") for d in depths]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    fig.suptitle("Per-block gradient norm vs position (mean over seeds)")
    return fig, notes


@register_plot(
    "branch",
    "Residual-branch ratio",
    "Mean over blocks of ||F(x)|| / ||x|| at the residual addition vs depth, at "
    "initialisation (dashed) and at the last recorded epoch (solid), mean and t-interval "
    "over seeds: how much each block changes its input.",
    order=90,
)
def plot_branch(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    diag = _diagnostics(data, "branch_ratio", "residual-branch ratio (no residual blocks)")
    diag, notes = _at_most_depths(diag)
    first, last = int(diag["epoch"].min()), int(diag["epoch"].max())
    table = _branch_table(diag, (first, last), options.level)
    lines = [
        (g, f, e, sub.sort_values("depth"))
        for (g, f, e), sub in table.groupby(["group", "fixed", "epoch"])
        if sub["depth"].nunique() >= 2
    ]
    if not lines:
        raise PlotSkipped("branch ratios exist at one depth only; needs two or more")
    fig, axes = figure(width=7.0, height=4.4)
    ax = axes[0, 0]
    _draw_branch_lines(ax, data, lines, first, last)
    ax.set_xticks(sorted({int(d) for *_, s in lines for d in s["depth"]}))
    ax.set_xlabel("depth (family's depth parameter)")
    ax.set_ylabel("mean ||F(x)|| / ||x|| over blocks")
    extra = []
    if first != last:
        extra = [
            Line2D([], [], color="black", ls="--", label=_epoch_name(first)),
            Line2D([], [], color="black", ls="-", label=_epoch_name(last)),
        ]
    handles, _labels = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra, fontsize="small")
    ax.set_title(f"Residual-branch ratio vs depth\n({_seed_note(table, options.level)})")
    return fig, notes


def _at_most_depths(diag: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Each group's rows at the fixed quantity it has the most depths for (with a note where
    it had several)."""
    notes = []
    keep = []
    for group, sub in diag.groupby("group"):
        fixed = _most_depths(sub)
        keep.append(sub[sub["fixed"] == fixed])
        if sub["fixed"].nunique() > 1:
            notes.append(f"{group}: shown at {fixed} (its most depths)")
    return pd.concat(keep), notes


def _branch_table(diag: pd.DataFrame, epochs: tuple[int, int], level: float) -> pd.DataFrame:
    """Per (group, fixed, configuration, depth, epoch): the t-interval over seeds of each
    run's mean branch ratio over blocks, at the first and last recorded epochs."""
    per_run = (
        diag[diag["epoch"].isin(list(epochs))]
        .groupby(["group", "fixed", "config_key", "depth", "epoch", "run_id"], as_index=False)[
            "branch_ratio"
        ]
        .mean()
    )
    rows = []
    for (group, fixed, _key, depth, epoch), sub in per_run.groupby(
        ["group", "fixed", "config_key", "depth", "epoch"]
    ):
        s = stats.t_interval(sub["branch_ratio"].tolist(), level)
        rows.append(
            {
                "group": group,
                "fixed": fixed,
                "depth": depth,
                "epoch": epoch,
                "n": s.n,
                "mean": s.mean,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
            }
        )
    return pd.DataFrame(rows)


def _draw_branch_lines(
    ax: Axes, data: ExperimentData, lines: list[tuple[Any, ...]], first: int, last: int
) -> None:
    """One line per (group, fixed, epoch) with its t-interval band; dashed at initialisation."""
    colours = _colours(data)
    order = _group_order({g for g, *_ in lines}, _roles(data))
    for group, fixed, epoch, sub in lines:
        label = f"{group} ({fixed})"
        ls = "--" if epoch == first and first != last else "-"
        marker = MARKERS[order.index(group) % len(MARKERS)]
        ax.plot(
            sub["depth"],
            sub["mean"],
            ls=ls,
            marker=marker,
            color=colours[group],
            label=label if ls == "-" else None,
        )
        ok = (sub["n"] >= 2).to_numpy()
        if ok.any():
            ax.fill_between(
                sub["depth"].to_numpy()[ok],
                sub["ci_low"].to_numpy()[ok],
                sub["ci_high"].to_numpy()[ok],
                color=colours[group],
                alpha=0.15,
                lw=0,
            )
