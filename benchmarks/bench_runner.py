"""Runner overhead: bookkeeping time per trial relative to training, and N-worker throughput.

(1) Bookkeeping. A small, realistic grid study runs in this process (Fashion-MNIST subset
from /usr/share/datasets/fashion-mnist when installed, else synthetic 28x28 images; four
families solved to one parameter budget; 2 epochs; 2 seeds). ``archbench.training.train.train`` is
wrapped so the clock separates:

- training: time inside ``train()`` minus the time in its ``on_epoch_end`` callback and in
  checkpoint writes;
- callback: the runner's per-epoch work (store writes for the epoch and its diagnostics,
  ``trial.report``/``should_prune``);
- checkpoints: ``save_checkpoint`` (fault tolerance, written by the trainer each epoch);
- runner: everything else in the study's wall time (Optuna's trial creation and tell, the
  loop's progress checks, variant resolution and budget solving, complexity measurement,
  store writes for the variant and the run, environment info), without the one-off data load.

Bookkeeping = callback + runner; goal <= 2% of training. Both wall time and process CPU time
are shown (on a machine shared with other jobs, CPU time is the steadier of the two).

(2) Throughput. The same grid (more configurations, 1 epoch) run by ``archbench run
--workers 1`` and ``--workers 2`` as subprocesses (each with its own storage); trials per
minute from the study's first trial start to its last trial end (process start-up excluded),
and the end-to-end wall time. Threads per worker are archbench's default (1, a fixed
count) unless ``--threads`` is given; they are printed.

    python benchmarks/bench_runner.py                 # both parts
    python benchmarks/bench_runner.py --part overhead --images 4000
    python benchmarks/bench_runner.py --part workers --configs 8
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

FASHION = Path("/usr/share/datasets/fashion-mnist")
VARIANTS = [
    ("resnet", 8), ("plain", 8), ("preact", 8), ("wrn", 10), ("resnext", 11),
    ("resnet", 14), ("plain", 14), ("preact", 14), ("wrn", 16), ("resnet", 26),
    ("resnet", 20), ("plain", 20), ("preact", 20), ("wrn", 22),
]  # fmt: skip


def dataset_section(images: int) -> dict[str, Any]:
    if FASHION.is_dir():
        return {
            "name": "fashion_mnist",
            "root": str(FASHION),
            "val_size": 500,
            "train_subset": images,
            "test_subset": 1000,
        }
    return {
        "name": "synthetic",
        "val_size": 500,
        "options": {
            "num_train": images + 500,
            "num_test": 1000,
            "image_size": 28,
            "channels": 1,
        },
    }


def spec_data(
    name: str,
    storage: Path,
    *,
    images: int,
    configs: int,
    epochs: int,
    budget: str,
    seeds: int = 1,
) -> dict[str, Any]:
    if configs > len(VARIANTS):
        raise SystemExit(f"at most {len(VARIANTS)} configurations")
    variants = [{"family": fam, "depth": depth} for fam, depth in VARIANTS[:configs]]
    return {
        "name": name,
        "dataset": dataset_section(images),
        "recipe": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "schedule": "cosine"},
        "budget": {"target": budget, "tolerance": 0.1},
        "variants": variants,
        "seeds": list(range(seeds)),
        "storage": str(storage),
    }


# -- (1) bookkeeping --------------------------------------------------------------------------


def overhead(args: argparse.Namespace) -> None:
    import optuna
    import torch

    import archbench.training.train as train_mod
    from archbench.runner.objective import Objective
    from archbench.runner.spec import parse_spec
    from archbench.runner.study import RunnerOptions, prepare_study
    from archbench.runner.worker import run_worker

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads or 1)
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    spent = {f"{part}_{c}": 0.0 for part in ("train", "callback", "ckpt") for c in clocks}

    def now() -> dict[str, float]:
        return {c: f() for c, f in clocks.items()}

    def add(part: str, start: dict[str, float]) -> None:
        end = now()
        for c in clocks:
            spent[f"{part}_{c}"] += end[c] - start[c]

    real_train, real_save = train_mod.train, train_mod.save_checkpoint

    def timed_save(*a: Any, **k: Any) -> Any:
        start = now()
        try:
            return real_save(*a, **k)
        finally:
            add("ckpt", start)

    def timed_train(*a: Any, on_epoch_end: Any = None, **k: Any) -> Any:
        def callback(*cb: Any) -> Any:
            start = now()
            try:
                return on_epoch_end(*cb)
            finally:
                add("callback", start)

        start = now()
        try:
            return real_train(*a, on_epoch_end=callback if on_epoch_end else None, **k)
        finally:
            add("train", start)

    train_mod.train, train_mod.save_checkpoint = timed_train, timed_save
    with tempfile.TemporaryDirectory() as tmp:
        data = spec_data(
            "bench_overhead",
            Path(tmp) / "b.db",
            images=args.images,
            configs=args.configs,
            epochs=args.epochs,
            budget=args.budget,
            seeds=args.seeds,
        )
        spec = parse_spec(data)
        options = RunnerOptions(heartbeat_interval=30, progress=False, threads=1)
        prepare_study(spec, options)
        from archbench.runner.study import open_storage

        _storage, store = open_storage(spec, options)
        objective = Objective(spec, store, options)
        _ = objective.data  # the one-off data load, outside the clock
        # Warm-up: torch imports its compiler stack on the first optimizer (~2 s, once per
        # process); that is a process start-up cost, not a per-trial one.
        from archbench.models.net import build_net
        from archbench.runner.variants import resolve
        from archbench.training.recipe import Recipe, build_optimizer

        warm = resolve(spec.grid()[0], objective.shape, None)
        build_optimizer(build_net(warm.spec), Recipe())
        start = now()
        run_worker(spec, options, objective=objective)
        total = {c: v - start[c] for c, v in now().items()}
    train_mod.train, train_mod.save_checkpoint = real_train, real_save

    n = args.configs
    print(
        f"(1) bookkeeping: {n} trials x {args.seeds} seed(s) x {args.epochs} epochs, "
        f"{args.images} images "
        f"({data['dataset']['name']}), budget {args.budget} params, 1 thread"
    )
    print(f"{'':<34}{'wall s':>10}{'cpu s':>10}{'per trial ms (wall)':>22}")
    rows = {}
    for c in clocks:
        pure = spent[f"train_{c}"] - spent[f"callback_{c}"] - spent[f"ckpt_{c}"]
        rows[c] = {
            "training (inside train)": pure,
            "checkpoint writes (trainer)": spent[f"ckpt_{c}"],
            "per-epoch callback (runner)": spent[f"callback_{c}"],
            "rest of the runner": total[c] - spent[f"train_{c}"],
            "total": total[c],
        }
    for key in rows["wall"]:
        wall, cpu = rows["wall"][key], rows["cpu"][key]
        print(f"{key:<34}{wall:>10.3f}{cpu:>10.3f}{1000 * wall / n:>22.1f}")
    for c in clocks:
        book = rows[c]["per-epoch callback (runner)"] + rows[c]["rest of the runner"]
        ratio = book / rows[c]["training (inside train)"]
        with_ckpt = (book + rows[c]["checkpoint writes (trainer)"]) / rows[c][
            "training (inside train)"
        ]
        verdict = "OK" if ratio <= 0.02 else "ABOVE GOAL"
        print(
            f"bookkeeping / training ({c}): {ratio:.2%}  (goal <= 2%: {verdict}); "
            f"with checkpoint writes {with_ckpt:.2%}"
        )
    print()


# -- (2) throughput ---------------------------------------------------------------------------


def throughput(args: argparse.Namespace) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = {}
    # (workers, threads per worker); None: archbench's default. "1 x 1" shows how well two
    # workers scale over one with the same threads; "1 x default" is what a user gets.
    configs = [(1, args.threads), (1, 1), (2, args.threads)]
    if args.threads == 1:
        configs = [(1, 1), (2, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        for workers, threads in configs:
            db = Path(tmp) / f"w{workers}_{threads}.db"
            data = spec_data(
                "bench_workers",
                db,
                images=args.images,
                configs=args.workers_configs,
                epochs=1,
                budget=args.budget,
            )
            path = Path(tmp) / f"w{workers}_{threads}.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            cmd = [sys.executable, "-m", "archbench", "run", str(path), "--quiet"]
            cmd += ["--workers", str(workers)]
            if threads:
                cmd += ["--threads", str(threads)]
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(done.stdout + done.stderr)
            line = next(x for x in done.stdout.splitlines() if x.startswith("running"))
            used = line.split(" x ")[-1].split(" thread")[0]
            study = optuna.load_study(study_name="bench_workers:default", storage=f"sqlite:///{db}")
            trials = study.get_trials()
            first = min(t.datetime_start for t in trials)
            last = max(t.datetime_complete for t in trials)
            span = (last - first).total_seconds()
            results[(workers, threads)] = (len(trials) / span * 60, wall, used)
    print(
        f"(2) throughput: {args.workers_configs} trials x 1 seed x 1 epoch, {args.images} images, "
        "archbench run --workers N"
    )
    print(f"{'workers':>8}{'threads each':>14}{'trials/min':>12}{'wall s':>10}")
    for (workers, _), (rate, wall, used) in results.items():
        print(f"{workers:>8}{used:>14}{rate:>12.1f}{wall:>10.1f}")
    two = results[(2, args.threads)]
    for key, label in (((1, args.threads), "1 worker (default threads)"), ((1, 1), "1 x 1")):
        if key in results and key != (2, args.threads):
            one = results[key]
            print(
                f"2 workers / {label}: {two[0] / one[0]:.2f}x trials/min, "
                f"{one[1] / two[1]:.2f}x end to end"
            )
    print(f"(cores: {len(os.sched_getaffinity(0))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("overhead", "workers", "both"), default="both")
    parser.add_argument("--images", type=int, default=2000, help="training images")
    parser.add_argument("--configs", type=int, default=4, help="trials for the overhead part")
    parser.add_argument("--workers-configs", type=int, default=8, help="trials, workers part")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per trial, overhead part")
    parser.add_argument("--budget", default="70K", help="parameter budget of every variant")
    parser.add_argument("--threads", type=int, help="torch threads (default: archbench's)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.part in ("overhead", "both"):
            overhead(args)
        if args.part in ("workers", "both"):
            throughput(args)


if __name__ == "__main__":
    main()
