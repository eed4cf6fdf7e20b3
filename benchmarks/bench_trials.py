"""Trials per hour on a degradation-style CPU workload, through the real runner, and where a
trial's time goes.

The workload (all parameterised): plain and ResNet at two depths (width 8) on a Fashion-MNIST
subset (``/usr/share/datasets/fashion-mnist``; synthetic 28x28 images where it is missing),
1-2 epochs, 2 seeds per trial, one grid trial per (family, depth). Each measurement runs the
study in a fresh child process exactly as ``archbench run`` does (spec -> ``prepare_study`` ->
``run_worker``: Optuna study, objective, results store in a SQLite file, checkpoints); the
one-off data load and torch's first-optimizer import happen before the clock starts.

Parts:

- ``rate``: trials/hour (trials / wall time of ``run_worker``), repeated; medians.
- ``profile``: one instrumented run; the exclusive wall time of each phase, per trial:
  data (the loader's batches), forward (net + loss), backward, optimizer (step, zero_grad),
  step other (lr schedule, running sums, finiteness checks), eval, diagnostics, checkpoints
  (write and the objective's read), store (results-store calls), train setup (rest of
  ``train()``: loaders, optimizer, RNG), model build, variant/complexity, Optuna calls from
  the objective, and the runner loop (everything else: Optuna's trial creation and tell,
  progress checks).
- ``workers``: ``archbench run --workers 2 --threads 1`` vs ``--workers 1 --threads 2`` as
  subprocesses; trials/hour from the study's first trial start to its last trial end, and
  end to end (process start-up and data loading included).

``--compare DIR`` runs every measurement also with ``PYTHONPATH=DIR`` (another checkout, e.g.
``git worktree add /tmp/before <commit>``), interleaved with this one (A B B A ...), and prints
this/other ratios. ``--compare .`` is the A/A control: ratios near 1 show the noise.

    python benchmarks/bench_trials.py                          # rate + profile
    python benchmarks/bench_trials.py --compare /tmp/h6-before --repeats 3
    python benchmarks/bench_trials.py --part workers --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

FASHION = Path("/usr/share/datasets/fashion-mnist")
HERE = Path(__file__).resolve().parent.parent  # this checkout

PHASES = (
    "data",
    "forward",
    "backward",
    "optimizer",
    "step other",
    "eval",
    "diagnostics",
    "checkpoints",
    "store",
    "train setup",
    "model build",
    "variant/complexity",
    "optuna (objective)",
    "runner loop",
)
TRAINING = ("data", "forward", "backward", "optimizer", "step other")


def spec_data(args: argparse.Namespace, storage: Path) -> dict[str, Any]:
    if FASHION.is_dir():
        dataset: dict[str, Any] = {
            "name": "fashion_mnist",
            "root": str(FASHION),
            "val_size": args.val,
            "train_subset": args.images,
            "test_subset": args.test,
        }
    else:
        dataset = {
            "name": "synthetic",
            "val_size": args.val,
            "options": {
                "num_train": args.images + args.val,
                "num_test": args.test,
                "image_size": 28,
                "channels": 1,
            },
        }
    return {
        "name": "bench_trials",
        "dataset": dataset,
        "recipe": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": 0.05,
            "schedule": "cosine",
            **dict(_override(kv) for kv in args.recipe),
        },
        "variants": [
            {"family": fam, "depth": depth, "width": args.width}
            for depth in args.depths
            for fam in ("plain", "resnet")
        ],
        "objectives": ["val_acc"],
        "sampler": {"name": "grid"},
        "pruner": {"name": "none"},
        "seeds": list(range(args.seeds)),
        "storage": str(storage),
    }


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


# -- in the child: one study run --------------------------------------------------------------


class Phases:
    """Exclusive wall time per phase: entering a phase pauses the one it interrupts."""

    def __init__(self) -> None:
        self.stack: list[str] = ["runner loop"]
        self.spent: dict[str, float] = defaultdict(float)
        self.t = time.perf_counter()

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        self.spent[self.stack[-1]] += now - self.t
        self.stack.append(name)
        self.t = now

    def exit(self) -> None:
        now = time.perf_counter()
        self.spent[self.stack.pop()] += now - self.t
        self.t = now

    def under(self, *names: str) -> bool:
        return not names or self.stack[-1] in names

    def wrap(self, owner: Any, attr: str, phase: str, *under: str) -> None:
        """Time ``owner.attr`` as ``phase`` (only when called directly under ``under``)."""
        real = getattr(owner, attr, None)
        if real is None:
            return
        phases = self

        def timed(*a: Any, **k: Any) -> Any:
            if not phases.under(*under):
                return real(*a, **k)
            phases.enter(phase)
            try:
                return real(*a, **k)
            finally:
                phases.exit()

        setattr(owner, attr, timed)


def instrument(phases: Phases) -> None:
    import optuna
    import torch

    import archbench.models.net as net_mod
    import archbench.runner.objective as objective_mod
    import archbench.store as store_mod
    import archbench.training.checkpoint as ckpt_mod
    import archbench.training.train as train_mod
    from archbench.data.loader import DeviceLoader

    w = phases.wrap
    w(train_mod, "train", "train setup")
    w(train_mod._Run, "_train_steps", "step other")
    w(net_mod.Net, "forward", "forward", "step other")
    w(torch.nn.CrossEntropyLoss, "forward", "forward", "step other")
    w(torch.Tensor, "backward", "backward", "step other")
    w(torch.optim.Optimizer, "zero_grad", "optimizer", "step other")
    active: list[bool] = []

    def pre(*_: Any) -> None:
        active.append(phases.under("step other"))
        if active[-1]:
            phases.enter("optimizer")

    def post(*_: Any) -> None:
        if active.pop():
            phases.exit()

    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    register_optimizer_step_pre_hook(pre)
    register_optimizer_step_post_hook(post)
    real_iter = DeviceLoader.__iter__

    def timed_iter(self: Any) -> Iterator[Any]:
        batches = real_iter(self)
        while True:
            timed = phases.under("step other")
            if timed:
                phases.enter("data")
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                if timed:
                    phases.exit()
            yield batch

    DeviceLoader.__iter__ = timed_iter  # type: ignore[method-assign]
    for name in ("_evaluate", "_evaluate_all"):
        w(train_mod._Run, name, "eval")
    w(train_mod._Run, "_diagnose", "diagnostics")
    for mod in (train_mod, ckpt_mod):
        w(mod, "save_checkpoint", "checkpoints")
        w(mod, "load_checkpoint", "checkpoints")
    for name in (
        "record_variant",
        "start_run",
        "run",
        "record_epoch",
        "record_epochs",
        "record_diagnostics",
        "finish_run",
    ):
        w(store_mod.ResultsStore, name, "store")
    w(net_mod, "build_net", "model build")
    for name in ("resolve", "complexity"):
        w(objective_mod.Objective, name, "variant/complexity")
    for name in ("report", "should_prune", "set_user_attr", "suggest_categorical"):
        w(optuna.trial.Trial, name, "optuna (objective)")


def child(args: argparse.Namespace) -> None:
    import warnings

    import optuna
    import torch

    from archbench.models.net import build_net
    from archbench.runner.objective import Objective
    from archbench.runner.spec import parse_spec
    from archbench.runner.study import RunnerOptions, open_storage, prepare_study
    from archbench.runner.variants import resolve
    from archbench.runner.worker import run_worker
    from archbench.training.recipe import Recipe, build_optimizer

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        spec = parse_spec(spec_data(args, Path(tmp) / "trials.db"))
        options = RunnerOptions(progress=False, threads=args.threads)
        prepare_study(spec, options)
        _storage, store = open_storage(spec, options)
        objective = Objective(spec, store, options)
        _ = objective.data  # the one-off data load, outside the clock
        warm = resolve(spec.grid()[0], objective.shape, None)
        build_optimizer(build_net(warm.spec), Recipe())  # torch's lazy imports, once a process
        phases = Phases()
        if args.child == "profile":
            instrument(phases)
        cpu = time.process_time()
        phases.t = start = time.perf_counter()
        run_worker(spec, options, objective=objective)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        phases.spent[phases.stack[-1]] += time.perf_counter() - phases.t
        store.close()
    out = {"trials": spec.n_trials(), "wall_s": wall, "cpu_s": cpu, "phases": phases.spent}
    print(json.dumps(out))


# -- in the parent ----------------------------------------------------------------------------


Setup = tuple[str, Path, tuple[str, ...]]  # label, checkout, recipe overrides


def run_child(args: argparse.Namespace, setup: Setup, mode: str) -> dict[str, Any]:
    _label, tree, recipe = setup
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    cmd += [f"--recipe={kv}" for kv in recipe]
    cmd += ["--images", str(args.images), "--epochs", str(args.epochs)]
    cmd += ["--seeds", str(args.seeds), "--width", str(args.width), "--threads", str(args.threads)]
    cmd += ["--batch-size", str(args.batch_size), "--val", str(args.val), "--test", str(args.test)]
    cmd += ["--depths", *map(str, args.depths)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def interleaved(setups: list[Setup], repeats: int, fn: Callable[[Setup], Any]) -> dict:
    """``fn(setup)`` for each setup, ``repeats`` times, in ABBA order (drifting load hits
    all alike)."""
    out: dict[Setup, list] = {s: [] for s in setups}
    for r in range(repeats):
        for setup in setups if r % 2 == 0 else setups[::-1]:
            out[setup].append(fn(setup))
    return out


def name(setup: Setup) -> str:
    return setup[0]


def trees_of(args: argparse.Namespace) -> list[Setup]:
    """This checkout, and the one to compare with: another checkout (``--compare``; ``.``
    for an A/A control) or this one with other recipe values (``--vs-recipe``)."""
    mine = tuple(args.recipe)
    label = "this" + (f" {' '.join(mine)}" if mine else "")
    setups: list[Setup] = [(label, HERE, mine)]
    if args.compare:
        other = Path(args.compare).resolve()
        setups.append(("A/A: this again" if other == HERE else str(other), other, mine))
    if args.vs_recipe:
        setups.append((f"this {' '.join(args.vs_recipe)}", HERE, (*mine, *args.vs_recipe)))
    return setups


def part_rate(args: argparse.Namespace) -> None:
    setups = trees_of(args)
    res = interleaved(setups, args.repeats, lambda t: run_child(args, t, "rate"))
    print(
        f"rate: trials/hour of wall time and per CPU-hour of the worker process ({args.repeats} "
        "run(s) each, interleaved; on a shared machine the CPU-time rate is the steadier)"
    )
    med: dict[Setup, tuple[float, float]] = {}
    for setup, runs in res.items():
        wall = [3600 * r["trials"] / r["wall_s"] for r in runs]
        cpu = [3600 * r["trials"] / r["cpu_s"] for r in runs]
        med[setup] = (statistics.median(wall), statistics.median(cpu))
        print(
            f"  {name(setup):<34} wall {med[setup][0]:7.1f} (runs "
            f"{', '.join(f'{v:.1f}' for v in wall)})   cpu {med[setup][1]:7.1f} (runs "
            f"{', '.join(f'{v:.1f}' for v in cpu)})"
        )
    base = setups[0]
    for other in setups[1:]:
        print(
            f"  ratio {name(base)} / {name(other)}: wall {med[base][0] / med[other][0]:.3f}, "
            f"cpu {med[base][1] / med[other][1]:.3f} (medians)"
        )
    print()


def part_profile(args: argparse.Namespace) -> None:
    trees = trees_of(args)
    res = {t: run_child(args, t, "profile") for t in trees}
    n = next(iter(res.values()))["trials"]
    print(f"profile: exclusive wall time per trial ({args.seeds} seed(s) x {args.epochs} epochs)")
    header = "".join(f"{name(t)[-22:]:>24}" for t in trees)
    print(f"  {'phase':<20}{header}")
    for phase in (*PHASES, "total", "training share"):
        cells = []
        for t in trees:
            spent = res[t]["phases"]
            total = sum(spent.values())
            if phase == "total":
                value = f"{1000 * total / n:.0f} ms"
            elif phase == "training share":
                value = f"{sum(spent.get(p, 0.0) for p in TRAINING) / total:.1%}"
            else:
                s = spent.get(phase, 0.0)
                value = f"{1000 * s / n:.0f} ms {s / total:6.1%}"
            cells.append(f"{value:>24}")
        print(f"  {phase:<20}{''.join(cells)}")
    print()


def part_workers(args: argparse.Namespace) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    setups = [(2, 1), (1, 2)]
    with tempfile.TemporaryDirectory() as tmp:

        def one(setup: tuple[int, int]) -> tuple[float, float]:
            workers, threads = setup
            db = Path(tmp) / f"w{workers}t{threads}_{time.monotonic_ns()}.db"
            path = db.with_suffix(".yaml")
            path.write_text(yaml.safe_dump(spec_data(args, db), sort_keys=False))
            cmd = [sys.executable, "-m", "archbench", "run", str(path), "--quiet"]
            cmd += ["--workers", str(workers), "--threads", str(threads)]
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            env["PYTHONPATH"] = str(HERE)
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(done.stdout + done.stderr)
            study = optuna.load_study(study_name="bench_trials:default", storage=f"sqlite:///{db}")
            trials = study.get_trials()
            span = (
                max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
            ).total_seconds()
            return 3600 * len(trials) / span, 3600 * len(trials) / wall

        res: dict[tuple[int, int], list[tuple[float, float]]] = {s: [] for s in setups}
        for r in range(args.repeats):
            for s in setups if r % 2 == 0 else setups[::-1]:
                res[s].append(one(s))
    print(f"workers: archbench run, trials/hour ({args.repeats} run(s) each, interleaved)")
    med: dict[tuple[int, int], tuple[float, float]] = {}
    for (workers, threads), values in res.items():
        span = statistics.median(v[0] for v in values)
        e2e = statistics.median(v[1] for v in values)
        med[(workers, threads)] = (span, e2e)
        print(
            f"  --workers {workers} --threads {threads}: {span:8.1f} (trials' span)  "
            f"{e2e:8.1f} (end to end, start-up included)"
        )
    (a_span, a_e2e), (b_span, b_e2e) = med[(2, 1)], med[(1, 2)]
    print(
        f"  ratio 2x1 / 1x2: {a_span / b_span:.3f} (span), {a_e2e / b_e2e:.3f} (end to end); "
        f"cores {len(os.sched_getaffinity(0))}"
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("rate", "profile", "workers", "all"), default=None)
    parser.add_argument("--images", type=int, default=3000, help="training images")
    parser.add_argument("--val", type=int, default=500, help="validation images")
    parser.add_argument("--test", type=int, default=1000, help="test images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--depths", type=int, nargs=2, default=[8, 20])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (rate, profile)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare", help="another checkout to measure beside this one")
    parser.add_argument(
        "--recipe", action="append", default=[], metavar="KEY=VALUE", help="recipe override"
    )
    parser.add_argument(
        "--vs-recipe",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="measure this checkout with these recipe overrides beside it",
    )
    parser.add_argument("--child", choices=("rate", "profile"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    n = 2 * len(args.depths)
    print(
        f"workload: plain/resnet depths {args.depths} width {args.width}, {n} trials x "
        f"{args.seeds} seed(s) x {args.epochs} epoch(s), {args.images} train / {args.val} val "
        f"/ {args.test} test images ({'fashion_mnist' if FASHION.is_dir() else 'synthetic'}), "
        f"batch {args.batch_size}, {args.threads} thread(s)\n"
    )
    parts = {"rate": part_rate, "profile": part_profile, "workers": part_workers}
    chosen = ["rate", "profile"] if args.part is None else [args.part]
    for part in parts if args.part == "all" else chosen:
        parts[part](args)


if __name__ == "__main__":
    main()
