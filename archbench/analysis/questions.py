"""A spec's question over stored runs: the looks replayed (:mod:`.sequential`) and a table of
each comparison's state, difference, interval, seeds used and seeds still needed.

The runner (:mod:`archbench.runner.rounds`) calls :func:`replay_question` to decide what the
next round trains; ``archbench stats`` and the report call :func:`question_table`: both
replay the same looks over the same stored numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from archbench.analysis import sequential
from archbench.analysis.data import ExperimentData, current_configs, scored_runs


@dataclass(frozen=True)
class QuestionReplay:
    """The question's comparisons (config keys), their labels and the replayed looks."""

    question: Any  # archbench.runner.question.QuestionSection
    pairs: tuple[tuple[str, str], ...]
    labels: Mapping[str, str]  # config key -> label
    seeds: tuple[int, ...]  # the planned seed order
    replay: sequential.Replay
    # Grid configurations no comparison names, lacking some of the first look's seeds: they
    # get those (min_seeds), never more.
    bystanders: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def needs(self) -> dict[str, tuple[int, ...]]:
        """Config key -> the seeds it must have for the round being trained."""
        return {**self.bystanders, **self.replay.needs}

    @property
    def finished(self) -> bool:
        return self.replay.finished and not self.bystanders


def seed_values(runs: pd.DataFrame, metric: str) -> dict[str, dict[int, float]]:
    """``config key -> {seed: metric}`` of the scored runs (a diverged seed at 100% error)."""
    done = scored_runs(runs)
    out: dict[str, dict[int, float]] = {}
    for key, seed, value in zip(done["config_key"], done["seed"], done[metric]):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out.setdefault(str(key), {})[int(seed)] = float(value)
    return out


def replay_question(
    question: Any, runs: pd.DataFrame, configs: Mapping[str, str], seeds: Sequence[int]
) -> QuestionReplay:
    """Replay ``question`` (a :class:`~archbench.runner.question.QuestionSection`) over
    ``runs`` (store rows) for the grid ``configs`` (config key -> label); ``seeds``: the
    spec's seed list (continued to ``max_seeds``)."""
    from archbench.runner.question import question_pairs

    pairs = tuple(question_pairs(question, configs))
    planned = question.planned_seeds(seeds)
    metric = seed_values(runs, question.metric)
    val = seed_values(runs, "val_err")
    design = question.design()
    result = sequential.replay(design, pairs, metric, val, planned)
    named = {key for pair in pairs for key in pair}
    first = planned[: design.looks[0]]
    bystanders = {
        key: first
        for key in configs
        if key not in named and not all(s in metric.get(key, {}) for s in first)
    }
    return QuestionReplay(question, pairs, dict(configs), planned, result, bystanders)


def _profile_spec(data: ExperimentData) -> dict[str, Any]:
    """The spec mapping with its profile applied (a study stores it applied already; a spec
    file read from disk, e.g. by scripts/recompute_verdicts.py, still has its profiles)."""
    from archbench.runner.spec import deep_merge

    spec = dict(data.spec or {})
    profiles = spec.get("profiles")
    if isinstance(profiles, Mapping) and isinstance(profiles.get(data.profile), Mapping):
        spec = deep_merge(spec, profiles[data.profile])
    return spec


def _replay(data: ExperimentData) -> QuestionReplay | None:
    """The stored spec's question replayed over the stored runs (``None``: no question)."""
    from archbench.runner.question import parse_question

    spec = _profile_spec(data)
    question = parse_question(spec.get("question"), "stored spec")
    # The grid the study last ran; without a study (runs read from a CSV), the runs' own.
    configs = current_configs(data.study)
    if configs is None and not data.runs.empty:
        configs = dict(zip(data.runs["config_key"].astype(str), data.runs["name"].astype(str)))
    if question is None or not configs:
        return None
    spec_seeds = spec.get("seeds", [0])
    seeds = [spec_seeds] if isinstance(spec_seeds, int) else list(spec_seeds or [0])
    return replay_question(question, data.runs, configs, seeds)


def question_of(data: ExperimentData) -> Any:
    """The stored spec's question (its profile's applied), or ``None``."""
    from archbench.runner.question import parse_question

    return parse_question(_profile_spec(data).get("question"), "stored spec")


