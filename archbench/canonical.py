"""Canonical JSON and its hash: the one way archbench turns a value into a stable identity.

Keys sorted, no whitespace, so equal values give equal text on every machine and Python
version. Used for a net spec's ``spec_hash``, the store's ``config_key`` and cache keys.
Changing this changes every stored identity: don't.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any


def canonical_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """``value`` as JSON with sorted keys and no whitespace. ``default`` (e.g. ``str``) turns
    values JSON cannot hold into ones it can; without it they raise ``TypeError``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default)


def canonical_hash(
    value: Any, length: int = 16, *, default: Callable[[Any], Any] | None = None
) -> str:
    """The first ``length`` hex digits of the SHA-256 of :func:`canonical_json` of ``value``."""
    return text_hash(canonical_json(value, default=default), length)


def text_hash(text: str, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``text`` (already canonical JSON)."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]
