"""Experiment specs: a YAML file -> a validated, frozen :class:`ExperimentSpec`.

A spec names the dataset, the training recipe, the variants (an explicit list, or a search
space), an optional parameter/MAC budget that every variant is solved to, the objectives, the
sampler and pruner, the seeds and the storage. Named ``profiles`` override parts of it (e.g. a
small ``cpu`` profile and a full-size ``gpu`` one). Everything is checked before anything runs:
unknown keys, wrong types, unknown names and impossible budgets all raise a
:class:`~archbench.errors.SpecError` naming the key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from archbench.errors import ArchbenchError, SpecError
from archbench.runner.metrics import DIRECTIONS as OBJECTIVES
from archbench.validation import parse_params

SAMPLERS = ("grid", "random", "tpe", "nsga2")
PRUNERS = ("none", "median", "hyperband")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# -- sections ---------------------------------------------------------------------------------


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

    @property
    def target_count(self) -> int:
        from archbench.models.budget import parse_count

        return parse_count(self.target)


@dataclass(frozen=True)
class SamplerSection:
    name: Literal["grid", "random", "tpe", "nsga2"] = "grid"
    seed: int = 0


@dataclass(frozen=True)
class PrunerSection:
    name: Literal["none", "median", "hyperband"] = "none"
    warmup_epochs: int = 1  # median: epochs before pruning can happen
    startup_trials: int = 2  # median: trials before pruning can happen

    def validate(self) -> None:
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


def _distribution(value: Any, where: str) -> Distribution:
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
    depth: Mapping[str, Distribution]  # per family
    width: Mapping[str, Distribution]  # per family; empty when a budget solves the width
    params: Mapping[str, Mapping[str, Distribution]]  # family -> param -> distribution
    recipe: Mapping[str, Distribution]


# -- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    dataset: DatasetSection
    recipe: Any  # archbench.training.recipe.Recipe
    variants: tuple[VariantSection, ...]
    space: SearchSpace | None
    budget: BudgetSection | None
    objectives: tuple[str, ...]
    sampler: SamplerSection
    pruner: PrunerSection
    trials: int | None
    seeds: tuple[int, ...]
    baselines: tuple[VariantSection, ...]
    storage: str
    profile: str
    description: str = ""
    source: str = ""  # the YAML text after the profile was applied (for reports)

    @property
    def study_name(self) -> str:
        return f"{self.name}:{self.profile}"

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of a grid study (explicit variants x recipe choices)."""
        recipe_space = self.space.recipe if self.space else {}
        archs: list[dict[str, Any]] = [_variant_config(v) for v in self.variants]
        if self.space is not None:
            for fam in self.space.families:
                depths = self.space.depth[fam].grid_values(f"space.depth.{fam}")
                widths = (
                    self.space.width[fam].grid_values(f"space.width.{fam}")
                    if fam in self.space.width
                    else [None]
                )
                pspace = self.space.params.get(fam, {})
                pvalues = [d.grid_values(f"space.params.{fam}.{k}") for k, d in pspace.items()]
                for depth, width, *combo in itertools.product(depths, widths, *pvalues):
                    params = dict(zip(pspace, combo, strict=True))
                    section = VariantSection(family=fam, depth=depth, width=width, params=params)
                    archs.append(_variant_config(section))
        rkeys = list(recipe_space)
        rvalues = [recipe_space[k].grid_values(f"space.recipe.{k}") for k in rkeys]
        return [
            {**arch, "recipe": dict(zip(rkeys, combo, strict=True))}
            for arch in archs
            for combo in itertools.product(*rvalues)
        ]

    def n_trials(self) -> int:
        if self.sampler.name == "grid":
            return len(self.grid())
        assert self.trials is not None  # checked in validation
        return self.trials


def _variant_config(v: VariantSection) -> dict[str, Any]:
    return {
        "label": v.display,
        "preset": v.preset,
        "family": v.family,
        "depth": v.depth,
        "width": v.width,
        "params": dict(v.params),
    }