def question_table(data: ExperimentData) -> pd.DataFrame:
    """One row per comparison of the stored spec's question (empty without one): state,
    difference ``a - b`` and its interval at the look's corrected level (percentage points),
    seeds used and, for open comparisons, the seeds a normal approximation says it needs.
    ``attrs["note"]`` says where the rounds stand and how the numbers were made."""
    result = _replay(data)
    return pd.DataFrame() if result is None else describe(result)


def owed_seeds(data: ExperimentData) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    """The seeds each configuration is owed. Without a question: one tuple for all
    (:attr:`ExperimentData.expected_seeds`). With one, per configuration key: the planned
    seeds up to the most any of its comparisons used, and what the round under way asks of
    it; so a configuration the rounds stopped early (its comparisons decided, or raced out)
    is complete, not "missing" seeds another configuration got."""
    result = _replay(data)
    if result is None:
        return data.expected_seeds
    used: dict[str, int] = {}
    for c in result.replay.comparisons:
        for key in (c.a, c.b):
            used[key] = max(used.get(key, 0), c.n)
    out = {}
    for key in set(data.runs["config_key"].astype(str)) | set(result.labels):
        owed = set(result.seeds[: used.get(key, 0)]) | set(result.needs.get(key, ()))
        out[key] = tuple(sorted(owed))
    return out


def describe(result: QuestionReplay) -> pd.DataFrame:
    """The table of :func:`question_table` for a replay."""
    q, r = result.question, result.replay
    rows = []
    for c in r.comparisons:
        needed = c.seeds_needed if c.state == sequential.OPEN else None
        rows.append(
            {
                "a": result.labels.get(c.a, c.a),
                "b": result.labels.get(c.b, c.b),
                "state": c.state,
                "seeds_n": c.n,
                "look": c.look,
                "diff_mean_pct": c.mean_diff * 100,
                "diff_low_pct": c.ci_low * 100,
                "diff_high_pct": c.ci_high * 100,
                "p": c.p,
                "level": c.level,
                "seeds_needed": needed,
                "why": _named(c.reason, result.labels),
            }
        )
    out = pd.DataFrame(rows)
    where = (
        "finished"
        if result.finished
        else f"round {r.round} of {len(q.design().looks)} under way ({len(r.active)} "
        "configuration(s) receiving seeds)"
    )
    out.attrs["note"] = (
        f"question: {q.metric}, {q.compare} comparisons, smallest difference "
        f"{q.smallest_difference_pp:g} pp, alpha {q.alpha:g}, seeds {q.min_seeds}-{q.max_seeds} "
        f"by {q.per_round}; {where}. {METHOD.format(spending=q.spending)}"
    )
    return out


def _named(text: str, labels: Mapping[str, str]) -> str:
    """The replay names configurations by key: their labels for people."""
    for key, label in labels.items():
        text = text.replace(key, label)
    return text


METHOD = (
    "Group-sequential: looks after each round, alpha spent over the planned looks "
    "({spending}), each look an exact sign-flip test with Holm across the question's "
    "comparisons (resolved ones pass their alpha on); interval = the inverted test at the "
    "look's level (not resolved: its Bonferroni level, share/m); equivalent = that interval "
    "inside +-smallest difference; seeds_needed: normal approximation (80% power at the "
    "larger of |a-b| and the smallest difference, level alpha/m; at least the next look), "
    "an estimate, not a promise."
)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """Strings for a terminal or the report."""
    if table.empty:
        return table

    def pp(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:+.2f}"

    def interval(lo: float, hi: float) -> str:
        if math.isnan(lo):
            return "-"
        if math.isinf(lo) and math.isinf(hi):
            return "unbounded"
        return f"[{lo:+.2f}, {hi:+.2f}]"

    return pd.DataFrame(
        {
            "a": table["a"],
            "b": table["b"],
            "state": table["state"],
            "n": [str(n) for n in table["seeds_n"]],
            "a-b (pp)": [pp(x) for x in table["diff_mean_pct"]],
            "interval (pp)": [
                interval(lo, hi) for lo, hi in zip(table["diff_low_pct"], table["diff_high_pct"])
            ],
            "level": ["-" if math.isnan(x) else f"{x:.2g}" for x in table["level"]],
            "p": ["-" if math.isnan(x) else f"{x:.3g}" for x in table["p"]],
            "seeds needed": [
                "-" if n is None or (isinstance(n, float) and math.isnan(n)) else f"~{int(n)}"
                for n in table["seeds_needed"]
            ],
            "why": [w or "-" for w in table["why"]],
        }
    )
