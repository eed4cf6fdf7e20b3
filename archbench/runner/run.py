"""Run an experiment spec in this process: what ``archbench run`` does with one worker, as a
function (no printing; progress goes to ``on_event``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import optuna

from archbench.runner.spec import ExperimentSpec, load_spec
from archbench.runner.study import RunnerOptions, prepare_study
from archbench.runner.worker import run_worker, set_worker_threads


def run_spec(
    spec: ExperimentSpec | str | Path,
    profile: str | None = None,
    *,
    on_event: Callable[[str], None] | None = None,
    **options: Any,
) -> optuna.Study:
    """Train every trial of ``spec`` (an :class:`ExperimentSpec` or a YAML path) that is not
    done yet, in this process, and return the Optuna study. Results go to the spec's results
    store (or ``storage=``); rerunning resumes. ``options`` are :class:`RunnerOptions` fields
    (``storage``, ``device``, ``threads``, ``progress``, ...). The process's torch thread
    count is set for the run and restored after it."""
    if not isinstance(spec, ExperimentSpec):
        spec = load_spec(spec, profile)
    known = {f.name for f in fields(RunnerOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown runner option(s) {unknown}; allowed: {', '.join(sorted(known))}")
    runner = RunnerOptions(**{"progress": False, **options})
    import torch

    before = torch.get_num_threads()  # the caller's setting, given back when we are done
    set_worker_threads(runner.threads)
    try:
        prepare_study(spec, runner)
        return run_worker(spec, runner, on_event=on_event)
    finally:
        torch.set_num_threads(before)
