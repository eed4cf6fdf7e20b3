"""Argument types and the parser class shared by every sub-command.

Each type turns a bad value into argparse's error, which :class:`Parser` prints as one line
(``archbench: error: argument --heartbeat: must be an integer >= 1, got '0'``) and exit 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from archbench.cli.exit_codes import BAD_INPUT


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, like every other user error."""

    def error(self, message: str) -> NoReturn:
        print(f"archbench: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        self.exit(BAD_INPUT)


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def number_in(low: float, high: float, *, closed: bool = False) -> Callable[[str], float]:
    """A finite float in (low, high), or [low, high] when ``closed``."""
    bounds = f"[{low:g}, {high:g}]" if closed else f"({low:g}, {high:g})"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = low <= value <= high if closed else low < value < high
        if not inside:
            raise argparse.ArgumentTypeError(f"must be a number in {bounds}, got {text!r}")
        return value

    parse.__name__ = f"number in {bounds}"
    return parse


def finite_float(low: float = -math.inf) -> Callable[[str], float]:
    """A finite float >= ``low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low:
            where = "" if low == -math.inf else f" >= {low:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number{where}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def log_arg(p: argparse.ArgumentParser) -> None:
    """``--log KIND:TARGET`` (repeatable): ``run``, ``worker``, ``validate`` and ``train``."""
    p.add_argument(
        "--log",
        dest="log",
        action="append",
        default=[],
        metavar="KIND:TARGET",
        help="log each run's config, per-epoch metrics and final results to an experiment "
        "tracker: tensorboard:DIR, mlflow:TRACKING_URI (e.g. mlflow:sqlite:///mlflow.db) or a "
        "plugin's kind (repeatable)",
    )
