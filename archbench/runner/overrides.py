"""Command-line overrides of an experiment spec: ``--set dataset.name=cifar10``.

An override is a dotted key path into the spec's YAML and a value parsed as a YAML scalar
(``3`` is an int, ``0.1`` a float, ``true`` a bool, ``null`` None, ``[8, 16]`` a list,
anything else a string). Overrides are applied to the spec's mapping *after* its profile is
merged, so they win over both the base spec and the profile; the result is then validated
like any spec, so a bad value fails with the same message a bad YAML value would.

Only keys under a mapping can be set (``recipe.epochs``, ``dataset.options.augment``); an
index into a list (``variants.0.depth``) is rejected with the key path, since list entries
have no stable names. A key the spec does not have yet is created (``dataset.image_size=16``)
and the spec's own validation rejects names it does not know.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from archbench.errors import SpecError
from archbench.validation import too_long_int

_FIXED = ("profiles", "default_profile")  # choose a profile with --profile instead


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"recipe.epochs=3"`` -> ``(("recipe", "epochs"), 3)``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(
            f"override {text!r}: expected KEY=VALUE with a dotted KEY, e.g. recipe.epochs=3"
        )
    path = tuple(part.strip() for part in key.split("."))
    if any(not part for part in path):
        raise SpecError(f"override {text!r}: empty part in key path {key!r}")
    if path[0] in _FIXED:
        raise SpecError(
            f"override {key!r}: {path[0]!r} cannot be set; choose a profile with --profile"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise SpecError(f"override {key!r}: value {raw!r} is not valid YAML: {exc}") from None
    except ValueError as exc:  # int() past Python's digit limit
        raise SpecError(f"override {key!r}: value is {too_long_int(exc)}") from None
    return path, value


def dataset_override(name: str) -> str:
    """The ``--dataset NAME`` shorthand, as the ``--set`` it stands for."""
    return f"dataset.name={name}"


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of the (profile-merged) spec mapping ``data`` with every override applied, in order.

    Raises :class:`SpecError` naming the key path when a part of it is not a mapping.
    """
    out = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text)
        node: Any = out
        for depth, part in enumerate(path[:-1]):
            where = ".".join(path[: depth + 1])
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, Mapping):
                raise SpecError(
                    f"override {'.'.join(path)!r}: {where!r} is a {type(child).__name__}, "
                    "not a mapping of keys; set the whole value instead "
                    f"(e.g. --set {where}=[...])"
                )
            node = child
        node[path[-1]] = value
    return out


def describe(overrides: Iterable[str]) -> str:
    """One line for logs and reports: ``dataset.name=cifar10, recipe.epochs=3``."""
    return ", ".join(overrides)
