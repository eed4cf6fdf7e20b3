"""The built-in plot kinds: importing this registers them (the PLOTS registry does, the first
time it is read)."""

from __future__ import annotations

from archbench.analysis.plots import optuna_views, tradeoff, training  # noqa: F401
