"""The spec's optional ``question:`` section: which comparisons an experiment asks, on which
metric, the smallest difference that matters, alpha and the seed range. With one, the runner
trains in rounds until each comparison is answered (:mod:`archbench.runner.rounds`); the
decisions are :mod:`archbench.analysis.sequential`'s.

Parsing reads no registry: the labels are checked against the spec's variants here when the
grid is the variant list (no search space), else when the grid is built
(:func:`question_pairs`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from archbench.errors import SpecError
from archbench.validation import parse_params

#: Metrics a question can ask about (error rates; lower is better).
QUESTION_METRICS = ("test_err", "train_err", "val_err")


@dataclass(frozen=True)
class QuestionSection:
    """``compare``: ``reference`` (every other configuration against ``reference``),
    ``all`` (every pair) or ``pairs`` (the listed ``[a, b]`` pairs)."""

    compare: Literal["reference", "all", "pairs"] = "reference"
    reference: str | None = None
    pairs: Any = None
    metric: Literal["test_err", "train_err", "val_err"] = "test_err"
    smallest_difference_pp: float = 0.5
    alpha: float = 0.05
    min_seeds: int = 3
    max_seeds: int = 15
    per_round: int = 2
    spending: Literal["obrien-fleming", "pocock"] = "obrien-fleming"
    race: bool = True

    def validate(self) -> None:
        if not 0 < self.alpha <= 0.5:
            raise SpecError(f"alpha must be in (0, 0.5], got {self.alpha:g}")
        if not 0 < self.smallest_difference_pp < 100:
            raise SpecError(
                "smallest_difference_pp must be in (0, 100) percentage points, got "
                f"{self.smallest_difference_pp:g}"
            )
        if self.min_seeds < 1:
            raise SpecError(f"min_seeds must be >= 1, got {self.min_seeds}")
        if self.max_seeds < self.min_seeds:
            raise SpecError(
                f"max_seeds {self.max_seeds} is below min_seeds {self.min_seeds}; allowed: "
                "max_seeds >= min_seeds"
            )
        if self.max_seeds > 20:
            raise SpecError(
                f"max_seeds must be <= 20 (the exact sign-flip test's limit), got {self.max_seeds}"
            )
        if self.per_round < 1:
            raise SpecError(f"per_round must be >= 1, got {self.per_round}")
        if self.compare == "reference" and not self.reference:
            raise SpecError("compare 'reference' needs 'reference': a variant label")
        if self.compare != "reference" and self.reference is not None:
            raise SpecError(f"'reference' is for compare 'reference', not {self.compare!r}")
        if self.compare == "pairs":
            _check_pairs(self.pairs)
        elif self.pairs is not None:
            raise SpecError(f"'pairs' is for compare 'pairs', not {self.compare!r}")

    @property
    def delta(self) -> float:
        """The smallest difference that matters as a fraction (the store's error units)."""
        return self.smallest_difference_pp / 100

    def design(self) -> Any:
        """The :class:`archbench.analysis.sequential.Design` of this question."""
        from archbench.analysis.sequential import Design, plan_looks

        looks = plan_looks(self.min_seeds, self.max_seeds, self.per_round)
        return Design(self.alpha, self.delta, looks, self.spending, self.race)

    def planned_seeds(self, seeds: Sequence[int]) -> tuple[int, ...]:
        """The seed order of the rounds: the spec's ``seeds``, continued with the next unused
        integers up to ``max_seeds``."""
        out = list(seeds)[: self.max_seeds]
        nxt = max(out, default=-1) + 1
        while len(out) < self.max_seeds:
            if nxt not in out:
                out.append(nxt)
            nxt += 1
        return tuple(out)

    def label_pairs(self, labels: Sequence[str]) -> list[tuple[str, str]]:
        """The comparisons ``(a, b)`` (difference ``a - b``) over the grid's ``labels``;
        raises :class:`SpecError` naming a label the grid does not have."""
        known = list(labels)

        def check(label: Any, where: str) -> str:
            if label not in known:
                raise SpecError(
                    f"question.{where}: unknown variant label {label!r}; known: "
                    f"{', '.join(map(repr, known))}"
                )
            return str(label)

        if self.compare == "reference":
            ref = check(self.reference, "reference")
            return [(label, ref) for label in known if label != ref]
        if self.compare == "all":
            return list(itertools.combinations(known, 2))
        return [(check(a, "pairs"), check(b, "pairs")) for a, b in self.pairs]


def _check_pairs(pairs: Any) -> None:
    ok = (
        isinstance(pairs, list)
        and pairs
        and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in pairs
        )
    )
    if not ok:
        raise SpecError(
            f"'pairs' must be a list of [label, label] pairs, got {pairs!r}; e.g. "
            "pairs: [[resnet20, plain20]]"
        )
    seen = set()
    for a, b in pairs:
        if a == b:
            raise SpecError(f"pair [{a!r}, {b!r}] compares a variant with itself")
        if frozenset((a, b)) in seen:
            raise SpecError(f"pair [{a!r}, {b!r}] is listed twice")
        seen.add(frozenset((a, b)))


