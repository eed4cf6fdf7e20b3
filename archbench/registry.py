"""Name -> object registries with decorator registration and entry-point plugins.

``BLOCKS``, ``STEMS``, ``HEADS``, ``FAMILIES``, ``PRESETS``, ``DATASETS``, ``LOGGERS`` and ``PLOTS`` are
all instances of :class:`Registry`. Registering a duplicate name raises; looking up an unknown
name raises :class:`~archbench.errors.UnknownNameError` with the closest known names.

Plugins: each registry has an entry-point group (:data:`PLUGIN_GROUPS`: ``archbench.blocks``,
``archbench.families``, ``archbench.presets``, ``archbench.stems``, ``archbench.heads``,
``archbench.datasets``, ``archbench.loggers``, ``archbench.plots``). An entry point's value is a module, or a callable taking no
arguments; it is imported the first time its registry is read, and whatever it registers, in
any registry, is recorded with that distribution's name as its source.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from archbench.errors import ArchbenchError, UnknownNameError

log = logging.getLogger(__name__)

T = TypeVar("T")

BUILTIN_SOURCE = "archbench"
BLOCK_PLUGIN_GROUP = "archbench.blocks"
PLUGIN_GROUPS = {
    "block": BLOCK_PLUGIN_GROUP,
    "stem": "archbench.stems",
    "head": "archbench.heads",
    "family": "archbench.families",
    "preset": "archbench.presets",
    "dataset": "archbench.datasets",
    "logger": "archbench.loggers",
    "plot kind": "archbench.plots",
}

# The distribution whose plugin is being imported: shared by every registry, since a plugin
# may register a block and the family built from it in one module.
_source = [BUILTIN_SOURCE]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and what we know about it."""

    name: str
    obj: T
    description: str
    source: str = BUILTIN_SOURCE
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A registry of named objects of one kind (``kind`` is used in messages)."""

    def __init__(
        self, kind: str, *, builtins: str | None = None, plugin_group: str | None = None
    ) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._builtins = builtins  # module whose import registers the built-in entries
        self._plugin_group = plugin_group
        self._loaded = False

    # -- registration -----------------------------------------------------------------------
    def register(
        self, name: str, *, description: str | None = None, **meta: Any
    ) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", description=..., **meta)``."""

        def decorate(obj: T) -> T:
            self.add(name, obj, description=description, **meta)
            return obj

        return decorate

    def add(self, name: str, obj: T, *, description: str | None = None, **meta: Any) -> None:
        if not isinstance(name, str) or not name or name != name.strip():
            raise ArchbenchError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            prev = self._entries[name]
            raise ArchbenchError(
                f"{self.kind} {name!r} is already registered (by {prev.source}); pick another name"
            )
        if description is None:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = Entry(name, obj, description, _source[-1], dict(meta))

    def remove(self, name: str) -> None:
        """Unregister ``name`` (for tests and interactive use)."""
        self._entries.pop(name, None)

    @contextlib.contextmanager
    def registered(
        self, name: str, obj: T, *, description: str | None = None, **meta: Any
    ) -> Iterator[T]:
        """Register ``obj`` for the duration of a ``with`` block."""
        self.add(name, obj, description=description, **meta)
        try:
            yield obj
        finally:
            self.remove(name)

    # -- lookup -----------------------------------------------------------------------------
    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        self._ensure_loaded()
        close = difflib.get_close_matches(str(name), self._entries, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}{hint} "
            f"(known: {', '.join(sorted(self._entries)) or 'none'})"
        )

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._ensure_loaded()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    # -- loading ----------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # set first: the imports below call back into this registry
        if self._builtins:
            importlib.import_module(self._builtins)
        if self._plugin_group:
            self.load_plugins()

    def load_plugins(self) -> list[str]:
        """Import every entry point of the plugin group; return the names it registered."""
        added: list[str] = []
        if not self._plugin_group:
            return added
        for ep in metadata.entry_points(group=self._plugin_group):
            dist = ep.dist.name if ep.dist is not None else ep.value.split(":")[0]
            before = set(self._entries)
            _source.append(dist)  # a stack: a plugin may read another registry, loading its own
            try:
                loaded = ep.load()
                if callable(loaded) and not isinstance(loaded, type):
                    loaded()
            except ArchbenchError:
                raise
            except Exception as exc:  # a broken plugin must not break archbench itself
                log.warning(
                    "could not load %s plugin %r from %s: %s", self.kind, ep.name, dist, exc
                )
            finally:
                _source.pop()
            added += sorted(set(self._entries) - before)
        return added


def _registry(kind: str, builtins: str) -> Registry[Any]:
    return Registry(kind, builtins=builtins, plugin_group=PLUGIN_GROUPS[kind])


BLOCKS = _registry("block", "archbench.models.blocks")
STEMS = _registry("stem", "archbench.models.blocks")
HEADS = _registry("head", "archbench.models.blocks")
FAMILIES = _registry("family", "archbench.models.presets")
PRESETS = _registry("preset", "archbench.models.presets")
DATASETS = _registry("dataset", "archbench.data")
# Experiment trackers (``archbench.tracking.ExperimentLogger`` subclasses), by ``--log`` kind.
LOGGERS = _registry("logger", "archbench.tracking.builtin")
# Plot kinds (``archbench.analysis.plots.PlotKind``), registered with ``register_plot``;
# plugins through the ``archbench.plots`` entry-point group.
PLOTS = _registry("plot kind", "archbench.analysis.plots.builtin")


def register_block(
    name: str, *, family: str, description: str | None = None
) -> Callable[[type], type]:
    """Register a block class under ``name``.

    The class must follow the block contract ``Block(w_in, w_out, stride, **params)`` (see
    :class:`archbench.models.blocks.base.Block`). ``family`` groups blocks in listings
    (``resnet``, ``preact``, ``wide``, ...); ``description`` defaults to the docstring's
    first line.
    """

    def decorate(cls: type) -> type:
        cls.block_name = name  # type: ignore[attr-defined]
        BLOCKS.add(name, cls, description=description, family=family)
        return cls

    return decorate
