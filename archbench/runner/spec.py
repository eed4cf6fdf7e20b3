"""Experiment specs: a YAML file -> a frozen :class:`ExperimentSpec`, checked for structure.

A spec names the dataset, the training recipe, the variants (an explicit list, or a search
space), an optional parameter/MAC budget that every variant is solved to, the objectives, the
sampler and pruner, the seeds and the storage. Named ``profiles`` override parts of it (e.g. a
small ``cpu`` profile and a full-size ``gpu`` one). Unknown keys, wrong types and sections
that contradict each other raise a :class:`~archbench.errors.SpecError` naming the key and what
is allowed; the rules that tie sections together are in :mod:`archbench.runner.spec_rules`.

Parsing reads no registry and imports neither torch nor the model stack: the names of
datasets, families and presets, dataset options and budgets are checked where variants are
resolved (:func:`archbench.runner.variants.check_spec`, which ``archbench validate`` and
``archbench run`` call before anything runs).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from archbench.errors import ArchbenchError, SpecError
from archbench.runner.metrics import DIRECTIONS as OBJECTIVES
from archbench.runner.question import parse_question
from archbench.runner.sections import (
    BudgetSection,
    DatasetSection,
    Distribution,
    PrunerSection,
    SamplerSection,
    SearchSpace,
    VariantSection,
    distribution,
    variant_config,
)
from archbench.runner.spec_rules import _check_across_sections
from archbench.validation import (
    check_path_name,
    check_tree,
    did_you_mean,
    parse_params,
    too_long_int,
)

__all__ = [
    "OBJECTIVES",
    "BudgetSection",
    "DatasetSection",
    "Distribution",
    "ExperimentSpec",
    "PrunerSection",
    "SamplerSection",
    "SearchSpace",
    "VariantSection",
    "deep_merge",
    "load_spec",
    "parse_spec",
]


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
    origin: str = "spec"  # where it was read from, for messages
    question: Any = None  # archbench.runner.question.QuestionSection: trained in rounds

    @property
    def study_name(self) -> str:
        return f"{self.name}:{self.profile}"

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of a grid study (explicit variants x recipe choices)."""
        recipe_space = self.space.recipe if self.space else {}
        archs: list[dict[str, Any]] = [variant_config(v) for v in self.variants]
        if self.space is not None:
            for fam in self.space.families:
                if fam not in self.space.depth:
                    raise SpecError(
                        f"space.depth.{fam}: no depth yet; bind the spec to the registries "
                        "first (archbench.runner.variants.bind gives the family's default)"
                    )
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
                    archs.append(variant_config(section))
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
    "question",
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
    path: str | Path, profile: str | None = None, *, overrides: Sequence[str] = ()
) -> ExperimentSpec:
    """Read, merge the profile into, and parse an experiment spec file.

    ``overrides``: ``KEY.PATH=VALUE`` strings applied after the profile
    (:mod:`archbench.runner.overrides`).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read experiment spec {str(path)!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise SpecError(f"{path}: the YAML nests too deep to be a spec") from None
    except ValueError as exc:  # int() past Python's digit limit (sys.get_int_max_str_digits)
        raise SpecError(f"{path}: holds {too_long_int(exc)}") from None
    check_tree(data, str(path))  # alias bombs and self-references, before anything copies it
    return parse_spec(data, profile, where=str(path), overrides=overrides)


def parse_spec(
    data: Any,
    profile: str | None = None,
    *,
    where: str = "spec",
    overrides: Sequence[str] = (),
) -> ExperimentSpec:
    """Merge ``profile`` into the spec mapping ``data`` and parse it (no registry lookups)."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: the spec must be a mapping of keys, got {type(data).__name__}")
    _check_top_keys(data, where)
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, Mapping):
        raise SpecError(f"{where}: 'profiles' must map profile names to partial specs")
    try:
        for key in profiles:
            check_path_name(key, "a profile name")
        if data.get("default_profile") is not None:
            check_path_name(data["default_profile"], "default_profile")
        if profile is not None:
            check_path_name(profile, "profile")
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
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
    if overrides:
        from archbench.runner.overrides import apply_overrides

        try:
            merged = apply_overrides(merged, overrides)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
        _check_top_keys(merged, where, overrides=overrides)  # --set epochs=5 is a typo too
    spec = _build(merged, profile, where)
    return dataclasses.replace(spec, source=_source_text(merged))


