"""The experiment spec's JSON Schema, generated from the typed definitions the parser uses.

Editors (VS Code's YAML extension, JetBrains, Neovim's yaml-language-server) complete and
check experiment YAML with it: ``archbench schema > spec.schema.json``, or the committed
``docs/spec.schema.json`` (a test keeps it equal to this). Each section's keys, types,
defaults and allowed values come from its frozen dataclass (:mod:`archbench.runner.sections`,
:class:`archbench.training.recipe.Recipe`) and its type hints (``Literal`` becomes an enum,
``X | None`` a nullable type, ``tuple[float, ...]`` an array); sampler, pruner and objective
names come from their tables. Only what the YAML writes differently from the parsed value is
stated here (a variant may be a preset's name; ``seeds`` may be one int; a search dimension
is a list of choices, a ``{low, high}`` mapping, or one value; profiles are partial specs).

The schema checks structure; archbench's own validation stays the judge (names in the
registries, budgets, cross-section rules), so a file the schema accepts can still be refused
with a message by ``archbench validate``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from archbench.runner.algorithms import PRUNERS, SAMPLERS
from archbench.runner.metrics import DIRECTIONS as OBJECTIVES
from archbench.runner.sections import (
    BudgetSection,
    DatasetSection,
    Distribution,
    PrunerSection,
    SamplerSection,
    VariantSection,
)

SCHEMA_ID = "https://archbench.invalid/spec.schema.json"
_PARTIAL = ("dataset", "recipe", "budget", "sampler", "pruner", "space")  # merged by profiles
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def type_schema(hint: Any) -> dict[str, Any]:
    """JSON Schema of one type hint (the subset the spec's dataclasses use)."""
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin in (typing.Union, types.UnionType):
        options = [type_schema(a) for a in typing.get_args(hint)]
        if all(set(o) == {"type"} for o in options):
            names = [o["type"] for o in options]
            return {"type": list(dict.fromkeys(names))}
        return {"anyOf": options}
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if origin in (dict, Mapping) or hint is dict:
        return {"type": "object"}
    return {}  # Any


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    return list(value) if isinstance(value, tuple) else value


def section_schema(cls: type, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object schema from a dataclass: one property per field, its type and default; the
    fields without a default are required; no other keys."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        prop = type_schema(hints[f.name])
        default = _default(f)
        if default is dataclasses.MISSING:
            required.append(f.name)
        else:
            prop["default"] = default
        properties[f.name] = prop
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    doc = (cls.__doc__ or "").strip().splitlines()
    if doc and not doc[0].startswith(cls.__name__ + "("):
        out["description"] = doc[0]
    return out


def _recipe() -> dict[str, Any]:
    from archbench.training.recipe import Recipe  # plain data: no torch import

    schema = section_schema(Recipe)
    schema["description"] = "How to train (SGD with momentum, a schedule, regularisation)."
    return schema


def _question() -> dict[str, Any]:
    from archbench.runner.question import QuestionSection

    schema = section_schema(QuestionSection)
    schema["properties"]["pairs"] = {
        "type": "array",
        "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        "description": "the [a, b] label pairs compared (compare: pairs)",
    }
    schema["description"] = (
        "The experiment's question: its comparisons, metric, smallest difference that "
        "matters, alpha and seed range; the runner trains in rounds until it is answered."
    )
    return schema


def _named(schema: dict[str, Any], names: list[str]) -> dict[str, Any]:
    schema["properties"]["name"] = {**schema["properties"]["name"], "enum": names}
    return schema


def spec_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an experiment spec file."""
    variant = section_schema(VariantSection)
    variant_or_preset = {
        "anyOf": [{"type": "string", "description": "a preset's name"}, {"$ref": "#/$defs/variant"}]
    }
    distribution = section_schema(Distribution)
    dimension = {
        "description": "a search dimension: a list of choices, {low, high[, step, log]} "
        "or {choices}, or one value",
        "anyOf": [
            {"type": "array", "minItems": 1},
            {"$ref": "#/$defs/distribution"},
            {"type": ["string", "number", "boolean"]},
        ],
    }
    per_family = {
        "description": "one dimension for every family, or a mapping family -> dimension",
        "anyOf": [dimension, {"type": "object", "additionalProperties": dimension}],
    }
    space = {
        "type": "object",
        "description": "a search space (define-by-run: family, then its depth/width/params)",
        "properties": {
            "family": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "depth": per_family,
            "width": per_family,
            "params": {
                "type": "object",
                "description": "family -> param -> dimension",
                "additionalProperties": {"type": "object", "additionalProperties": dimension},
            },
            "recipe": {
                "type": "object",
                "description": "recipe key -> dimension",
                "propertyNames": {"enum": sorted(_recipe()["properties"])},
                "additionalProperties": dimension,
            },
        },
        "required": ["family"],
        "additionalProperties": False,
    }
    sections: dict[str, Any] = {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "description": {"type": "string"},
        "dataset": {"$ref": "#/$defs/dataset"},
        "recipe": {"$ref": "#/$defs/recipe"},
        "variants": {"type": "array", "items": variant_or_preset},
        "space": {"$ref": "#/$defs/space"},
        "budget": {"$ref": "#/$defs/budget"},
        "objectives": {
            "type": "array",
            "items": {"enum": list(OBJECTIVES)},
            "minItems": 1,
            "uniqueItems": True,
        },
        "sampler": {"$ref": "#/$defs/sampler"},
        "pruner": {"$ref": "#/$defs/pruner"},
        "trials": {"type": ["integer", "null"], "minimum": 1},
        "seeds": {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0},
                    "minItems": 1,
                    "uniqueItems": True,
                },
            ],
            "default": [0],
        },
        "baselines": {"type": "array", "items": variant_or_preset},
        "question": _nullable({"$ref": "#/$defs/question"}),
        "storage": {
            "type": "string",
            "description": "a SQLite path, sqlite:///..., journal:path.log or postgresql://...",
        },
    }
    partial = {
        "type": "object",
        "description": "a partial spec merged over the base (mappings merge, the rest replaces)",
        "properties": {
            k: (_loose(v) if k in _PARTIAL else v) for k, v in sections.items() if k != "name"
        }
        # A profile's question merges over the base one (any subset of its keys), or is null:
        # the profile has no question (e.g. a seconds-long smoke profile).
        | {"question": _nullable({"$ref": "#/$defs/question_partial"})},
        "additionalProperties": False,
    }
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "archbench experiment spec",
        "description": "An archbench experiment (archbench run SPEC.yaml); generated by "
        "'archbench schema' from archbench's spec dataclasses.",
        "type": "object",
        "properties": {
            **sections,
            "profiles": {"type": "object", "additionalProperties": partial},
            "default_profile": {"type": "string"},
        },
        "required": ["name", "dataset"],
        "additionalProperties": False,
        "$defs": {
            "dataset": section_schema(DatasetSection),
            "recipe": _recipe(),
            "variant": variant,
            "budget": section_schema(BudgetSection),
            "sampler": _named(section_schema(SamplerSection), list(SAMPLERS)),
            "pruner": _named(section_schema(PrunerSection), list(PRUNERS)),
            "distribution": distribution,
            "space": space,
            "question": _question(),
        },
    }
    for name in (*_PARTIAL, "question"):  # as profiles give them
        section = schema["$defs"][name]
        schema["$defs"][f"{name}_partial"] = {k: v for k, v in section.items() if k != "required"}
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _loose(ref: dict[str, Any]) -> dict[str, Any]:
    """A section as a profile may give it: any subset of its keys (required ones included)."""
    name = ref["$ref"].rsplit("/", 1)[-1]
    return {"$ref": f"#/$defs/{name}_partial"}
