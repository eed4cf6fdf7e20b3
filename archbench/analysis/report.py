"""One self-contained HTML report per experiment: tables, figures (base64 PNG), the spec.

The file loads nothing from anywhere (no scripts, fonts, stylesheets or images outside it),
so it opens from disk in any browser, offline, and can be mailed as is.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from archbench import __version__
from archbench.analysis import stats
from archbench.analysis.data import METRICS, ExperimentData
from archbench.analysis.plots import PlotOptions, PlotResult, make_plots
from archbench.analysis.questions import question_of
from archbench.analysis.stats import FEW_SEEDS
from archbench.analysis.tables import (
    Pairs,
    comparisons_table,
    display,
    fairness_facts,
    summary_table,
)

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1280px; padding: 1.5em 2em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
p.meta { color: #666; margin-top: 0; }
nav ul { columns: 2; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
table.facts td, table.facts th { text-align: left; white-space: normal; }
.scroll { overflow-x: auto; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; max-width: 60em; }
.noise { color: #777; }
.skip li { margin: 0.3em 0; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 1em; overflow-x: auto; }
"""


@dataclass(frozen=True)
class ReportResult:
    path: Path
    plots: list[PlotResult]

    @property
    def skipped(self) -> list[PlotResult]:
        return [p for p in self.plots if p.skipped]


def _png(result: PlotResult) -> str:
    if result.path is not None and result.path.suffix == ".png" and result.path.is_file():
        data = result.path.read_bytes()  # already rendered by make_plots(out_dir=...)
    else:
        buf = io.BytesIO()
        assert result.figure is not None
        result.figure.savefig(buf, format="png")
        data = buf.getvalue()
    return base64.b64encode(data).decode("ascii")