def parse_question(raw: Any, where: str) -> QuestionSection | None:
    """The ``question`` mapping of a spec, checked on its own (``None``: no question)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: question: must be a mapping, got {raw!r}")
    return parse_params(f"{where}: question", QuestionSection, dict(raw), noun="key")


def check_question_spec(spec: Any, where: str) -> None:
    """The rules that tie a question to the rest of the spec (labels, sampler, pruner, seeds)."""
    q: QuestionSection = spec.question
    if spec.sampler.name != "grid":
        raise SpecError(
            f"{where}: a question compares the grid's variants; sampler "
            f"{spec.sampler.name!r} samples a space (use sampler 'grid' or drop 'question')"
        )
    if spec.pruner.name != "none":
        raise SpecError(
            f"{where}: a question spends seeds by evidence; pruner {spec.pruner.name!r} would "
            "stop seeds by their curves (use pruner 'none')"
        )
    if len(spec.seeds) > q.max_seeds:
        raise SpecError(
            f"{where}: 'seeds' lists {len(spec.seeds)} seeds, more than question.max_seeds "
            f"{q.max_seeds}; the rounds train the first seeds of the list (continued up to "
            "max_seeds)"
        )
    if spec.space is None:
        try:
            q.label_pairs([v.display for v in spec.variants])
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None


def question_pairs(question: QuestionSection, keys: Mapping[str, str]) -> list[tuple[str, str]]:
    """The comparisons as configuration keys, from ``keys`` (config key -> label; entries
    that build one configuration have their labels joined by `` = ``)."""
    by_label: dict[str, str] = {}
    for key, joined in keys.items():
        for label in str(joined).split(" = "):
            by_label.setdefault(label, key)
    if question.compare == "all":
        return list(itertools.combinations(list(keys), 2))
    out = []
    for a, b in question.label_pairs(list(by_label)):
        ka, kb = by_label[a], by_label[b]
        if ka == kb:
            if question.compare == "reference":
                continue  # the reference itself, under another label
            raise SpecError(
                f"question: {a!r} and {b!r} build the same net under the same recipe (one "
                "configuration): nothing to compare"
            )
        if (ka, kb) not in out and (kb, ka) not in out:
            out.append((ka, kb))
    return out


def undecidable_note(question: QuestionSection, comparisons: int) -> str | None:
    """A note when no look of the plan can decide anything: with ``comparisons`` in the Holm
    family the exact test's smallest p, ``2 / 2^n``, must be below ``alpha / m`` at the last
    look at least (all unspent alpha reaches it), or every comparison ends open after every
    seed up to ``max_seeds`` was trained. ``None`` when some look can decide."""
    import math

    from archbench.analysis.sequential import look_weights

    m = comparisons
    if m < 1 or any(w > 0 for w in look_weights(question.design(), m)):
        return None
    need = math.floor(math.log2(2 * m / question.alpha)) + 1
    return (
        f"question: no look can decide its {m} comparison(s): the exact test needs at least "
        f"{need} seeds at alpha/m = {question.alpha / m:.3g}, and max_seeds is "
        f"{question.max_seeds}; the compared configurations will train {question.max_seeds} "
        "seeds and every comparison end open (raise max_seeds or ask fewer comparisons)"
    )
