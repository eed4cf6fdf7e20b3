"""Analysis of stored results: trade-off plots, statistics over seeds, tables and a report.

Modules (import what you need; this package itself stays light so the CLI starts fast):

- :mod:`archbench.analysis.data`: :func:`load_experiment` -> :class:`ExperimentData`;
  :func:`config_stats` (per-configuration mean/std/t-interval over seeds).
- :mod:`archbench.analysis.stats`: t-intervals, paired differences (t-test, Wilcoxon), Holm,
  complexity-normalised EDF weights.
- :mod:`archbench.analysis.plots`: the plot kinds (entries of :data:`archbench.registry.PLOTS`,
  listed by :func:`~archbench.analysis.plots.plot_kinds`), :func:`make_plots`, :func:`render`.
- :mod:`archbench.analysis.tables`: summary, paired comparisons and fairness-facts tables.
- :mod:`archbench.analysis.sequential`: a question's planned looks (alpha spending, exact
  sign-flip test, Holm, racing), plain numbers in and out; :mod:`archbench.analysis.questions`
  replays them over stored runs (the runner's rounds and the ``stats`` table).
- :mod:`archbench.analysis.report`: :func:`write_report`, one self-contained HTML file.
"""

from __future__ import annotations
