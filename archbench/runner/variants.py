"""Turn an experiment's architecture configurations into concrete, budget-matched NetSpecs.

This is where a parsed spec meets the registries: :func:`bind` checks the names of its
dataset, families and presets (and the dataset's options) and gives space families their
default depth; :func:`check_spec` also solves every budget that can be enumerated up front,
so ``archbench validate`` reports an impossible budget before anything runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.errors import ArchbenchError, SpecError
from archbench.models.net import NetSpec
from archbench.runner.sections import BudgetSection, Distribution, VariantSection, variant_config
from archbench.runner.spec import ExperimentSpec, load_spec


@dataclass(frozen=True)
class ResolvedVariant:
    """A configuration made concrete: the spec to build and, under a budget, how close it is."""

    label: str
    config: Mapping[str, Any]
    spec: NetSpec
    budget: Any | None  # archbench.models.budget.BudgetMatch

    @property
    def family(self) -> str | None:
        return self.config.get("family")

    @property
    def depth(self) -> int | None:
        """The depth built, as the family counts it: the solved one under ``solve: depth``,
        else the config's or the family's default; a preset's own (``None`` if it has none).
        Not ``spec.depth``, which counts blocks."""
        from archbench.models.presets import get_family, preset_depth

        if self.budget is not None:
            return int(self.budget.depth)
        if self.config.get("preset"):
            return preset_depth(self.config["preset"])
        depth = self.config.get("depth")
        return get_family(self.config["family"]).default_depth if depth is None else depth


def load_checked(
    path: str | Path,
    profile: str | None = None,
    *,
    budgets: bool = True,
    overrides: Sequence[str] = (),
) -> ExperimentSpec:
    """:func:`~archbench.runner.spec.load_spec`, bound to the registries and, with
    ``budgets``, every enumerable budget solved (what ``validate`` and ``run`` check).
    ``overrides``: ``KEY.PATH=VALUE`` strings applied after the profile."""
    spec = load_spec(path, profile, overrides=overrides)
    return check_spec(spec)[0] if budgets else bind(spec)


def check_spec(spec: ExperimentSpec) -> tuple[ExperimentSpec, list[ResolvedVariant]]:
    """The bound spec and its resolved variants; raises :class:`SpecError` naming the spec
    for an unknown name, a bad budget target or a budget no variant can meet."""
    from archbench.models.budget import parse_count

    spec = bind(spec)
    if spec.budget is not None:
        try:
            parse_count(spec.budget.target)  # "1.7M"; a clear error otherwise
        except ArchbenchError as exc:
            raise SpecError(f"{spec.origin}: budget.target: {exc}") from None
    try:
        check_recipe_space(spec)
        if spec.space is not None:
            for i, baseline in enumerate(spec.baselines):
                try:
                    baseline_params(spec, baseline)
                except SpecError as exc:
                    raise SpecError(f"baselines[{i}]: {exc}") from None
        return spec, resolve_all(spec, dataset_shape(spec))
    except SpecError as exc:
        raise SpecError(f"{spec.origin}: {exc}") from None


def baseline_params(spec: ExperimentSpec, baseline: VariantSection) -> dict[str, Any]:
    """Optuna params that make the define-by-run space produce ``baseline``.

    Raises :class:`SpecError` for a baseline the space cannot produce: a family, depth,
    width or param outside it (Optuna would fail the enqueued trial at its first suggest).
    """
    from archbench.models.presets import get_family

    assert spec.space is not None
    space = spec.space
    fam = baseline.family
    name = repr(baseline.display)
    if fam not in space.families:
        raise SpecError(
            f"baseline {name}: family {fam!r} is not in the space {list(space.families)}"
        )
    depth = baseline.depth or get_family(fam).default_depth
    _check_in_space(f"baseline {name}: depth", depth, space.depth.get(fam), f"space.depth.{fam}")
    params = {"family": fam, f"{fam}.depth": depth}
    if fam in space.width:
        if baseline.width is None:
            raise SpecError(f"baseline {name}: the space samples {fam} widths; give 'width'")
        _check_in_space(
            f"baseline {name}: width", baseline.width, space.width[fam], f"space.width.{fam}"
        )
        params[f"{fam}.width"] = baseline.width
    pspace = space.params.get(fam, {})
    extra = sorted(set(baseline.params) - set(pspace))
    if extra:
        raise SpecError(
            f"baseline {name}: params {extra} are not in the space's "
            f"params for {fam} ({sorted(pspace) or 'none'})"
        )
    missing = sorted(set(pspace) - set(baseline.params))
    if missing:
        raise SpecError(f"baseline {name}: the space samples {fam} params {missing}; give them")
    for key, value in baseline.params.items():
        _check_in_space(f"baseline {name}: {key}", value, pspace[key], f"space.params.{fam}")
    params.update({f"{fam}.{k}": v for k, v in baseline.params.items()})
    # A baseline trains with the spec's own recipe where the space allows it.
    for key, dist in space.recipe.items():
        value = getattr(spec.recipe, key)
        if _in_space(value, dist):
            params[f"recipe.{key}"] = value
    return params


def _in_space(value: Any, dist: Distribution) -> bool:
    if dist.choices is not None:
        return value in dist.choices
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    if dist.is_int and value != int(value):
        return False
    if not dist.low <= value <= dist.high:
        return False
    if dist.step is None:
        return True
    steps = float(value - dist.low) / dist.step
    return abs(steps - round(steps)) < 1e-8  # 0.3 in 0.1..0.5 step 0.1 (Optuna's tolerance)


def _check_in_space(what: str, value: Any, dist: Distribution | None, key: str) -> None:
    if dist is None or _in_space(value, dist):
        return
    if dist.choices is not None:
        allowed = f"one of {list(dist.choices)}"
    else:
        allowed = f"{dist.low}..{dist.high}" + (f" in steps of {dist.step}" if dist.step else "")
    raise SpecError(f"{what} {value!r} is not in {key} ({allowed}); the space cannot draw it")


def check_recipe_space(spec: ExperimentSpec) -> None:
    """Every recipe a trial can get must validate: each grid combination of ``space.recipe``,
    and for a sampled space each choice and each range's bounds (with the spec's recipe for
    the other keys). Otherwise ``validate`` passes and the trial fails at its start."""
    if spec.space is None or not spec.space.recipe:
        return
    combos: list[dict[str, Any]] = []
    if spec.sampler.name == "grid":
        seen: set[str] = set()
        for config in spec.grid():
            key = repr(sorted(config["recipe"].items()))
            if key not in seen:  # architectures share the recipe combinations
                seen.add(key)
                combos.append(config["recipe"])
    else:
        for name, dist in spec.space.recipe.items():
            values = dist.choices if dist.choices is not None else (dist.low, dist.high)
            combos += [{name: value} for value in values]
    for combo in combos:
        try:
            dataclasses.replace(spec.recipe, **combo).validate()
        except (SpecError, TypeError, ValueError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in combo.items())
            raise SpecError(f"space.recipe ({shown}): {exc}") from None


def bind(spec: ExperimentSpec) -> ExperimentSpec:
    """Check the spec's names against the registries; fill in the space's default depths.

    Idempotent and cheap (no counting); the runner binds every spec it is given.
    """
    from archbench.data.load import check_options
    from archbench.models.presets import get_family, get_preset
    from archbench.registry import DATASETS

    where = spec.origin
    if spec.dataset.name not in DATASETS:
        raise SpecError(f"{where}: dataset: {DATASETS.unknown_message(spec.dataset.name)}")
    try:
        check_options(spec.dataset.name, spec.dataset.options)
    except ArchbenchError as exc:
        raise SpecError(f"{where}: dataset.options: {exc}") from None
    for key, items in (("variants", spec.variants), ("baselines", spec.baselines)):
        for i, variant in enumerate(items):
            try:
                if variant.preset:
                    get_preset(variant.preset)
                else:
                    get_family(variant.family)
            except ArchbenchError as exc:
                raise SpecError(f"{where}: {key}[{i}]: {exc}") from None
    if spec.space is None:
        return spec
    depth = dict(spec.space.depth)
    for fam in spec.space.families:
        try:
            family = get_family(fam)
        except ArchbenchError as exc:
            raise SpecError(f"{where}: space.family: {exc}") from None
        depth.setdefault(fam, Distribution(choices=(family.default_depth,)))
    return dataclasses.replace(spec, space=dataclasses.replace(spec.space, depth=depth))


def dataset_shape(spec: ExperimentSpec) -> tuple[int, int, int]:
    """(num_classes, in_channels, input_size) of the spec's dataset, without loading it: the
    dataset entry tells, given its options (an image folder counts its class folders)."""
    from archbench.data.load import dataset_shape as shape_of

    d = spec.dataset
    return tuple(shape_of(d.name, root=d.root, image_size=d.image_size, options=d.options))


def resolve(
    config: Mapping[str, Any], shape: tuple[int, int, int], budget: BudgetSection | None
) -> ResolvedVariant:
    """Build the NetSpec of ``config`` for a dataset of ``shape`` = (classes, channels, size)."""
    from archbench.models import budget as budget_mod
    from archbench.models.presets import get_family, get_preset

    num_classes, in_channels, input_size = shape
    label = config["label"]
    shape_kw = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
    try:
        if config.get("preset"):
            spec = get_preset(config["preset"], **shape_kw)
            spec.validate()
            return ResolvedVariant(label, config, spec, None)
        family = get_family(config["family"])
        params = dict(config.get("params") or {})
        if budget is None:
            spec = family.build(config.get("depth"), config.get("width"), **shape_kw, **params)
            spec.validate()
            return ResolvedVariant(label, config, spec.replace(name=label), None)
        target = budget_mod.parse_count(budget.target)
        common = {
            "metric": budget.metric,
            "tolerance": budget.tolerance,
            "params": params,
            **shape_kw,
        }
        # The axis that is solved is not passed: the config may name a starting value for it.
        fixed = (
            {"depth": config.get("depth")}
            if budget.solve == "width"
            else {"width": config.get("width")}
        )
        match = budget_mod.solve(family.name, target, vary=budget.solve, **fixed, **common)
        return ResolvedVariant(label, config, match.spec.replace(name=label), match)
    except ArchbenchError as exc:
        message = str(exc).replace("--tolerance", "the budget's 'tolerance'")
        raise SpecError(f"variant {label!r}: {message}") from None


def resolve_all(spec: ExperimentSpec, shape: tuple[int, int, int]) -> list[ResolvedVariant]:
    """Resolve every configuration that can be enumerated up front (grid, baselines, and each
    family/depth choice of a sampled space), so impossible budgets fail before anything runs."""
    configs: list[dict[str, Any]] = []
    if spec.sampler.name == "grid":
        seen = set()
        for config in spec.grid():
            key = config["label"]
            if key not in seen:  # recipe choices share the architecture
                seen.add(key)
                configs.append(config)
    else:
        configs += [variant_config(v) for v in spec.baselines]
        if spec.space is not None:
            for fam in spec.space.families:
                dist = spec.space.depth[fam]
                if dist.choices is not None:
                    depths = list(dist.choices)
                elif dist.is_int and (int(dist.high) - int(dist.low)) // int(dist.step or 1) < 64:
                    depths = list(range(int(dist.low), int(dist.high) + 1, int(dist.step or 1)))
                else:
                    raise SpecError(
                        f"space.depth.{fam}: depths must be 'choices' or an integer range of at "
                        f"most 64 values (got {dist}); a family's depth follows a rule such as "
                        "6n+2, so give 'step' accordingly"
                    )
                width = spec.space.width.get(fam)
                widths = [None] if width is None else _probe_widths(width)
                for depth in depths:
                    for w in widths:
                        section = VariantSection(family=fam, depth=depth, width=w)
                        configs.append(variant_config(section))
    return [resolve(c, shape, spec.budget) for c in configs]


def _probe_widths(dist: Any) -> list[Any]:
    """The widths worth checking up front: the choices, or a range's ends."""
    if dist.choices is not None:
        return list(dist.choices)
    return sorted({int(dist.low), int(dist.high)} if dist.is_int else {dist.low, dist.high})
