"""The options of ``archbench validate | run | worker``, and the runner options they make.

:mod:`archbench.cli.run` registers the three commands; the arguments they share (the spec,
its profile and ``--set``/``--dataset`` overrides; the runner's storage, device, threads,
trackers; the local workers and their GPUs) are declared here, with :func:`_overrides` and
:func:`_options`, which turn the parsed arguments into spec overrides and a
:class:`~archbench.runner.study.RunnerOptions`. Kept apart so the command module holds what
the commands do, this one what they accept.
"""

from __future__ import annotations

import argparse
from typing import Any

from archbench.cli.args import log_arg, positive_int


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="experiment spec (YAML), e.g. experiments/quickstart.yaml")
    p.add_argument("--profile", help="named profile of the spec (default: its default_profile)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key after the profile is merged, e.g. --set recipe.epochs=3 "
        "(dotted key path, YAML value; repeatable)",
    )
    p.add_argument(
        "--dataset", help="shorthand for --set dataset.name=NAME (e.g. cifar10, fashion_mnist)"
    )


def _overrides(args: argparse.Namespace) -> tuple[str, ...]:
    """--dataset first, so an explicit --set dataset.name=... wins."""
    from archbench.runner.overrides import dataset_override

    extra = [dataset_override(args.dataset)] if getattr(args, "dataset", None) else []
    return tuple(extra + list(getattr(args, "overrides", []) or []))


def _workers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="local worker processes (default 1); on a CPU, N workers x 1 thread run small "
        "trials faster than 1 x N threads (benchmarks/README.md); with CUDA, worker k trains "
        "on GPU k mod G (several workers may share one)",
    )
    p.add_argument(
        "--gpus",
        help="CUDA device indices the workers are spread over, e.g. 0,3 (default: all "
        "visible ones; needs --device auto or cuda)",
    )


def _runner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        help="where to store: a SQLite file, sqlite:///…, journal:file.log or postgresql://…",
    )
    p.add_argument("--results-dir", help="checkpoints directory (default: beside the database)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda…")
    p.add_argument(
        "--heartbeat",
        type=positive_int,
        default=30,
        help="seconds between a trial's heartbeats (default 30)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        help="torch CPU threads per worker (default 1: a fixed count, so results do not depend "
        "on the machine's load; recorded with each run)",
    )
    p.add_argument(
        "--fuse-seeds",
        action="store_true",
        help="train each configuration's seeds together as one vectorised model (torch.func "
        "vmap; per-seed results equal unfused ones within float tolerance; faster on GPUs, "
        "not on CPUs: benchmarks/README.md); recorded with each run",
    )
    p.add_argument(
        "--db-grace",
        type=positive_int,
        default=180,
        metavar="SECONDS",
        help="how long workers ride out a database outage or restart, retrying with backoff "
        "and holding their epochs, before they stop with exit code 3 (default 180)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    log_arg(p)
    p.add_argument(
        "--keep-weights",
        action="store_true",
        help="keep each completed run's final weights (RESULTS_DIR/weights/...; the path is "
        "stored with the run; `archbench eval RUN` re-evaluates them)",
    )


def _options(args: argparse.Namespace) -> Any:
    from archbench.runner.study import RunnerOptions

    return RunnerOptions(
        storage=args.storage,
        results_dir=args.results_dir,
        device=args.device,
        heartbeat_interval=args.heartbeat,
        grace_period=max(3 * args.heartbeat, 3),
        progress=False if args.quiet else None,
        threads=args.threads,
        loggers=tuple(args.log),
        keep_weights=args.keep_weights,
        fuse_seeds=args.fuse_seeds,
        db_grace=args.db_grace,
    )
