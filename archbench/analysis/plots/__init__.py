"""Plot kinds: the registry's kinds in report order, rendering and saving.

Each plot kind turns an :class:`ExperimentData` into a Figure. Kinds are entries of the core
registry :data:`archbench.registry.PLOTS`, registered with
:func:`~archbench.analysis.plots.shared.register_plot`; the built-in ones live in
:mod:`.tradeoff` (depth, width, heatmap, cost, budget, edf), :mod:`.training` (degradation,
preact, gradflow, branch) and :mod:`.optuna_views`, imported the first time the registry is
read (:mod:`.builtin`). A new kind is one decorated function: the CLI, the report and the
tests list kinds from the registry.

A plot that lacks its data (one seed, no diagnostics, a single depth, ...) raises
:class:`PlotSkipped` with the reason; :func:`make_plots` records the reason and goes on.
Errors are plotted in percent; counts on log axes with count labels (75K, 1.2M).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from archbench.analysis.data import ExperimentData
from archbench.analysis.plots.shared import (
    PlotKind,
    PlotOptions,
    PlotResult,
    PlotSkipped,
    register_plot,
)
from archbench.analysis.style import style
from archbench.errors import UnknownNameError
from archbench.registry import PLOTS

__all__ = [
    "PLOTS",
    "PlotKind",
    "PlotOptions",
    "PlotResult",
    "PlotSkipped",
    "make_plots",
    "plot_kinds",
    "register_plot",
    "render",
]

log = logging.getLogger(__name__)


def plot_kinds() -> list[str]:
    """Every registered kind in report order (each kind's ``order``, then its name)."""
    kinds = sorted(PLOTS.entries(), key=lambda e: (e.obj.order, e.name))
    return [e.name for e in kinds]


def render(data: ExperimentData, kind: str, options: PlotOptions | None = None) -> PlotResult:
    """Draw one plot kind; a lack of data gives a result with ``skipped`` set, not an error."""
    if kind not in PLOTS:
        raise UnknownNameError(f"unknown plot kind {kind!r}; known: {', '.join(plot_kinds())}")
    spec = PLOTS.get(kind)
    options = options or PlotOptions()
    result = PlotResult(kind, spec.title, spec.description)
    try:
        with style():
            result.figure, result.notes = spec.draw(data, options)
    except PlotSkipped as exc:
        result.skipped = str(exc)
    return result


def make_plots(
    data: ExperimentData,
    kinds: Sequence[str] | None = None,
    *,
    options: PlotOptions | None = None,
    out_dir: str | Path | None = None,
    keep_figures: bool = True,
) -> list[PlotResult]:
    """Render ``kinds`` (default: all); with ``out_dir``, save each as ``<kind>.png``."""
    results = []
    for kind in kinds or plot_kinds():
        result = render(data, kind, options)
        if result.figure is not None and out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            result.path = out / f"{kind}.png"
            result.figure.savefig(result.path)
        if not keep_figures:
            result.figure = None
        results.append(result)
    return results