def _check_top_keys(data: Mapping[str, Any], where: str, *, overrides: Sequence[str] = ()) -> None:
    """Refuse unknown top-level keys, with a hint that also looks one section down
    (``epochs`` -> ``recipe.epochs``, ``seed`` -> ``seeds``)."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if not unknown:
        return
    from archbench.training.recipe import Recipe

    sections = {
        "recipe": Recipe,
        "dataset": DatasetSection,
        "budget": BudgetSection,
        "sampler": SamplerSection,
        "pruner": PrunerSection,
    }
    nested = [f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)]
    given = [o for o in overrides if o.partition("=")[0].strip().split(".")[0] in unknown]
    source = f" (from --set {', '.join(given)})" if given else ""
    raise SpecError(
        f"{where}: unknown key(s) {unknown}{source}; allowed: {sorted(_TOP_KEYS)}"
        + did_you_mean(unknown, [*sorted(_TOP_KEYS), *nested])
    )


def _source_text(merged: Mapping[str, Any]) -> str:
    """The spec as YAML for studies and reports, with any password in its storage URL
    redacted (``${NAME}`` references are kept: they are expanded only to connect)."""
    from archbench.store.storage import redact

    shown = dict(merged)
    if isinstance(shown.get("storage"), str):
        shown["storage"] = redact(shown["storage"])
    return yaml.safe_dump(shown, sort_keys=False)


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


def _section(data: Mapping[str, Any], key: str, cls: type, where: str) -> Any:
    return parse_params(f"{where}: {key}", cls, _mapping(data.get(key), key), noun="key")


# -- one parser per section -------------------------------------------------------------------


def _build(data: Mapping[str, Any], profile: str, where: str) -> ExperimentSpec:
    """Each section parsed on its own, then the rules that tie sections together."""
    name = _parse_name(data, where)
    space = _parse_space(data["space"], f"{where}: space") if data.get("space") else None
    spec = ExperimentSpec(
        name=name,
        dataset=_parse_dataset(data, where),
        recipe=_parse_recipe(data, where),
        variants=_parse_variants(data, "variants", where),
        space=space,
        budget=_section(data, "budget", BudgetSection, where) if data.get("budget") else None,
        objectives=_parse_objectives(data, where),
        sampler=_section(data, "sampler", SamplerSection, where),
        pruner=_section(data, "pruner", PrunerSection, where),
        trials=data.get("trials"),
        seeds=_parse_seeds(data, where),
        baselines=_parse_variants(data, "baselines", where),
        storage=_parse_storage(data, name, where),
        profile=profile,
        description=str(data.get("description") or ""),
        origin=where,
        question=parse_question(data.get("question"), where),
    )
    _check_across_sections(spec, where)
    return spec


def _parse_name(data: Mapping[str, Any], where: str) -> str:
    name = _require(data, "name", where)
    try:
        return check_path_name(name, "'name'")
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _parse_dataset(data: Mapping[str, Any], where: str) -> DatasetSection:
    raw = _mapping(_require(data, "dataset", where), "dataset")
    return parse_params(f"{where}: dataset", DatasetSection, raw, noun="key")


def _parse_recipe(data: Mapping[str, Any], where: str) -> Any:
    from archbench.training.recipe import Recipe  # a dataclass; torch only to build optimizers

    try:
        recipe = Recipe.from_dict(_mapping(data.get("recipe"), f"{where}: recipe"))
        recipe.validate()
    except ArchbenchError as exc:
        message = str(exc).removeprefix("recipe: ")
        raise SpecError(f"{where}: recipe: {message}") from None
    return recipe


def _parse_variants(data: Mapping[str, Any], key: str, where: str) -> tuple[VariantSection, ...]:
    raw = data.get(key) or []
    if not isinstance(raw, list):
        raise SpecError(f"{where}: {key!r} must be a list of variants")
    out = []
    for i, item in enumerate(raw):
        at = f"{where}: {key}[{i}]"
        item = {"preset": item} if isinstance(item, str) else _mapping(item, at)
        out.append(parse_params(at, VariantSection, item, noun="key"))
    return tuple(out)


def _parse_objectives(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    objectives = tuple(data.get("objectives") or ["val_acc"])
    for o in objectives:
        if o not in OBJECTIVES:
            raise SpecError(f"{where}: objectives: unknown {o!r}; allowed: {', '.join(OBJECTIVES)}")
    if objectives[0] != "val_acc" or len(set(objectives)) != len(objectives):
        raise SpecError(f"{where}: objectives must start with 'val_acc' and not repeat")
    return objectives


def _parse_seeds(data: Mapping[str, Any], where: str) -> tuple[int, ...]:
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
    return tuple(seeds)


def _parse_storage(data: Mapping[str, Any], name: str, where: str) -> str:
    storage = data.get("storage") or f"results/{name}.db"
    if not isinstance(storage, str):
        raise SpecError(f"{where}: 'storage' must be a path or a database URL")
    return storage


def _parse_space(raw: Any, where: str) -> SearchSpace:
    """The search space; family names and default depths come later (``bind``)."""
    from archbench.training.recipe import Recipe

    data = _mapping(raw, where)
    unknown = sorted(set(data) - {"family", "depth", "width", "params", "recipe"})
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {unknown}; allowed: depth, family, params, recipe, width"
            + did_you_mean(unknown, ["depth", "family", "params", "recipe", "width"])
        )
    fam_value = _require(data, "family", where)
    families = tuple(fam_value if isinstance(fam_value, list) else [fam_value])
    if not all(isinstance(f, str) for f in families):
        raise SpecError(f"{where}.family: a family name or a list of them, got {fam_value!r}")

    def per_family(key: str) -> dict[str, Distribution]:
        value = data.get(key)
        if value is None:
            return {}
        if isinstance(value, Mapping) and set(value) <= set(families) and value:
            missing = sorted(set(families) - set(value))
            if missing:
                raise SpecError(f"{where}.{key}: no entry for famil(ies) {missing}")
            return {f: distribution(value[f], f"{where}.{key}.{f}") for f in families}
        dist = distribution(value, f"{where}.{key}")
        return dict.fromkeys(families, dist)

    depth = per_family("depth")
    width = per_family("width")
    params_raw = _mapping(data.get("params"), f"{where}.params")
    bad = sorted(set(params_raw) - set(families))
    if bad:
        raise SpecError(f"{where}.params: keys must be families of the space, got {bad}")
    params = {
        fam: {
            k: distribution(v, f"{where}.params.{fam}.{k}")
            for k, v in _mapping(p, f"{where}.params.{fam}").items()
        }
        for fam, p in params_raw.items()
    }
    recipe_raw = _mapping(data.get("recipe"), f"{where}.recipe")
    allowed = {f.name for f in dataclasses.fields(Recipe)}
    bad = sorted(set(recipe_raw) - allowed)
    if bad:
        raise SpecError(
            f"{where}.recipe: unknown key(s) {bad}; allowed: {sorted(allowed)}"
            + did_you_mean(bad, allowed)
        )
    hints = typing.get_type_hints(Recipe)
    recipe = {}
    for key, value in recipe_raw.items():
        dist = distribution(value, f"{where}.recipe.{key}")
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
