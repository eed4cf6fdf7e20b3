"""Checks and conversions of what callers hand the store, done before anything is written."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from archbench.canonical import canonical_hash as _canonical_hash
from archbench.errors import ArchbenchError


class StoreError(ArchbenchError, ValueError):
    """A bad write to the results store, or a store that cannot be used as asked."""


class SchemaVersionError(StoreError):
    """The store was written by an archbench with another schema version."""


class RunBusyError(StoreError):
    """``start_run(exclusive=True)`` found the run 'running' under another trial: another
    worker is (or was, until it died) training that configuration and seed."""

    def __init__(self, run_id: int, study_name: str | None, trial_number: int | None) -> None:
        super().__init__(
            f"run {run_id} is being trained by trial {trial_number} of study {study_name!r}"
        )
        self.run_id = run_id
        self.owner = (study_name, trial_number)


def as_mapping(obj: Any, what: str) -> dict[str, Any]:
    """A plain dict from a mapping, a dataclass instance, or an object with ``_asdict()``."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if hasattr(obj, "_asdict"):
        return dict(obj._asdict())
    raise StoreError(
        f"{what}: expected a mapping or a dataclass instance, got {type(obj).__name__}"
    )


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    allowed = tuple(allowed)
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise StoreError(f"{what}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def to_float(value: Any, what: str) -> float | None:
    """A finite or infinite float; NaN and None become None (stored as NULL on every backend)."""
    if value is None:
        return None
    if isinstance(value, (bool, str, bytes)):
        raise StoreError(f"{what}: expected a number, got {value!r}")
    try:
        number = float(value)  # numpy and 0-d torch scalars too
    except (TypeError, ValueError):
        raise StoreError(f"{what}: expected a number, got {value!r}") from None
    return None if math.isnan(number) else number


def to_int(value: Any, what: str, *, minimum: int | None = None, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise StoreError(f"{what}: expected an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise StoreError(f"{what}: must be >= {minimum}, got {value}")
    return value


def to_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StoreError(f"{what}: expected a non-empty string, got {value!r}")
    return value


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        # JSON (and PostgreSQL's json type) has no NaN/Infinity: keep them readable as text.
        return number if math.isfinite(number) else str(number)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreError(f"{where}: JSON keys must be strings, got {key!r}")
            out[key] = _jsonable(item, f"{where}.{key}")
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(as_mapping(value, where), where)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise StoreError(f"{where}: {type(value).__name__} value {value!r} is not JSON-serialisable")


def to_json(value: Any, what: str, *, optional: bool = False) -> Any:
    """A JSON-ready copy of a mapping (nested lists, numbers, strings); checked up front."""
    if value is None:
        if optional:
            return None
        return {}
    return _jsonable(as_mapping(value, what), what)


def canonical_hash(value: Any, length: int = 12) -> str:
    return _canonical_hash(_jsonable(value, "value"), length)


def config_key(
    spec_hash: str, recipe: Mapping[str, Any], hyperparameters: Mapping[str, Any]
) -> str:
    """The identity of one configuration: the variant plus everything that shapes training.

    Seeds are not part of it: the runs of one configuration differ only by seed.
    """
    recipe_hash = canonical_hash({"recipe": recipe, "hyperparameters": hyperparameters})
    return f"{spec_hash}-{recipe_hash}"