def _table_html(
    frame: pd.DataFrame, css: str = "", row_classes: Sequence[str] | None = None
) -> str:
    if frame.empty:
        return "<p>(no rows)</p>"
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, values in enumerate(frame.itertuples(index=False)):
        cls = row_classes[i] if row_classes else ""
        attr = f' class="{esc(cls)}"' if cls else ""
        cells = "".join(f"<td>{esc(str(v))}</td>" for v in values)
        rows.append(f"<tr{attr}>{cells}</tr>")
    attr = f' class="{esc(css)}"' if css else ""
    return (
        f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _comparisons_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>Fewer than two configurations with completed runs: nothing to compare.</p>"
    quiet = ("within seed noise", "undetermined", "no verdict", "no shared")
    classes = ["noise" if v.startswith(quiet) else "" for v in frame["verdict"]]
    return _table_html(display(frame), row_classes=classes)


def build_html(
    data: ExperimentData,
    plots: Sequence[PlotResult],
    *,
    metric: str = "test_err",
    pairs: Pairs = "best",
) -> str:
    drawn = [p for p in plots if p.figure is not None]
    skipped = [p for p in plots if p.skipped]
    parts = [
        *_head_html(data, drawn),
        '<h2 id="fairness">Fairness facts</h2>',
        _table_html(fairness_facts(data), "facts"),
        *_results_html(data, metric),
        *_question_html(data),
        *_pairs_html(data, metric, pairs),
        *_figures_html(drawn),
        *_skipped_html(skipped),
        *_spec_html(data),
        "</body></html>",
    ]
    return "\n".join(parts)


def _head_html(data: ExperimentData, drawn: Sequence[PlotResult]) -> list[str]:
    """The document head, title, provenance line, description and table of contents."""
    esc = html.escape
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>archbench report: {esc(data.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>archbench report: {esc(data.experiment)}</h1>",
        f'<p class="meta">profile <b>{esc(data.profile)}</b> &middot; store '
        f"{esc(data.store_url)} &middot; generated {now} by archbench {esc(__version__)}</p>",
    ]
    description = data.spec.get("description")
    if description:
        parts.append(f"<p>{esc(str(description))}</p>")
    toc = [
        ("fairness", "Fairness facts"),
        ("results", "Results per configuration"),
        ("comparisons", "Paired comparisons"),
        ("figures", "Figures"),
    ]
    toc += [(f"fig-{p.kind}", p.title) for p in drawn]
    toc += [("skipped", "Plots not drawn"), ("spec", "Experiment spec")]
    parts.append(
        "<nav><ul>"
        + "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in toc)
        + "</ul></nav>"
    )
    return parts


def _results_html(data: ExperimentData, metric: str) -> list[str]:
    """The per-configuration table, without columns that say nothing ("-" throughout)."""
    shown = display(summary_table(data, metric))
    shown = shown.drop(columns=[c for c in shown.columns if set(shown[c]) <= {"-"}])
    return [
        '<h2 id="results">Results per configuration</h2>',
        f"<p>Final {html.escape(METRICS[metric])} over completed and diverged runs (a "
        "diverged seed counts as 100% error), configurations with every seed first, best "
        "first; a configuration with failed, pruned or missing seeds comes after them, its note "
        "saying why. Mean, sample std and a descriptive 95% t-interval over seeds clipped to "
        "0-100% (an error rate cannot leave it; 'few seeds' marks intervals from fewer than "
        f"{FEW_SEEDS} seeds), in percent (pp = percentage points). Counts: params, MACs per "
        "image, FLOPs = 2 x MACs.</p>",
        _table_html(shown),
    ]


def _question_html(data: ExperimentData) -> list[str]:
    """The spec's question, as its rounds decided it (nothing without a question)."""
    from archbench.analysis.questions import display as question_display
    from archbench.analysis.questions import question_table

    table = question_table(data)
    if table.empty:
        return []
    classes = ["noise" if s in ("open", "stopped") else "" for s in table["state"]]
    return [
        '<h2 id="question">The question</h2>',
        f"<p>{html.escape(table.attrs['note'])} The states here are the verdicts; the "
        "exploratory paired comparisons below test all stored seeds once, without the "
        "sequential correction.</p>",
        _table_html(question_display(table), row_classes=classes),
    ]


def _pairs_html(data: ExperimentData, metric: str, pairs: Pairs) -> list[str]:
    """The paired comparisons and how to read them."""
    table = comparisons_table(data, metric, pairs)
    what = (
        "each configuration against the reference, the complete configuration with the lowest "
        "validation error (never chosen by test error)"
        if pairs == "best"
        else "every pair of configurations"
    )
    note = table.attrs.get("note", "")
    heading = "Paired comparisons"
    if question_of(data) is not None:
        heading = "Exploratory paired comparisons"
    return [
        f'<h2 id="comparisons">{heading}</h2>',
        f"<p>Differences a - b in {html.escape(METRICS[metric])} (percentage points) over the "
        f"seeds both ran, {what}. Each is tested with the {html.escape(stats.PAIRED_TEST)}; "
        "Holm's correction over every pair of the configurations with a verdict (also for "
        "the rows against the reference, chosen on the same seeds' models). Verdicts: "
        "'no verdict' when a configuration lacks "
        "seeds (failed, pruned or missing); 'undetermined' when n seeds cannot reach "
        "p &lt; 0.05 at all (2/2^n &ge; 0.05: fewer than 6 seeds); a winner when the "
        "Holm-adjusted p &lt; 0.05; else 'within seed noise'. Grey rows: no winner.</p>",
        *([f"<p><b>{html.escape(note)}</b></p>"] if note else []),
        _comparisons_html(table),
    ]


def _figures_html(drawn: Sequence[PlotResult]) -> list[str]:
    """Each drawn figure as an embedded PNG with its description and notes."""
    esc = html.escape
    parts = ['<h2 id="figures">Figures</h2>']
    if not drawn:
        parts.append("<p>No figure could be drawn from this experiment's data (see below).</p>")
    for p in drawn:
        notes = "".join(f"<li>{esc(n)}</li>" for n in p.notes)
        parts.append(
            f'<figure id="fig-{esc(p.kind)}"><h3>{esc(p.title)}</h3>'
            f'<img alt="{esc(p.title)}" src="data:image/png;base64,{_png(p)}">'
            f"<figcaption>{esc(p.description)}"
            + (f"<ul>{notes}</ul>" if notes else "")
            + "</figcaption></figure>"
        )
    return parts


def _skipped_html(skipped: Sequence[PlotResult]) -> list[str]:
    """The plot kinds not drawn, each with why."""
    esc = html.escape
    if not skipped:
        return [
            '<h2 id="skipped">Plots not drawn</h2>',
            "<p>Every plot kind had the data it needs.</p>",
        ]
    items = "".join(
        f"<li><b>{esc(p.title)}</b> ({esc(p.kind)}): {esc(p.skipped or '')}</li>" for p in skipped
    )
    return ['<h2 id="skipped">Plots not drawn</h2>', f'<ul class="skip">{items}</ul>']


def _spec_html(data: ExperimentData) -> list[str]:
    """The experiment spec as the study stored it, or why there is none."""
    esc = html.escape
    if data.spec_text:
        body = (
            "<p>As stored in the Optuna study (profile applied):</p>"
            f"<pre>{esc(data.spec_text)}</pre>"
        )
    else:
        body = f"<p>No spec stored with the results ({esc(data.study_note)}).</p>"
    return ['<h2 id="spec">Experiment spec</h2>', body]


def write_report(
    data: ExperimentData,
    out: str | Path,
    *,
    metric: str = "test_err",
    pairs: Pairs = "best",
    kinds: Sequence[str] | None = None,
    options: PlotOptions | None = None,
) -> ReportResult:
    """Render every plot kind (or ``kinds``) and write the report to ``out``."""
    options = options or PlotOptions(metric=metric)
    plots = make_plots(data, kinds, options=options)
    try:
        text = build_html(data, plots, metric=metric, pairs=pairs)
    finally:
        for p in plots:
            p.figure = None  # free the figures; the PNGs are in the HTML
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return ReportResult(out, plots)
