"""Rounds of seeds for a spec with a ``question``: which configurations get which seeds next.

Nothing about rounds is stored: the round being trained is derived from the store's scored
runs every time (:func:`current_round` replays the planned looks over them), so a worker
killed mid-round, a second worker, or a rerun after the experiment grew all see the same
state. Queueing a round (:func:`archbench.runner.study.queue_grid` with
:attr:`RoundState.needs`) adds one grid trial per configuration that still needs seeds and
has no trial for them yet; the store's exclusive run claim keeps a seed from
being trained twice, and stored runs are reused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archbench.runner.identity import grid_entries
from archbench.runner.spec import ExperimentSpec


@dataclass(frozen=True)
class RoundState:
    """Where the question stands (``replay``: an
    :class:`archbench.analysis.questions.QuestionReplay`)."""

    replay: Any

    @property
    def finished(self) -> bool:
        return bool(self.replay.finished)

    @property
    def needs(self) -> dict[str, tuple[int, ...]]:
        """Config key -> the seeds it must have for the round being trained (a grid
        configuration the question does not name: the first look's seeds, once)."""
        return self.replay.needs

    def line(self, have: Mapping[str, Sequence[int]] | None = None) -> str:
        """``round 3: 2 comparisons open, training seeds 5-6 of 4 configurations`` (``have``:
        config key -> seeds already scored, to name only the seeds left to train)."""
        r = self.replay.replay
        if self.finished:
            counts: dict[str, int] = {}
            for c in r.comparisons:
                counts[c.state] = counts.get(c.state, 0) + 1
            told = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            return f"question answered after {r.looks_done} look(s): {told}"
        have = have or {}
        todo = sorted(
            {s for key, seeds in self.needs.items() for s in seeds if s not in have.get(key, ())}
        )
        n_open = len(r.open)
        return (
            f"round {r.round}: {n_open} comparison{'s' if n_open != 1 else ''} open, training "
            f"seeds {_span(todo)} of {len(self.needs)} configuration"
            f"{'s' if len(self.needs) != 1 else ''}"
        )


def _span(seeds: Sequence[int]) -> str:
    if not seeds:
        return "none (all stored)"
    if list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ", ".join(map(str, seeds))


def current_round(spec: ExperimentSpec, store: Any) -> RoundState:
    """Replay the question's looks over the store's runs of the current grid."""
    from archbench.analysis.questions import replay_question

    assert spec.question is not None
    configs = {entry.key: entry.label for entry in grid_entries(spec)}
    runs = store.runs(experiment=spec.name, profile=spec.profile)
    runs = runs[runs["config_key"].isin(list(configs))]
    return RoundState(replay_question(spec.question, runs, configs, spec.seeds))


def scored_seeds(spec: ExperimentSpec, store: Any) -> dict[str, tuple[int, ...]]:
    """Config key -> the seeds with a scored run (for :meth:`RoundState.line`)."""
    from archbench.analysis.questions import seed_values

    runs = store.runs(experiment=spec.name, profile=spec.profile)
    return {k: tuple(v) for k, v in seed_values(runs, "val_err").items()}
