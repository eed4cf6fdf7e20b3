"""``archbench eval RUN``: re-evaluate a stored run from its kept weights (``--keep-weights``).

Prints the stored and the re-evaluated validation, test and top-5 errors side by side; exit
code 0 when they are identical, 1 when any differs, 2 for a user error. ``--json`` output
(``archbench.eval/1``)::

    {"schema", "run_id", "experiment", "profile", "label", "seed", "weights_path", "device",
     "stored": {"val_err", "test_err", "test_top5_err"}, "now": {...}, "matches": bool}
"""

from __future__ import annotations

import argparse

from archbench.cli.args import nonnegative_int
from archbench.cli.exit_codes import OK
from archbench.errors import ArchbenchError

DIFFERS = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="re-evaluate a stored run from its kept weights",
        description="Rebuild a run's net from the stored spec, load the weights it kept "
        "(run --keep-weights), evaluate it on the run's own validation and test splits and "
        "print the stored vs the re-evaluated errors.",
    )
    p.add_argument(
        "run",
        help="a run id (with --storage), or an experiment (spec file or name) with --label "
        "and --seed",
    )
    p.add_argument("--label", help="the variant's label in the experiment (e.g. resnet8)")
    p.add_argument("--seed", type=nonnegative_int, help="the run's seed")
    p.add_argument("--profile", help="the experiment's profile (when it has runs in several)")
    p.add_argument("--storage", help="database (default: the spec's storage)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda…")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from archbench.runner.preflight import check_device
    from archbench.runner.reeval import reevaluate

    check_device(args.device)
    if args.run.isdigit():
        if not args.storage:
            raise ArchbenchError(f"run {args.run}: give --storage (the database it is in)")
        if args.label is not None or args.seed is not None:
            raise ArchbenchError(
                "give a run id, or an experiment with --label and --seed, not both"
            )
        result = reevaluate(args.storage, run_id=int(args.run), device=args.device)
    else:
        from archbench.cli.results import _experiment_and_storage

        if args.label is None or args.seed is None:
            raise ArchbenchError(
                f"{args.run!r} is not a run id: give the experiment's --label and --seed too"
            )
        experiment, storage = _experiment_and_storage(args.run, args.storage, args.profile)
        result = reevaluate(
            storage,
            experiment=experiment,
            label=args.label,
            seed=args.seed,
            profile=args.profile,
            device=args.device,
        )
    if args.json:
        from archbench.cli.format import emit, to_json

        emit(to_json("archbench.eval/1", result.to_dict()))
        return OK if result.matches else DIFFERS
    print(
        f"run {result.run_id}: {result.experiment} ({result.profile}) {result.label} seed "
        f"{result.seed}, weights {result.weights_path}, on {result.device}"
    )
    print(f"{'metric':<14} {'stored':>10} {'re-evaluated':>13}")
    for key in ("val_err", "test_err", "test_top5_err"):
        print(f"{key:<14} {_pct(result.stored.get(key)):>10} {_pct(result.now.get(key)):>13}")
    diffs = result.differences()
    if not diffs:
        print("identical to the stored errors")
        return OK
    shown = ", ".join(f"{k} {100 * d:+.4f} points" for k, d in diffs.items())
    print(
        f"differs from the stored errors: {shown} (expected only on another machine, "
        "device or library version than the one that trained it)"
    )
    return DIFFERS


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
