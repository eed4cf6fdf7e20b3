"""Several trackers behind one object, each one's failures kept away from the run.

:class:`Trackers` holds the loggers of one process; ``trackers.run(config)`` is a context
manager giving a :class:`TrackedRun` whose ``log_epoch`` / ``finish`` go to every logger. A
logger that raises is warned about once per process (a ``logging`` warning naming it and the
error) and skipped for the rest of that run; the training never sees the error. A run left
without ``finish`` (an exception, Ctrl-C) is finished as ``failed``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from archbench.tracking.base import (
    ExperimentLogger,
    LogTarget,
    TrackerError,
    parse_targets,
    shown,
)

log = logging.getLogger(__name__)

#: Final metrics a run reports (the store's, plus its wall time).
FINAL_KEYS = (
    "val_err",
    "test_err",
    "test_top5_err",
    "train_err",
    "train_loss",
    "epochs_done",
    "wall_time_s",
)


def epoch_values(metrics: Any) -> dict[str, float]:
    """An ``EpochMetrics`` (or mapping) as ``{name: float}``, without ``epoch`` and ``None``s."""
    raw = dataclasses.asdict(metrics) if dataclasses.is_dataclass(metrics) else dict(metrics)
    return {
        k: float(v)
        for k, v in raw.items()
        if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class Trackers:
    """The loggers of one process (built from ``--log`` targets)."""

    def __init__(self, loggers: Sequence[ExperimentLogger] = ()) -> None:
        self.loggers = list(loggers)
        self._warned: set[int] = set()

    @classmethod
    def from_targets(cls, targets: Sequence[str | LogTarget], *, open: bool = True) -> Trackers:
        """Loggers for ``targets`` (strings are parsed); ``open`` connects each one now, so a
        target that cannot be used raises :class:`TrackerError` before anything trains."""
        from archbench.registry import LOGGERS

        parsed = parse_targets([str(t) for t in targets])
        loggers = [LOGGERS.get(t.kind)(t.target) for t in parsed]
        if open:
            for t, logger in zip(parsed, loggers):
                try:
                    logger.open()
                except TrackerError:
                    raise
                except Exception as exc:
                    detail = shown(" ".join(str(exc).split()))[:300]
                    raise TrackerError(
                        f"--log {t.shown()}: cannot be used: {type(exc).__name__}: {detail}"
                    ) from None
        return cls(loggers)

    def __bool__(self) -> bool:
        return bool(self.loggers)

    @contextmanager
    def run(self, config: Mapping[str, Any]) -> Iterator[TrackedRun]:
        tracked = TrackedRun(self, dict(config))
        tracked.start()
        try:
            yield tracked
        except BaseException as exc:
            tracked.finish("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            tracked.finish("failed", error="the run ended without a result")

    def close(self) -> None:
        for logger in self.loggers:
            self._call(logger, "close", None)

    def _call(
        self, logger: ExperimentLogger, method: str, live: set[int] | None, *args: Any
    ) -> None:
        if live is not None and id(logger) not in live:
            return
        try:
            getattr(logger, method)(*args)
        except Exception as exc:
            if live is not None:
                live.discard(id(logger))
            name = f"{type(logger).__name__} ({shown(logger.target)})"
            if id(logger) in self._warned:
                log.debug("%s.%s failed again: %s", name, method, exc)
                return
            self._warned.add(id(logger))
            log.warning(
                "experiment tracker %s failed in %s: %s: %s; training goes on, without it for "
                "this run (further failures of it are not shown)",
                name,
                method,
                type(exc).__name__,
                shown(" ".join(str(exc).split()))[:300],
            )


class TrackedRun:
    """One run as every tracker sees it."""

    def __init__(self, trackers: Trackers, config: dict[str, Any]) -> None:
        self.trackers = trackers
        self.config = config
        self.live = {id(lg) for lg in trackers.loggers}
        self.finished = False

    def start(self) -> None:
        for logger in self.trackers.loggers:
            self.trackers._call(logger, "start_run", self.live, self.config)

    def log_epoch(self, metrics: Any, step: int | None = None) -> None:
        """``metrics``: ``EpochMetrics`` or a mapping; ``step`` defaults to its ``epoch``."""
        if self.finished or not self.live:
            return
        if step is None:
            step = int(metrics["epoch"] if isinstance(metrics, Mapping) else metrics.epoch)
        values = epoch_values(metrics)
        for logger in self.trackers.loggers:
            self.trackers._call(logger, "log_epoch", self.live, values, step)

    def finish(
        self, status: str, final: Any = None, *, wall_time_s: float | None = None, **extra: Any
    ) -> None:
        """End the run once (later calls do nothing). ``final``: the last ``EpochMetrics`` (or
        a mapping with :data:`FINAL_KEYS`); its ``epoch`` becomes ``epochs_done``."""
        if self.finished:
            return
        self.finished = True
        out: dict[str, Any] = {"status": status}
        if final is not None:
            raw = dataclasses.asdict(final) if dataclasses.is_dataclass(final) else dict(final)
            if "epoch" in raw and "epochs_done" not in raw:
                raw["epochs_done"] = raw["epoch"]
            out.update({k: raw.get(k) for k in FINAL_KEYS if raw.get(k) is not None})
        if wall_time_s is not None:
            out["wall_time_s"] = wall_time_s
        out.update(extra)
        for logger in self.trackers.loggers:
            self.trackers._call(logger, "finish_run", self.live, out)
