"""Tables ready to paste into a paper: ``--format markdown|latex`` of ``stats`` and ``results``.

A layer over whatever DataFrame the analysis returns (it reads column *patterns*, not a fixed
list, so new columns pass through): each ``<x>_mean_pct`` with its ``<x>_ci<level>_low_pct`` /
``_high_pct`` bounds becomes one ``mean ± half-width`` cell (``[low, high]`` beside the mean
where the interval is not symmetric, e.g. clipped at 0%), each ``<x>_mean`` / ``<x>_std``
fraction pair of ``results`` one ``mean ± std`` cell in percent; every other column is shown
as the terminal shows it (:func:`archbench.analysis.tables.display`), verdicts included.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from archbench.cli.format import tabulate_rows

_CI_LOW = re.compile(r"(?P<name>.+)_ci(?P<level>\d+)_low_pct")


def _label(name: str) -> str:
    from archbench.analysis.data import METRICS

    return "a - b, pp" if name == "diff" else f"{METRICS.get(name, name)} %"


def _mean_ci(mean: float, low: float, high: float, signed: bool) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (mean, low, high)):
        return "-"
    sign = "+" if signed else ""
    below, above = mean - low, high - mean
    if abs(below - above) < 0.005:  # symmetric at the shown precision
        return f"{mean:{sign}.2f} ± {(high - low) / 2:.2f}"
    return f"{mean:{sign}.2f} [{low:.2f}, {high:.2f}]"


def merge_mean_ci(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """``table`` with each mean and its CI bounds replaced by one preformatted column in the
    mean's place; returns it and ``{new column: header}``."""
    out = table.copy()
    headers: dict[str, str] = {}
    for column in table.columns:
        match = _CI_LOW.fullmatch(column)
        if not match:
            continue
        name, level = match["name"], match["level"]
        mean, high = f"{name}_mean_pct", f"{name}_ci{level}_high_pct"
        if mean not in table.columns or high not in table.columns:
            continue
        merged = f"{name}_mean_ci{level}"
        cells = [
            _mean_ci(m, lo, hi, signed=name == "diff")
            for m, lo, hi in zip(table[mean], table[column], table[high])
        ]
        position = list(out.columns).index(mean)
        out = out.drop(columns=[mean, column, high])
        out.insert(position, merged, cells)
        headers[merged] = f"{_label(name)} (mean ± {level}% CI)"
    return out, headers


def stats_table(table: pd.DataFrame, fmt: str) -> str:
    """A ``summary_table`` or ``comparisons_table`` frame as a paper table."""
    from archbench.analysis.tables import display

    if table.empty:
        return "(no rows)"
    merged, headers = merge_mean_ci(table)
    shown = display(merged, compact=True).rename(columns=headers)
    aligns = [">" if _numeric(shown[c]) else "<" for c in shown.columns]
    cells = [[str(v) for v in row] for row in shown.itertuples(index=False)]
    return tabulate_rows(list(shown.columns), cells, aligns, fmt)


def question_table(table: pd.DataFrame, fmt: str) -> str:
    """A spec's question as its rounds decided it (``analysis.questions.question_table``)."""
    from archbench.analysis.questions import display

    shown = display(table)
    aligns = [">" if _numeric(shown[c]) else "<" for c in shown.columns]
    cells = [[str(v) for v in row] for row in shown.itertuples(index=False)]
    return tabulate_rows(list(shown.columns), cells, aligns, fmt)


def facts_table(facts: pd.DataFrame, fmt: str) -> str:
    """The fairness facts (``fact``, ``value``) as a two-column table."""
    cells = [[str(f), str(v)] for f, v in zip(facts["fact"], facts["value"])]
    return tabulate_rows(["fact", "value"], cells, ["<", "<"], fmt)


def results_table(table: pd.DataFrame, fmt: str) -> str:
    """The ``results`` rows (errors as fractions) with ``mean ± std`` cells in percent."""
    from archbench.cli.format import frame_table

    out = table.copy()
    for column in list(table.columns):
        if not column.endswith("_mean") or f"{column[:-5]}_std" not in table.columns:
            continue
        std = f"{column[:-5]}_std"
        cells = [
            "-"
            if m is None or m != m
            else f"{100 * m:.2f}" + ("" if s is None or s != s else f" ± {100 * s:.2f}")
            for m, s in zip(table[column], table[std])
        ]
        position = list(out.columns).index(column)
        out = out.drop(columns=[column, std])
        out.insert(position, f"{column[:-5]} % (mean ± std)", cells)
    if "budget_error" in out.columns:
        out["budget_error"] = [
            "" if e is None or e != e else f"{e:+.2%}" for e in out["budget_error"]
        ]
    return frame_table(out, fmt)


def _numeric(values: Any) -> bool:
    """Right-align a column whose every shown value starts like a number."""
    shown = [str(v) for v in values if str(v) not in ("-", "")]
    return bool(shown) and all(re.match(r"[+-]?[\d\[.]", v) for v in shown)


def section(title: str, body: str, fmt: str) -> str:
    """A titled block: ``== title`` (text), ``### title`` (Markdown), a comment (LaTeX)."""
    if fmt == "markdown":
        return f"### {title}\n\n{body}"
    if fmt == "latex":
        return f"% {title}\n{body}"
    return f"== {title}\n{body}"
