"""The one interface every experiment tracker implements, and ``--log KIND:TARGET`` parsing.

A tracker (TensorBoard, MLflow, a plugin's W&B) is an :class:`ExperimentLogger` subclass
registered in :data:`archbench.registry.LOGGERS` under its ``--log`` kind. One instance lives
in one process and logs that process's runs one after another::

    start_run(config)            # the run's identity, configuration and recipe (flat-ish dict)
    log_epoch(metrics, step)     # each epoch's metrics (floats), step = epoch number
    finish_run(final)            # status, final metrics, wall time

Plugins register a subclass from an ``archbench.loggers`` entry point::

    from archbench.registry import LOGGERS
    from archbench.tracking import ExperimentLogger

    @LOGGERS.register("wandb", description="Weights & Biases runs")
    class WandbLogger(ExperimentLogger):
        modules = ("wandb",)
        install = "pip install wandb"
        ...
"""

from __future__ import annotations

import importlib.util
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from archbench.errors import ArchbenchError


class TrackerError(ArchbenchError):
    """A ``--log`` target that cannot be used (unknown kind, missing package, bad target)."""


class ExperimentLogger(ABC):
    """One experiment tracker; ``target`` is what follows ``KIND:`` in ``--log KIND:TARGET``.

    Subclasses set ``modules`` (importable names the backend needs) and ``install`` (how to
    get them), so a missing package is reported before any trial. The constructor must be
    cheap and import nothing heavy; :meth:`open` may connect (called once per process before
    the first run, where a failure stops ``archbench run`` with one line).
    """

    modules: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""

    def __init__(self, target: str) -> None:
        self.target = target

    @classmethod  # noqa: B027 (an optional hook)
    def check_target(cls, target: str) -> None:
        """Raise :class:`TrackerError` for a target this backend cannot take (no I/O)."""

    def open(self) -> None:  # noqa: B027 (optional hook)
        """Connect or create what the backend needs; raise if it cannot be used."""

    @abstractmethod
    def start_run(self, config: Mapping[str, Any]) -> None:
        """Begin logging one run; ``config`` describes it (see :func:`flatten` for scalars)."""

    @abstractmethod
    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        """One epoch's metrics; ``step`` is the epoch number (1-based)."""

    @abstractmethod
    def finish_run(self, final: Mapping[str, Any]) -> None:
        """End the run: ``final`` has ``status`` and the final metrics (floats or ``None``)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what :meth:`open` took (the process is done logging)."""


@dataclass(frozen=True)
class LogTarget:
    """One parsed ``--log KIND:TARGET``."""

    kind: str
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"

    def shown(self) -> str:
        """As text to print or log: a password in the target's URL masked."""
        return shown(str(self))


def shown(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` masked."""
    return re.sub(r"(//[^:/@\s]+):[^@/\s]*@", r"\1:***@", text)


def parse_target(text: str) -> LogTarget:
    """``"mlflow:sqlite:///m.db"`` -> ``LogTarget("mlflow", "sqlite:///m.db")``; checks that
    the kind is registered, its packages are installed and the target has the right form."""
    from archbench.registry import LOGGERS

    if not isinstance(text, str) or ":" not in text:
        raise TrackerError(
            f"--log {shown(str(text))!r}: expected KIND:TARGET, e.g. tensorboard:runs/tb or "
            f"mlflow:sqlite:///mlflow.db (kinds: {', '.join(LOGGERS.names())})"
        )
    kind, target = text.split(":", 1)
    kind, target = kind.strip(), target.strip()
    if kind not in LOGGERS:
        raise TrackerError(f"--log {shown(text)!r}: {LOGGERS.unknown_message(kind)}")
    cls = LOGGERS.get(kind)
    missing = [m for m in cls.modules if not _importable(m)]
    if missing:
        how = cls.install or f"pip install {' '.join(missing)}"
        raise TrackerError(f"--log {kind} needs `{how}` (not installed: {', '.join(missing)})")
    if not target:
        raise TrackerError(f"--log {text!r}: give a target after '{kind}:'")
    cls.check_target(target)
    return LogTarget(kind, target)


def parse_targets(texts: Sequence[str]) -> tuple[LogTarget, ...]:
    """Every ``--log`` value parsed; the same one twice is refused (it would log twice)."""
    targets = tuple(parse_target(t) for t in texts)
    seen = set()
    for t in targets:
        if (t.kind, t.target) in seen:
            raise TrackerError(f"--log {t.shown()} is given twice")
        seen.add((t.kind, t.target))
    return targets


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists and other values as they are (``recipe.lr``)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def scalar(value: Any) -> int | float | str | bool:
    """A value trackers take as a hyperparameter: numbers and strings as they are, anything
    else (lists, ``None``) as its text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "None" if value is None else str(value)


def safe_name(text: Any) -> str:
    """A path component from a label (letters, digits, ``._-``; nothing else)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "run"
    return name[:120]


def run_name(config: Mapping[str, Any]) -> str:
    """``resnet8_seed0`` (``run12_resnet8_seed0`` for a stored run): what trackers call it."""
    label = safe_name(config.get("label") or "run")
    name = f"{label}_seed{config.get('seed', 0)}"
    run_id = config.get("run_id")
    return f"run{run_id}_{name}" if run_id is not None else name
