"""Turn an experiment's architecture configurations into concrete, budget-matched NetSpecs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from archbench.errors import ArchbenchError, SpecError
from archbench.models.net import NetSpec
from archbench.runner.spec import BudgetSection, ExperimentSpec


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
        common = {
            "metric": budget.metric,
            "tolerance": budget.tolerance,
            "params": params,
            **shape_kw,
        }
        if budget.solve == "width":
            match = budget_mod.solve_width(
                family.name, budget.target_count, depth=config.get("depth"), **common
            )
        else:
            match = budget_mod.solve_depth(
                family.name, budget.target_count, width=config.get("width"), **common
            )
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
        from archbench.runner.spec import VariantSection, _variant_config

        configs += [_variant_config(v) for v in spec.baselines]
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
                        configs.append(_variant_config(section))
    return [resolve(c, shape, spec.budget) for c in configs]


def _probe_widths(dist: Any) -> list[Any]:
    """The widths worth checking up front: the choices, or a range's ends."""
    if dist.choices is not None:
        return list(dist.choices)
    return sorted({int(dist.low), int(dist.high)} if dist.is_int else {dist.low, dist.high})
