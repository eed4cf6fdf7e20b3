"""Figure style shared by every plot: seaborn's look, Agg-safe figures, consistent colours.

Figures are made with ``matplotlib.figure.Figure`` directly (not pyplot): nothing global is
registered, nothing needs a display, and saving a PNG always goes through Agg.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from archbench.units import human_count

DPI = 110
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


@contextlib.contextmanager
def style() -> Iterator[None]:
    """seaborn's whitegrid look for the figures made inside; rcParams restored afterwards."""
    rc = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("notebook", font_scale=0.85),
        "savefig.dpi": DPI,
        "figure.dpi": DPI,
        "legend.frameon": True,
        "legend.framealpha": 0.9,
        "axes.titleweight": "bold",
        "figure.titleweight": "bold",
    }
    with mpl.rc_context(rc):
        yield


def figure(
    nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 4.2, **subplot_kw: object
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure and a 2-D array of axes, each panel ``width`` x ``height``."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def palette(names: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """A stable colour per name (sorted, so the same group has the same colour everywhere)."""
    names = sorted(set(names))
    colours = sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colours))


def sequential(n: int) -> list[tuple[float, float, float]]:
    """``n`` ordered colours (light to dark) for an ordered quantity such as depth."""
    return sns.color_palette("viridis_r", n + 1)[1:] if n > 1 else [sns.color_palette()[0]]


def count_axis(ax: object, axis: str = "x") -> None:
    """Log scale with count tick labels (75K, 1.2M; :func:`archbench.units.human_count`, the
    style of the tables and the CLI): counts, not bytes."""
    target = ax.xaxis if axis == "x" else ax.yaxis  # type: ignore[attr-defined]
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")  # type: ignore[attr-defined]
    target.set_major_formatter(FuncFormatter(lambda value, _pos: _tick(value)))

    def minor(value: float, _pos: object) -> str:
        # Under one decade there may be no major tick at all: label the minor ones then.
        lo, hi = sorted(target.get_view_interval())
        return _tick(value) if lo > 0 and hi / lo < 10 else ""

    target.set_minor_formatter(FuncFormatter(minor))


def _tick(value: float) -> str:
    return human_count(value, trim=True) if value > 0 else ""
