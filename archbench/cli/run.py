"""``archbench validate | run | worker``: experiments on Optuna.

``--json`` output (a ``"schema"`` key first; keys are only added within a version):

``archbench.validate/1``::

    {"schema", "spec", "valid": true, "experiment", "profile", "trials", "seeds", "storage"}

``archbench.dry_run/1`` (``run --dry-run --json``)::

    {"schema", "variants": [{"variant", "family", "depth", "width", "params", "macs",
      "budget_error"}]}
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import multiprocessing
import sys
import time
from typing import Any

from archbench.cli.exit_codes import INCOMPLETE, OK
from archbench.cli.results import print_results
from archbench.cli.run_args import (
    _options,
    _overrides,
    _runner_args,
    _spec_args,
    _workers_arg,
)
from archbench.cli.run_report import (
    _print_question,
    _report_unfinished,
    _retry_command,
    _round_line,
    _where,
)
from archbench.errors import ArchbenchError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check an experiment spec; run nothing, write nothing",
        description="Every check `run` makes before its first trial (spec, device, storage, "
        "data, memory), with the same messages; takes run's options.",
    )
    _spec_args(p)
    _runner_args(p)
    _workers_arg(p)
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run an experiment spec (an Optuna study) to completion")
    _spec_args(p)
    _runner_args(p)
    _workers_arg(p)
    p.add_argument(
        "--dry-run", action="store_true", help="list the variants with params/MACs and stop"
    )
    p.add_argument("--json", action="store_true", help="print the variants (dry run) as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="join an experiment's study (e.g. from another machine)")
    _spec_args(p)
    _runner_args(p)
    p.set_defaults(func=cmd_worker)


# -- validate / dry run -----------------------------------------------------------------------


def _checked(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(spec, options, preflight): the spec loaded and every pre-trial check passed.

    ``validate``, ``run`` and ``worker`` all come through here, so they reject the same
    things with the same messages, before anything is written.
    """
    from archbench.runner.identity import coinciding, grid_entries
    from archbench.runner.preflight import preflight
    from archbench.runner.study import check_stored_study
    from archbench.runner.variants import load_checked

    spec = load_checked(args.spec, args.profile, overrides=_overrides(args))
    options = _options(args)
    placement = _placement(args)
    checked = preflight(spec, options, where=args.spec, placement=placement)
    # What the stored study would refuse (another dataset, recipe, budget), said here too.
    check_stored_study(spec, options)
    if spec.sampler.name == "grid":
        notes: tuple[str, ...] = ()
        if spec.question is not None:  # labels of a search space's grid: known only now
            from archbench.runner.question import question_pairs, undecidable_note

            pairs = question_pairs(spec.question, {e.key: e.label for e in grid_entries(spec)})
            undecidable = undecidable_note(spec.question, len(pairs))
            notes = (undecidable,) if undecidable else ()
        same = tuple(coinciding(grid_entries(spec)))
        checked = dataclasses.replace(checked, notes=(*checked.notes, *notes, *same))
    return spec, options, checked


def _trials(spec: Any) -> int:
    """Trials the spec asks for: a grid's distinct configurations (entries that build one
    net under one recipe are one trial)."""
    from archbench.runner.identity import grid_entries

    return len(grid_entries(spec)) if spec.sampler.name == "grid" else spec.n_trials()


