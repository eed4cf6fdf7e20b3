"""How a run ended: which configurations did not finish, and why.

A configuration is *finished* when its trial completed (its runs may have diverged: that is
recorded as a result) or was pruned. Everything else is *unfinished*: it failed (the reason
the objective recorded), is still running in another worker, or was never run. ``archbench
run`` lists them one line each and exits non-zero (:mod:`archbench.cli.exit_codes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from archbench.runner.identity import grid_entries
from archbench.runner.spec import ExperimentSpec
from archbench.runner.study import (
    ALIVE_STATES,
    DONE_STATES,
    _origin,
    seed_targets,
    trial_covers,
    trial_key,
)

FAIL_REASON_ATTR = "fail_reason"  # a user attribute the objective sets before re-raising


@dataclass(frozen=True)
class Unfinished:
    """One configuration (or, for a sampled study, a count of trials) that did not finish."""

    label: str
    state: str  # "failed", "running" or "not run"
    reason: str

    def line(self) -> str:
        return f"{self.state}: {self.label}: {self.reason}"


def fail_reason(trial: FrozenTrial) -> str:
    reason = trial.user_attrs.get(FAIL_REASON_ATTR) or trial.system_attrs.get(FAIL_REASON_ATTR)
    if reason:
        return " ".join(str(reason).split())[:300]
    return "no reason recorded (the worker was killed, or its heartbeat went stale)"


def _label(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get("label") or f"trial {trial.number}")


_RUNNING = "still running (in another worker; a dead one's trial is retried once stale)"


def unfinished(spec: ExperimentSpec, trials: Sequence[FrozenTrial]) -> list[Unfinished]:
    """The configurations of ``spec`` that the study has not finished, in the spec's order."""
    if spec.sampler.name == "grid":
        latest: dict[str | None, FrozenTrial] = {}
        done: set[str | None] = set()
        targets = seed_targets(spec, trials)
        for trial in sorted(trials, key=lambda t: t.number):
            key = trial_key(trial)
            if trial.state in DONE_STATES and trial_covers(trial, targets.get(key, ())):
                done.add(key)
            latest[key] = trial
        out = []
        for entry in grid_entries(spec):
            if entry.key in done or entry.key not in targets:
                continue  # (a question's configuration that needs no more seeds)
            trial = latest.get(entry.key)
            if trial is None or trial.state in (TrialState.WAITING, *DONE_STATES):
                out.append(Unfinished(entry.label, "not run", "the run stopped before it"))
            elif trial.state == TrialState.RUNNING:
                out.append(Unfinished(entry.label, "running", _RUNNING))
            else:
                out.append(Unfinished(entry.label, "failed", fail_reason(trial)))
        return out
    chains: dict[int, list[FrozenTrial]] = {}
    for trial in trials:
        chains.setdefault(_origin(trial), []).append(trial)
    out = []
    finished = sum(t.state in DONE_STATES and trial_covers(t, spec.seeds) for t in trials)
    if finished >= spec.n_trials():
        return []
    running = 0
    for chain in chains.values():
        last = max(chain, key=lambda t: t.number)
        if any(t.state in DONE_STATES for t in chain):
            continue
        if last.state == TrialState.RUNNING:
            running += 1
            out.append(Unfinished(_label(last), "running", _RUNNING))
        elif not any(t.state in ALIVE_STATES for t in chain):
            out.append(Unfinished(_label(last), "failed", fail_reason(last)))
    missing = spec.n_trials() - finished - running - sum(u.state == "failed" for u in out)
    if missing > 0:
        out.append(Unfinished(f"{missing} trial(s)", "not run", "the run stopped before them"))
    return out
