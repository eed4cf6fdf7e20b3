"""The sections of an experiment spec as frozen dataclasses, each checking its own values.

:mod:`archbench.runner.spec` parses YAML into these; nothing here knows the registries (names
of datasets, families and presets are checked where variants are resolved,
:mod:`archbench.runner.variants`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from archbench.errors import SpecError
from archbench.runner.algorithms import PRUNERS, SAMPLERS, one_of
from archbench.validation import check_label, parse_params


@dataclass(frozen=True)
class DatasetSection:
    name: str
    root: str | None = None
    val_size: float = 0.1  # a fraction of the training set, or a count when >= 1
    train_subset: int | None = None
    test_subset: int | None = None
    image_size: int | None = None
    split_seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific, e.g. synthetic sizes

    def validate(self) -> None:
        if self.val_size < 0:
            raise SpecError(f"key 'val_size' must be >= 0, got {self.val_size}")
        for key in ("train_subset", "test_subset", "image_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise SpecError(f"key {key!r} must be a positive integer, got {value}")

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`archbench.data.load_dataset`."""
        val: int | float = int(self.val_size) if self.val_size >= 1 else self.val_size
        return {
            "root": self.root,
            "val_size": val,
            "train_subset": self.train_subset,
            "test_subset": self.test_subset,
            "image_size": self.image_size,
            "split_seed": self.split_seed,
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class VariantSection:
    """One architecture: a preset name, or a family with depth/width/params."""

    preset: str | None = None
    family: str | None = None
    depth: int | None = None
    width: int | None = None  # ignored (solved) when the experiment has a budget
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    def validate(self) -> None:
        if self.label is not None:
            check_label(self.label, "key 'label'")
        if (self.preset is None) == (self.family is None):
            raise SpecError("give exactly one of 'preset' or 'family'")
        if self.preset is not None and (self.depth or self.width or self.params):
            raise SpecError(
                "a 'preset' variant takes no depth/width/params; use 'family' to change them"
            )

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        if self.preset:
            return self.preset
        extra = "".join(f"_{k}{v}" for k, v in sorted(self.params.items()))
        depth = f"{self.depth}" if self.depth else ""
        width = f"_w{self.width}" if self.width else ""
        return f"{self.family}{depth}{width}{extra}"


@dataclass(frozen=True)
class BudgetSection:
    target: str | int | float
    metric: Literal["params", "macs"] = "params"
    tolerance: float = 0.01
    solve: Literal["width", "depth"] = "width"

    def validate(self) -> None:
        if not 0 < self.tolerance < 1:
            raise SpecError(f"key 'tolerance' must be in (0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class SamplerSection:
    name: str = "grid"  # a key of archbench.runner.algorithms.SAMPLERS
    seed: int = 0
    # nsga2: trials per generation (None: Optuna's 50). With fewer trials than one
    # population NSGA-II never leaves its random first generation: it is random search.
    population_size: int | None = None

    def validate(self) -> None:
        problem = one_of(SAMPLERS, self.name)
        if problem:
            raise SpecError(problem)
        if self.population_size is not None:
            if self.name != "nsga2":
                raise SpecError(
                    f"key 'population_size' is a setting of sampler 'nsga2', not {self.name!r}"
                )
            if isinstance(self.population_size, bool) or not (
                isinstance(self.population_size, int) and self.population_size >= 2
            ):
                raise SpecError(
                    f"key 'population_size' must be an integer >= 2, got {self.population_size!r}"
                )


@dataclass(frozen=True)
class PrunerSection:
    name: str = "none"  # a key of archbench.runner.algorithms.PRUNERS
    warmup_epochs: int = 1  # median: epochs before pruning can happen
    startup_trials: int = 2  # median: trials before pruning can happen

    def validate(self) -> None:
        problem = one_of(PRUNERS, self.name)
        if problem:
            raise SpecError(problem)
        if self.warmup_epochs < 0 or self.startup_trials < 0:
            raise SpecError("keys 'warmup_epochs' and 'startup_trials' must be >= 0")


@dataclass(frozen=True)
class Distribution:
    """A search dimension: ``choices`` (categorical) or a ``low``..``high`` range."""

    choices: tuple[Any, ...] | None = None
    # int before float: an integer range stays an integer range (depths, widths)
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False

    def validate(self) -> None:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise SpecError("give either 'choices' or 'low'/'high', not both")
            if not self.choices:
                raise SpecError("'choices' must not be empty")
            return
        if self.low is None or self.high is None:
            raise SpecError("a range needs both 'low' and 'high' (or give 'choices')")
        if self.low > self.high:
            raise SpecError(f"'low' {self.low} is above 'high' {self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise SpecError("a log range needs low > 0 and no 'step'")

    @property
    def is_int(self) -> bool:
        return all(
            isinstance(v, int) and not isinstance(v, bool)
            for v in (self.low, self.high, self.step)
            if v is not None
        )

    def grid_values(self, where: str) -> list[Any]:
        if self.choices is not None:
            return list(self.choices)
        if self.is_int and self.step is not None:
            return list(range(int(self.low), int(self.high) + 1, int(self.step)))
        raise SpecError(
            f"{where}: the grid sampler needs a finite set of values: give 'choices', or an "
            "integer range with 'step' (or use sampler 'random', 'tpe' or 'nsga2')"
        )


def distribution(value: Any, where: str) -> Distribution:
    if isinstance(value, list | tuple):
        return parse_params(where, Distribution, {"choices": tuple(value)}, noun="key")
    if isinstance(value, Mapping):
        data = dict(value)
        if "choices" in data:
            data["choices"] = tuple(data["choices"])
        return parse_params(where, Distribution, data, noun="key")
    return parse_params(where, Distribution, {"choices": (value,)}, noun="key")


@dataclass(frozen=True)
class SearchSpace:
    """Define-by-run space: family, then that family's depth/width/params, then recipe keys."""

    families: tuple[str, ...]
    # Per family; one the YAML gives none for gets its default depth when the spec is bound
    # to the registries (archbench.runner.variants.bind).
    depth: Mapping[str, Distribution]
    width: Mapping[str, Distribution]  # per family; empty when a budget solves the width
    params: Mapping[str, Mapping[str, Distribution]]  # family -> param -> distribution
    recipe: Mapping[str, Distribution]


def variant_config(v: VariantSection) -> dict[str, Any]:
    """The architecture configuration of a variant, as the grid and the objective use it."""
    return {
        "label": v.display,
        "preset": v.preset,
        "family": v.family,
        "depth": v.depth,
        "width": v.width,
        "params": dict(v.params),
    }