def _placement(args: argparse.Namespace) -> list[str] | None:
    """The device of each local worker (``run``/``validate``), ``None`` for ``worker``."""
    from archbench.errors import SpecError
    from archbench.training.device import parse_gpus, place_workers

    if not hasattr(args, "workers"):
        return None
    try:
        return place_workers(args.workers, args.device, parse_gpus(args.gpus))
    except SpecError as exc:
        raise SpecError(f"{args.spec}: {exc}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    from archbench.runner.preflight import human_bytes
    from archbench.store.storage import redact

    spec, options, checked = _checked(args)
    memory = ""
    if checked.largest is not None:
        memory = (
            f"; largest variant needs {human_bytes(checked.largest.total)} of "
            f"{human_bytes(checked.memory_limit)} on {checked.device}"
        )
    if args.json:
        from archbench.cli.format import emit, to_json

        payload = {
            "spec": args.spec,
            "valid": True,  # an invalid spec is an error: one line on stderr, exit code 2
            "experiment": spec.name,
            "profile": spec.profile,
            "trials": _trials(spec),
            "seeds": list(spec.seeds),
            "storage": redact(options.storage or spec.storage),
        }
        emit(to_json("archbench.validate/1", payload))
        for note in checked.notes:
            print(f"archbench: note: {note}", file=sys.stderr)
        return OK
    overrides = _overrides(args)
    note = f"; overrides: {', '.join(overrides)}" if overrides else ""
    seeds = f"{len(spec.seeds)} seed(s)"
    if spec.question is not None:
        q = spec.question
        seeds = f"{q.min_seeds}-{q.max_seeds} seeds in rounds of {q.per_round}"
    print(
        f"{args.spec}: valid (experiment {spec.name!r}, profile {spec.profile!r}, "
        f"{_trials(spec)} trial(s) x {seeds}, storage "
        f"{redact(options.storage or spec.storage)}; data {checked.data_summary}{memory}{note})"
    )
    for note in checked.notes:
        print(f"archbench: note: {note}", file=sys.stderr)
    return OK


def _dry_run(spec: Any, as_json: bool) -> int:
    import json

    from archbench.models.complexity import analytic_counts
    from archbench.runner.variants import dataset_shape, resolve_all

    rows = []
    for variant in resolve_all(spec, dataset_shape(spec)):
        params, macs = analytic_counts(variant.spec)
        match = variant.budget
        rows.append(
            {
                "variant": variant.label,
                "family": variant.family or "",
                "depth": variant.depth or "",
                "width": match.width if match else variant.config.get("width") or "",
                "params": params,
                "macs": macs,
                "budget_error": None if match is None else match.rel_error,
            }
        )
    if as_json:
        print(json.dumps({"schema": "archbench.dry_run/1", "variants": rows}, indent=2))
        return 0
    print(
        f"experiment {spec.name!r}, profile {spec.profile!r}: {spec.n_trials()} trial(s), "
        f"seeds {list(spec.seeds)}, {spec.recipe.epochs} epoch(s) on {spec.dataset.name}"
    )
    if spec.budget:
        print(
            f"budget: {spec.budget.metric} {spec.budget.target} "
            f"(tolerance {spec.budget.tolerance:.0%})"
        )
    for row in rows:
        err = row["budget_error"]
        row["budget_error"] = "" if err is None else f"{err:+.2%}"
        row["params"] = f"{row['params']:,}"
        row["macs"] = f"{row['macs'] / 1e6:,.1f}M"
    from archbench.cli.format import rows_table

    print(rows_table(rows))
    return 0


# -- run / worker -----------------------------------------------------------------------------


def _quiet_optuna() -> None:
    import warnings

    import optuna

    # Our own progress lines say what runs; Optuna's per-trial INFO lines and its
    # "experimental feature" notes (heartbeats) would drown them.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optimize_log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _UserErrorFilter) for f in optimize_log.filters):
        optimize_log.addFilter(_UserErrorFilter())


class _UserErrorFilter(logging.Filter):
    """Drop Optuna's "Trial N failed" warnings (with a traceback) when the cause is a user
    error: our own line already says which trial failed and why. Bugs keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ArchbenchError | KeyboardInterrupt):
            return False  # Ctrl-C: "archbench: interrupted" says it, not 70 lines of Optuna's
        if exc is not None:
            from archbench.cli import _disk_full

            if _disk_full(exc) is not None:  # the CLI's one line says it
                return False
        # Its follow-up "Trial N failed with value None." says nothing our line does not.
        return not (exc is None and "failed with value None" in record.getMessage())


def _worker_main(
    spec_path: str,
    profile: str | None,
    options: Any,
    workers: int,
    overrides: tuple[str, ...] = (),
) -> None:
    """Entry point of a worker process (spawned: must be importable and picklable)."""
    from archbench.runner.variants import load_checked
    from archbench.runner.worker import run_worker, set_worker_threads

    _quiet_optuna()
    set_worker_threads(options.threads)
    # run checked the budgets
    spec = load_checked(spec_path, profile, budgets=False, overrides=overrides)
    try:
        run_worker(spec, options, on_event=lambda message: print(message, flush=True))
    except Exception as exc:
        from archbench.store.reconnect import unavailable

        lost = unavailable(exc)  # Optuna may raise another error while handling it
        if lost is None:
            raise
        raise lost from None


def _spawned_worker_main(
    spec_path: str,
    profile: str | None,
    options: Any,
    workers: int,
    overrides: tuple[str, ...] = (),
) -> None:
    """Entry point of a worker process of ``run --workers N``: it stops with its parent."""
    from archbench.runner.lifeline import exit_with_parent

    exit_with_parent()
    try:
        _worker_main(spec_path, profile, options, workers, overrides)
    except KeyboardInterrupt:
        print("worker interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except ArchbenchError as exc:
        from archbench.store.reconnect import DatabaseUnavailableError

        if not isinstance(exc, DatabaseUnavailableError):
            raise
        print(f"archbench: worker stopped: {exc}", file=sys.stderr, flush=True)
        sys.exit(INCOMPLETE)


def cmd_run(args: argparse.Namespace) -> int:
    from archbench.runner.study import prepare_study
    from archbench.runner.variants import load_checked
    from archbench.runner.worker import study_progress, worker_threads
    from archbench.store.storage import redact

    if args.dry_run:
        return _dry_run(
            load_checked(args.spec, args.profile, overrides=_overrides(args)), args.json
        )
    spec, options, checked = _checked(args)
    _open_trackers(options)
    placement = _placement(args) or [options.device]
    options = _replace(options, threads=worker_threads(options.threads))
    if args.workers > 1:
        options = _replace(options, progress=False)  # N bars on one terminal are unreadable
    storage = options.storage or spec.storage
    for note in checked.notes:
        print(f"archbench: note: {note}", file=sys.stderr, flush=True)
    _quiet_optuna()
    start = time.perf_counter()
    study, requeued = prepare_study(spec, options)
    progress = study_progress(spec, study.get_trials(deepcopy=False))
    if progress.complete:
        if spec.question is not None:
            print(_round_line(spec, options), flush=True)
        print(
            f"{spec.name!r} (profile {spec.profile!r}) is already complete: "
            f"{progress.done}/{progress.total} trial(s) done in {redact(storage)}; nothing to train\n",
            flush=True,
        )
        return print_results(spec.name, spec.profile, storage, runs=False)
    resumed = f", {progress.done} already done" if progress.done else ""
    if requeued:
        resumed += f", {requeued} interrupted trial(s) re-queued"
    seeds = f"{len(spec.seeds)} seed(s)"
    if spec.question is not None:
        q = spec.question
        seeds = f"{q.min_seeds}-{q.max_seeds} seeds in rounds of {q.per_round}"
    print(
        f"running {spec.name!r} (profile {spec.profile!r}): {progress.total} trial(s) x "
        f"{seeds}, {args.workers} worker(s) x {options.threads} thread(s)"
        f"{_where(placement)}{resumed}",
        flush=True,
    )
    if spec.question is not None:
        print(_round_line(spec, options), flush=True)
    crashed: list[int | None] = []
    if args.workers == 1:
        _worker_main(
            args.spec, args.profile, _replace(options, device=placement[0]), 1, _overrides(args)
        )
    else:
        ctx = multiprocessing.get_context("spawn")
        # Numbered 0..N-1: each samples with its own seed (worker 0 with the spec's).
        procs = [
            ctx.Process(
                target=_spawned_worker_main,
                args=(
                    args.spec,
                    args.profile,
                    _replace(options, worker=i, device=placement[i]),
                    args.workers,
                    _overrides(args),
                ),
            )
            for i in range(args.workers)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        crashed = [p.exitcode for p in procs if p.exitcode != 0]
        if crashed:
            print(
                f"archbench: {len(crashed)} worker process(es) failed (exit codes {crashed})",
                file=sys.stderr,
                flush=True,
            )
    progress = study_progress(spec, study.get_trials(deepcopy=False))
    print(
        f"done in {time.perf_counter() - start:.1f} s: {progress.done}/{progress.total} "
        "trial(s) finished",
        flush=True,
    )
    print(flush=True)
    # Nothing recorded (every trial failed before its first run) is said below.
    with contextlib.suppress(ArchbenchError):
        print_results(spec.name, spec.profile, storage, runs=False)
        if spec.question is not None:
            _print_question(spec.name, spec.profile, storage)
    code = _report_unfinished(spec, study, _retry_command(args))
    if crashed and code == OK:
        # The study may have its trials (the other workers finished them), but a worker that
        # died of an error is not a clean run: its traceback is above.
        print(
            "archbench: the run is not clean: a worker process ended with an error (above); "
            f"rerun with: {_retry_command(args)}",
            file=sys.stderr,
            flush=True,
        )
        return INCOMPLETE
    return code


def cmd_worker(args: argparse.Namespace) -> int:
    from archbench.runner.study import prepare_study

    spec, options, checked = _checked(args)
    _open_trackers(options)
    for note in checked.notes:
        print(f"archbench: note: {note}", file=sys.stderr, flush=True)
    _quiet_optuna()
    # The first process on a study sets it up (baselines); later ones just join. Under the
    # setup lock: workers started together would all see no study and all queue it.
    import optuna

    from archbench.runner.study import open_storage, study_setup

    with study_setup(spec, options):
        storage, store = open_storage(spec, options)
        store.close()
        if spec.study_name not in optuna.get_all_study_names(storage):
            prepare_study(spec, options)
    from archbench.runner.study import WORKER_ID

    # A joining worker samples apart from `run`'s worker 0 (and from other joiners).
    _worker_main(args.spec, args.profile, _replace(options, worker=WORKER_ID), 1, _overrides(args))
    study = optuna.load_study(study_name=spec.study_name, storage=storage)
    return _report_unfinished(spec, study, _retry_command(args))


def _open_trackers(options: Any) -> None:
    """Connect every --log tracker once before the first trial: a target that cannot be
    used (a server down, a refused store) stops here with one line, not in every run."""
    if options.loggers:
        from archbench.tracking import Trackers

        Trackers.from_targets(options.loggers).close()


def _replace(options: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(options, **changes)
