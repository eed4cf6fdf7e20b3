"""The ``archbench`` command: parses arguments and calls the library; nothing else.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func``. User errors (:class:`~archbench.errors.ArchbenchError`, bad
arguments) become one readable line on stderr and exit code 2, with no traceback; the codes
are in :mod:`archbench.cli.exit_codes`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from archbench import __version__
from archbench.cli.args import Parser
from archbench.cli.exit_codes import BAD_INPUT, INCOMPLETE, INTERRUPTED, OK
from archbench.errors import ArchbenchError

COMMAND_MODULES = [
    "catalog",  # blocks, families, models, describe, match
    "train",  # train one net
    "run",  # validate, run, worker
    "results",  # results, export
    "analysis",  # plot, report, stats
    "evaluate",  # eval: a stored run's kept weights evaluated again
    "schema",  # the spec's JSON Schema
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="archbench",
        description="Benchmark residual-network architecture variants under equal budgets.",
    )
    parser.add_argument("--version", action="version", version=f"archbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"archbench.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return code
    except BrokenPipeError:
        # Output piped into e.g. `head` that closed early: not an error. Point stdout at
        # devnull so Python's flush at exit does not complain again. (Before the broad
        # `except Exception` below, which would re-raise it.)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except ArchbenchError as exc:
        print(f"archbench: error: {_one_line(str(exc))}", file=sys.stderr)
        from archbench.store.reconnect import DatabaseUnavailableError

        # The database went away mid-run: not bad input, an unfinished run (rerun it).
        return INCOMPLETE if isinstance(exc, DatabaseUnavailableError) else BAD_INPUT
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        # A path the user named that cannot be written or read as asked.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"archbench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return BAD_INPUT
    except Exception as exc:
        full = _disk_full(exc)
        if full is not None:  # the machine's, not the input's: nothing recorded is lost
            print(f"archbench: error: {full}; free some space and rerun", file=sys.stderr)
            return INCOMPLETE
        if isinstance(exc, OSError) and exc.errno == errno.EROFS:
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"archbench: error: {where}{exc.strerror}", file=sys.stderr)
            return BAD_INPUT
        # A database that cannot be opened or read (not SQLite, server down, wrong password)
        # is the user's to fix: one line, password redacted, no traceback.
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(exc, SQLAlchemyError):
            raise
        from archbench.store.storage import redact

        detail = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()[0]
        print(f"archbench: error: database: {type(exc).__name__}: {detail}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("archbench: interrupted", file=sys.stderr)
        return INTERRUPTED


def _disk_full(exc: BaseException) -> str | None:
    """One line if ``exc``, or an error it was raised from (Optuna's "exceeding max length"
    wraps SQLite's "database or disk is full"), is a full disk."""
    from archbench.runner.resources import disk_full_message

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        message = disk_full_message(cause)
        if message is not None:
            return message
        cause = cause.__cause__ or cause.__context__
    return None


def _one_line(message: str) -> str:
    """Messages that quote a value with newlines (a YAML excerpt) still make one line."""
    return " ".join(message.split())
