"""The rules that tie an experiment spec's sections together, checked once every section
has parsed on its own (:func:`archbench.runner.spec.parse_spec` calls
:func:`_check_across_sections` last).

Each rule reads two or more sections (variants and budget, sampler and objectives, dataset
sizes and the objective's validation split) and raises a :class:`~archbench.errors.SpecError`
naming the keys and how to fix them. They are kept apart from ``spec.py``, which reads the
YAML and parses each section, so the cross-section rules can be read in one place, in the
order a user would fix them.
"""

from __future__ import annotations

from typing import Any

from archbench.errors import SpecError
from archbench.runner.question import check_question_spec

# ``spec`` below is an ``archbench.runner.spec.ExperimentSpec``, typed ``Any``: spec.py
# imports this module, and the runner's import graph has no cycles, not even for type
# checking (tests/test_identity.py).
ExperimentSpec = Any


def _check_across_sections(spec: ExperimentSpec, where: str) -> None:
    """Rules that tie sections together, in the order a user would fix them."""
    if not spec.variants and spec.space is None:
        raise SpecError(f"{where}: give 'variants' (a list) or a search 'space'")
    labels = [v.display for v in spec.variants]
    dupes = sorted({lbl for lbl in labels if labels.count(lbl) > 1})
    if dupes:
        raise SpecError(f"{where}: duplicate variant label(s) {dupes}; add distinct 'label's")
    if spec.budget is not None:
        _check_budget(spec, where)
    if spec.dataset.val_size == 0:
        raise SpecError(
            f"{where}: dataset.val_size is 0, but the objective 'val_acc' needs a validation "
            "split (selecting on the test set would bias the comparison); use e.g. 0.1"
        )
    _check_val_images(spec, where)
    _check_search(spec, where)
    if spec.question is not None:
        check_question_spec(spec, where)


def _check_val_images(spec: ExperimentSpec, where: str) -> None:
    """A fraction of a known training subset that rounds to 0 images leaves the search blind
    (every objective 0) and the reference unchosen; refused here, before any data is read
    (without ``train_subset`` the dataset loader refuses it, at validate time too)."""
    ds = spec.dataset
    if ds.train_subset is None or not 0 < ds.val_size < 1:
        return
    images = round(ds.val_size * ds.train_subset)
    if images == 0:
        raise SpecError(
            f"{where}: dataset.val_size {ds.val_size:g} of train_subset {ds.train_subset} is "
            "0 validation images, but the objective 'val_acc' needs a validation split; use a "
            f"count >= 1 or a fraction above {0.5 / ds.train_subset:.2g}"
        )


def _check_budget(spec: ExperimentSpec, where: str) -> None:
    assert spec.budget is not None
    if spec.space is not None and spec.space.width and spec.budget.solve == "width":
        raise SpecError(
            f"{where}: the budget solves each variant's width; remove 'width' from the "
            "space (or set budget.solve: depth)"
        )
    fixed = [v.display for v in spec.variants if v.preset]
    if fixed:
        raise SpecError(
            f"{where}: with a budget, variants must be families (their width is solved); "
            f"presets have a fixed size: {fixed}"
        )


def _check_search(spec: ExperimentSpec, where: str) -> None:
    """Sampler, pruner, trials and baselines against the objectives and the variants."""
    sampler = spec.sampler.name
    if sampler == "nsga2" and len(spec.objectives) < 2:
        raise SpecError(f"{where}: sampler 'nsga2' is for several objectives; add e.g. 'params'")
    if spec.pruner.name != "none" and len(spec.objectives) > 1:
        raise SpecError(f"{where}: Optuna cannot prune multi-objective studies; use pruner 'none'")
    trials = spec.trials
    if sampler != "grid":
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise SpecError(f"{where}: sampler {sampler!r} needs 'trials' (a positive int)")
        if spec.variants and spec.space is not None:
            raise SpecError(
                f"{where}: a {sampler!r} study samples the 'space'; list fixed variants "
                "under 'baselines' (enqueued first) instead of 'variants'"
            )
        return
    if trials is not None:
        raise SpecError(f"{where}: a grid study runs every configuration; remove 'trials'")
    if spec.baselines:
        raise SpecError(
            f"{where}: 'baselines' are enqueued first in a sampled study; a grid study "
            "runs every configuration: list them under 'variants'"
        )
    if spec.space is not None:  # every dimension must be enumerable (default depths are)
        s = spec.space
        dims = [
            *(
                (f"space.{kind}.{fam}", table[fam])
                for fam in s.families
                for kind, table in (("depth", s.depth), ("width", s.width))
                if fam in table
            ),
            *(
                (f"space.params.{fam}.{k}", d)
                for fam in s.families
                for k, d in s.params.get(fam, {}).items()
            ),
            *((f"space.recipe.{k}", d) for k, d in s.recipe.items()),
        ]
        for at, dist in dims:
            try:
                dist.grid_values(at)
            except SpecError as exc:
                raise SpecError(f"{where}: {exc}") from None