def config_key(
    config: Mapping[str, Any],
    recipe: Any,
    *,
    budget: BudgetSection | None = None,
    dataset: DatasetSection | None = None,
) -> str:
    """Stable identity of (architecture config, full recipe, budget, data): the runs of one
    configuration with different seeds share it; anything that changes results changes it."""
    payload = {k: config.get(k) for k in ("preset", "family", "depth", "width", "params")}
    payload["recipe"] = recipe.to_dict()
    if budget is not None:
        payload["budget"] = dataclasses.asdict(budget)
    if dataset is not None:
        payload["dataset"] = dataclasses.asdict(dataset)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- loading ----------------------------------------------------------------------------------

_TOP_KEYS = {
    "name",
    "description",
    "dataset",
    "recipe",
    "variants",
    "space",
    "budget",
    "objectives",
    "sampler",
    "pruner",
    "trials",
    "seeds",
    "baselines",
    "storage",
    "profiles",
    "default_profile",
}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins; mappings merge recursively, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_spec(
    path: str | Path, profile: str | None = None, *, check_budgets: bool = True
) -> ExperimentSpec:
    """Read, merge the profile into, and validate an experiment spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read experiment spec {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(data, profile, where=str(path), check_budgets=check_budgets)


def parse_spec(
    data: Any,
    profile: str | None = None,
    *,
    where: str = "spec",
    check_budgets: bool = True,
) -> ExperimentSpec:
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: the spec must be a mapping of keys, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, Mapping):
        raise SpecError(f"{where}: 'profiles' must map profile names to partial specs")
    profile = profile or data.get("default_profile") or "default"
    merged = {k: v for k, v in data.items() if k not in ("profiles", "default_profile")}
    if profile in profiles:
        override = profiles[profile] or {}
        bad = sorted(set(override) - (_TOP_KEYS - {"profiles", "default_profile", "name"}))
        if bad:
            raise SpecError(f"{where}: profile {profile!r}: unknown or fixed key(s) {bad}")
        merged = deep_merge(merged, override)
    elif profile != "default":
        known = ", ".join(sorted(profiles)) or "none defined"
        raise SpecError(f"{where}: unknown profile {profile!r}; known profiles: {known}")
    spec = _build(merged, profile, where)
    if check_budgets:
        from archbench.runner.variants import resolve_all  # late import: builds on the spec

        try:
            resolve_all(spec, dataset_shape(spec))
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
    return dataclasses.replace(spec, source=yaml.safe_dump(merged, sort_keys=False))


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] is None:
        raise SpecError(f"{where}: missing required key {key!r}")
    return data[key]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: must be a mapping, got {value!r}")
    return dict(value)


def _build(data: Mapping[str, Any], profile: str, where: str) -> ExperimentSpec:
    from archbench.models.presets import get_family, get_preset
    from archbench.registry import DATASETS
    from archbench.training.recipe import Recipe

    name = _require(data, "name", where)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(f"{where}: 'name' must be letters, digits, '_', '.', '-', got {name!r}")

    dataset = parse_params(
        f"{where}: dataset",
        DatasetSection,
        _mapping(_require(data, "dataset", where), "dataset"),
        noun="key",
    )
    if dataset.name not in DATASETS:
        raise SpecError(f"{where}: dataset: {DATASETS.unknown_message(dataset.name)}")
    _check_dataset_options(dataset, f"{where}: dataset.options")

    recipe_data = _mapping(data.get("recipe"), f"{where}: recipe")
    try:
        recipe = Recipe.from_dict(recipe_data)
        recipe.validate()
    except ArchbenchError as exc:
        message = str(exc).removeprefix("recipe: ")
        raise SpecError(f"{where}: recipe: {message}") from None

    def variant_list(key: str) -> tuple[VariantSection, ...]:
        raw = data.get(key) or []
        if not isinstance(raw, list):
            raise SpecError(f"{where}: {key!r} must be a list of variants")
        out = []
        for i, item in enumerate(raw):
            at = f"{where}: {key}[{i}]"
            item = {"preset": item} if isinstance(item, str) else _mapping(item, at)
            variant = parse_params(at, VariantSection, item, noun="key")
            try:
                if variant.preset:
                    get_preset(variant.preset)
                else:
                    get_family(variant.family)
            except ArchbenchError as exc:
                raise SpecError(f"{at}: {exc}") from None
            out.append(variant)
        return tuple(out)

    variants = variant_list("variants")
    baselines = variant_list("baselines")
    space = (
        _parse_space(data.get("space"), f"{where}: space", Recipe) if data.get("space") else None
    )
    if not variants and space is None:
        raise SpecError(f"{where}: give 'variants' (a list) or a search 'space'")
    labels = [v.display for v in variants]
    dupes = sorted({lbl for lbl in labels if labels.count(lbl) > 1})
    if dupes:
        raise SpecError(f"{where}: duplicate variant label(s) {dupes}; add distinct 'label's")

    budget = None
    if data.get("budget") is not None:
        budget = parse_params(
            f"{where}: budget", BudgetSection, _mapping(data["budget"], "budget"), noun="key"
        )
        try:
            _ = budget.target_count  # parses "1.7M"; raises a clear error otherwise
        except ArchbenchError as exc:
            raise SpecError(f"{where}: budget.target: {exc}") from None
        if space is not None and space.width and budget.solve == "width":
            raise SpecError(
                f"{where}: the budget solves each variant's width; remove 'width' from the "
                "space (or set budget.solve: depth)"
            )
        fixed = [v.display for v in variants if v.preset]
        if fixed:
            raise SpecError(
                f"{where}: with a budget, variants must be families (their width is solved); "
                f"presets have a fixed size: {fixed}"
            )

    objectives = tuple(data.get("objectives") or ["val_acc"])
    for o in objectives:
        if o not in OBJECTIVES:
            raise SpecError(f"{where}: objectives: unknown {o!r}; allowed: {', '.join(OBJECTIVES)}")
    if objectives[0] != "val_acc" or len(set(objectives)) != len(objectives):
        raise SpecError(f"{where}: objectives must start with 'val_acc' and not repeat")

    if dataset.val_size == 0:
        raise SpecError(
            f"{where}: dataset.val_size is 0, but the objective 'val_acc' needs a validation "
            "split (selecting on the test set would bias the comparison); use e.g. 0.1"
        )

    sampler = parse_params(
        f"{where}: sampler", SamplerSection, _mapping(data.get("sampler"), "sampler"), noun="key"
    )
    pruner = parse_params(
        f"{where}: pruner", PrunerSection, _mapping(data.get("pruner"), "pruner"), noun="key"
    )
    if sampler.name == "nsga2" and len(objectives) < 2:
        raise SpecError(f"{where}: sampler 'nsga2' is for several objectives; add e.g. 'params'")
    if pruner.name != "none" and len(objectives) > 1:
        raise SpecError(f"{where}: Optuna cannot prune multi-objective studies; use pruner 'none'")

    trials = data.get("trials")
    if sampler.name != "grid":
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise SpecError(f"{where}: sampler {sampler.name!r} needs 'trials' (a positive int)")
    elif trials is not None:
        raise SpecError(f"{where}: a grid study runs every configuration; remove 'trials'")

    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise SpecError(
            f"{where}: 'seeds' must be a list of distinct non-negative ints, got {seeds!r}"
        )

    storage = data.get("storage") or f"results/{name}.db"
    if not isinstance(storage, str):
        raise SpecError(f"{where}: 'storage' must be a path or a database URL")
    description = data.get("description") or ""

    spec = ExperimentSpec(
        name=name,
        dataset=dataset,
        recipe=recipe,
        variants=variants,
        space=space,
        budget=budget,
        objectives=objectives,
        sampler=sampler,
        pruner=pruner,
        trials=trials,
        seeds=tuple(seeds),
        baselines=baselines,
        storage=storage,
        profile=profile,
        description=str(description),
    )
    if sampler.name == "grid":
        if baselines:
            raise SpecError(
                f"{where}: 'baselines' are enqueued first in a sampled study; a grid study "
                "runs every configuration: list them under 'variants'"
            )
        try:
            spec.grid()  # raises if a dimension is not enumerable
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
    elif variants and space is not None:
        raise SpecError(
            f"{where}: a {sampler.name!r} study samples the 'space'; list fixed variants "
            "under 'baselines' (enqueued first) instead of 'variants'"
        )
    return spec


def _parse_space(raw: Any, where: str, recipe_cls: type) -> SearchSpace:
    from archbench.models.presets import get_family

    data = _mapping(raw, where)
    unknown = sorted(set(data) - {"family", "depth", "width", "params", "recipe"})
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {unknown}; allowed: depth, family, params, recipe, width"
        )
    fam_value = _require(data, "family", where)
    families = tuple(fam_value if isinstance(fam_value, list) else [fam_value])
    for fam in families:
        try:
            get_family(fam)
        except ArchbenchError as exc:
            raise SpecError(f"{where}.family: {exc}") from None

    def per_family(key: str, required: bool) -> dict[str, Distribution]:
        value = data.get(key)
        if value is None:
            if required:
                return {f: Distribution(choices=(get_family(f).default_depth,)) for f in families}
            return {}
        if isinstance(value, Mapping) and set(value) <= set(families) and value:
            missing = sorted(set(families) - set(value))
            if missing:
                raise SpecError(f"{where}.{key}: no entry for famil(ies) {missing}")
            return {f: _distribution(value[f], f"{where}.{key}.{f}") for f in families}
        dist = _distribution(value, f"{where}.{key}")
        return dict.fromkeys(families, dist)

    depth = per_family("depth", required=True)
    width = per_family("width", required=False)
    params_raw = _mapping(data.get("params"), f"{where}.params")
    bad = sorted(set(params_raw) - set(families))
    if bad:
        raise SpecError(f"{where}.params: keys must be families of the space, got {bad}")
    params = {
        fam: {
            k: _distribution(v, f"{where}.params.{fam}.{k}")
            for k, v in _mapping(p, f"{where}.params.{fam}").items()
        }
        for fam, p in params_raw.items()
    }
    recipe_raw = _mapping(data.get("recipe"), f"{where}.recipe")
    allowed = {f.name for f in dataclasses.fields(recipe_cls)}
    bad = sorted(set(recipe_raw) - allowed)
    if bad:
        raise SpecError(f"{where}.recipe: unknown key(s) {bad}; allowed: {sorted(allowed)}")
    hints = typing.get_type_hints(recipe_cls)
    recipe = {}
    for key, value in recipe_raw.items():
        dist = _distribution(value, f"{where}.recipe.{key}")
        if hints[key] is float and dist.choices is None:
            # lr: {low: 1, high: 10} is a float range, whatever the YAML spelling.
            dist = dataclasses.replace(
                dist,
                low=float(dist.low),
                high=float(dist.high),
                step=None if dist.step is None else float(dist.step),
            )
        recipe[key] = dist
    return SearchSpace(families, depth, width, params, recipe)


def _check_dataset_options(dataset: DatasetSection, where: str) -> None:
    """Unknown or ill-typed dataset options fail now, not when a worker loads the data."""
    from archbench.data.load import _options
    from archbench.registry import DATASETS

    try:
        _options(dataset.name, DATASETS.get(dataset.name), dataset.options)
    except ArchbenchError as exc:
        raise SpecError(f"{where}: {exc}") from None


def dataset_shape(spec: ExperimentSpec) -> tuple[int, int, int]:
    """(num_classes, in_channels, input_size) of the spec's dataset, without loading it.

    From the registered nominal info, with the shape options a dataset may take
    (``num_classes``/``channels``/``image_size`` of ``synthetic``, CIFAR-100's coarse labels).
    """
    from archbench.registry import DATASETS

    entry = DATASETS.get(spec.dataset.name)
    info = entry.info
    options = {**getattr(entry, "options", {}), **spec.dataset.options}
    classes = options.get("num_classes", info.num_classes)
    if options.get("labels") == "coarse":
        classes = 20
    channels = options.get("channels", info.channels)
    size = spec.dataset.image_size or options.get("image_size", info.image_size)
    return int(classes), int(channels), int(size)
