"""Dataclass-driven validation of user-supplied mappings, with messages that name the owner,
the key and what is allowed. Used for block params and for experiment specs."""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from archbench.errors import SpecError

#: Names that become parts of file names (experiment, profile): safe characters, and short
#: enough that ``<experiment>-<profile>-<what>.csv`` stays far below a file system's 255 bytes.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LEN = 64
#: Variant labels are shown in tables and plots and stored, never used as file names.
MAX_LABEL_LEN = 100


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(str(value))} characters)"


def check_path_name(value: Any, what: str) -> str:
    """``value`` if it is safe as part of a file name, else :class:`SpecError` saying why: 1 to
    ``MAX_NAME_LEN`` letters, digits, ``_``, ``.``, ``-``, starting with a letter or digit
    (so no ``/``, no ``..`` climbing out of the results folder)."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise SpecError(
            f"{what} must be letters, digits, '_', '.', '-' starting with a letter or digit "
            f"(it becomes part of file names), got {_shown(value)}"
        )
    if len(value) > MAX_NAME_LEN:
        raise SpecError(
            f"{what} is {len(value)} characters long, at most {MAX_NAME_LEN} are allowed "
            f"(it becomes part of file names): {_shown(value)}"
        )
    return value


def check_label(value: Any, what: str) -> str:
    """A display label: a non-empty string of at most ``MAX_LABEL_LEN`` printable characters."""
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise SpecError(f"{what} must be a non-empty line of printable text, got {_shown(value)}")
    if len(value) > MAX_LABEL_LEN:
        raise SpecError(
            f"{what} is {len(value)} characters long, at most {MAX_LABEL_LEN} are allowed: "
            f"{_shown(value)}"
        )
    return value


def too_long_int(exc: ValueError) -> str:
    """Words for a ValueError a YAML or JSON parser let through: ``int()`` past Python's digit
    limit (both parse integers with it), or a value it cannot convert (a date of day 32)."""
    text = str(exc)
    if "integer string conversion" in text:
        return f"an integer of more than {sys.get_int_max_str_digits():,} digits"
    return f"a value that cannot be read ({text.splitlines()[0][:200] if text else 'ValueError'})"


def is_positive_int(value: Any) -> bool:
    """An ``int`` >= 1 (``True`` is not a count). The one positive-integer check: callers
    word their own error, since they know what the value is."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def did_you_mean(unknown: Iterable[str], allowed: Iterable[str]) -> str:
    """``"; did you mean 'epochs'?"`` for the allowed names close to an unknown one, else ``""``.

    The one spelling hint for unknown keys, in the YAML and in ``--set`` alike; ``allowed``
    may hold dotted paths (``recipe.epochs``), matched on their last part too.
    """
    allowed = list(dict.fromkeys(allowed))
    by_leaf: dict[str, list[str]] = {}
    for name in allowed:
        by_leaf.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    close: list[str] = []
    for name in unknown:
        for match in difflib.get_close_matches(str(name), allowed, n=3, cutoff=0.6):
            close.append(match)
        for leaf in difflib.get_close_matches(str(name), by_leaf, n=3, cutoff=0.75):
            close.extend(by_leaf[leaf])
    close = list(dict.fromkeys(close))[:3]
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def parse_params(
    owner: str, params_cls: type, params: Mapping[str, Any], *, noun: str = "param"
) -> Any:
    """Build ``params_cls(**params)`` with readable errors.

    Checks unknown names and basic types (``int``, ``float``, ``bool``, ``str``, and
    ``Literal``/``Optional`` of those); then calls ``params_cls.validate()`` if defined, which
    raises :class:`SpecError` (or ``ValueError``) with its own message.
    """
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise SpecError(
            f"{owner}: unknown {noun} {', '.join(map(repr, unknown))}; allowed: {allowed}"
            + did_you_mean(unknown, fields)
        )
    hints = typing.get_type_hints(params_cls)
    clean = {
        name: _check_type(owner, name, value, hints[name], noun) for name, value in params.items()
    }
    try:
        parsed = params_cls(**clean)
        validate = getattr(parsed, "validate", None)
        if validate is not None:
            validate()
    except SpecError as exc:
        raise SpecError(f"{owner}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{owner}: {exc}") from None
    return parsed


def _check_type(owner: str, name: str, value: Any, hint: Any, noun: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise SpecError(
                f"{owner}: {noun} {name!r} must be one of {', '.join(map(repr, allowed))}, "
                f"got {value!r}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(owner, name, value, option, noun)
            except SpecError:
                continue
        raise SpecError(f"{owner}: {noun} {name!r} has the wrong type: {value!r} ({hint})")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, bool, str) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise SpecError(f"{owner}: {noun} {name!r} must be {hint.__name__}, got {value!r}")
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def check_tree(data: Any, where: str, *, max_values: int = 100_000, max_depth: int = 50) -> None:
    """Refuse a parsed document too big or too deep to be a spec, or one that contains itself.

    YAML aliases share one object between places, so a few lines can stand for billions of
    values (``&a [*a, ...]`` nested): count values as if every alias were written out.
    """
    count = 0

    def walk(value: Any, depth: int, ancestors: frozenset[int]) -> None:
        nonlocal count
        count += 1
        if count > max_values:
            raise SpecError(
                f"{where}: the YAML expands to more than {max_values:,} values (nested "
                "aliases?); a spec is a few dozen keys"
            )
        if not isinstance(value, Mapping | list | tuple):
            return
        if id(value) in ancestors:
            raise SpecError(f"{where}: the YAML contains itself through an alias (&a ... *a)")
        if depth > max_depth:
            raise SpecError(f"{where}: the YAML nests deeper than {max_depth} levels")
        inner = ancestors | {id(value)}
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            walk(key, depth + 1, inner)
            walk(item, depth + 1, inner)

    walk(data, 0, frozenset())
