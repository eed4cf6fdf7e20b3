"""What ``archbench run`` and ``worker`` print around the trials, from the study and the store.

Where a question's rounds stand (:func:`_round_line`), its comparisons once the run ends
(:func:`_print_question`), the devices the workers were placed on (:func:`_where`), the
configurations that did not finish (:func:`_report_unfinished`, which also gives the exit
code) and the command line that retries them (:func:`_retry_command`). Kept apart from
:mod:`archbench.cli.run`, which starts the workers, so that one reads as the run's steps and
this one as its reports.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from archbench.cli.exit_codes import INCOMPLETE, OK
from archbench.cli.run_args import _overrides


def _print_question(experiment: str, profile: str, storage: str) -> None:
    """The question's comparisons as the rounds decided them (what `archbench stats` shows
    first), so a run ends with its answer."""
    from archbench.analysis.data import load_experiment
    from archbench.analysis.questions import display, question_table

    table = question_table(load_experiment(storage, experiment, profile))
    if table.empty:
        return
    shown = display(table).drop(columns=["level", "p"])
    print("\nthe question (a - b; `archbench stats` for levels and p):", flush=True)
    print(shown.to_string(index=False), flush=True)


def _round_line(spec: Any, options: Any) -> str:
    """Where a question's rounds stand, from the store (``round 1: ...``)."""
    from archbench.runner.rounds import current_round, scored_seeds
    from archbench.runner.study import open_storage

    _, store = open_storage(spec, options)
    try:
        return current_round(spec, store).line(scored_seeds(spec, store))
    finally:
        store.close()


def _retry_command(args: argparse.Namespace) -> str:
    """The command line that reruns this one: every option that changes where or how it
    runs, shell-quoted (the storage redacted)."""
    from archbench.store.storage import redact

    words = ["archbench", args.command, args.spec]
    workers = getattr(args, "workers", 1)  # `worker` has no --workers
    for flag, value in (
        ("--profile", args.profile),
        ("--storage", redact(args.storage) if args.storage else None),
        ("--results-dir", args.results_dir),
        ("--device", None if args.device == "auto" else args.device),
        ("--heartbeat", None if args.heartbeat == 30 else args.heartbeat),
        ("--threads", args.threads),
        ("--db-grace", None if args.db_grace == 180 else args.db_grace),
        ("--workers", None if workers == 1 else workers),
        ("--gpus", getattr(args, "gpus", None)),
    ):
        if value is not None and value != "":
            words += [flag, str(value)]
    for target in getattr(args, "log", []) or []:
        words += ["--log", redact(target)]
    if getattr(args, "keep_weights", False):
        words.append("--keep-weights")
    if getattr(args, "fuse_seeds", False):
        words.append("--fuse-seeds")
    for override in _overrides(args):
        words += ["--set", override]
    return shlex.join(words)


def _where(placement: list[str]) -> str:
    """`` on cuda:0 (2), cuda:1 (2)``: the devices the workers were placed on, when CUDA."""
    if not any(d.startswith("cuda") for d in placement):
        return ""
    counts = {d: placement.count(d) for d in dict.fromkeys(placement)}
    return " on " + ", ".join(f"{d} ({n})" if n > 1 else d for d, n in counts.items())


def _report_unfinished(spec: Any, study: Any, retry: str) -> int:
    """One stderr line per configuration that did not finish, how to retry; the exit code."""
    from archbench.runner.outcome import unfinished

    left = unfinished(spec, study.get_trials(deepcopy=False))
    if not left:
        return OK
    print(f"archbench: {len(left)} configuration(s) did not finish:", file=sys.stderr)
    for item in left:
        print(f"  {item.line()}", file=sys.stderr)
    print(
        f"archbench: to retry them, run the same command again ({retry}): finished trials are "
        "kept, failed ones are re-queued and resume from their last checkpoint",
        file=sys.stderr,
        flush=True,
    )
    return INCOMPLETE
