"""A small results store for the analysis tests, written through the real ResultsStore API.

THE NUMBERS ARE SYNTHETIC. The architectures, parameter and MAC counts are real (archbench
NetSpecs counted by the analytic counter, budget widths solved by archbench.models.budget); the
errors, curves and diagnostics are invented by a simple generative model with the shapes the
classic papers report (plain nets degrade with depth, residual nets do not, pre-activation
helps at depth, gradients vanish towards the input of deep plain nets), so that every plot
and statistic has something realistic to show. Nothing here is a measurement.

Three experiments:

- ``fixture_sweep`` (profile ``cpu``): plain / resnet / preact x depths 8, 20, 32, 56 x
  widths 8, 16, 32, 3 seeds, 6 epochs, diagnostics at epochs 0 and 6, and a multi-objective
  Optuna study (validation accuracy, params) with the runner's params and attributes.
- ``fixture_budget`` (profile ``default``): six families solved to 75K parameters, 10 seeds,
  epochs but no diagnostics, a single-objective grid study with the spec YAML.
- ``fixture_thin``: two variants, one seed, no epochs, no study (everything must skip).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

SWEEP = "fixture_sweep"
BUDGET = "fixture_budget"
THIN = "fixture_thin"
SHAPE = {"num_classes": 10, "in_channels": 1, "input_size": 28}
SWEEP_FAMILIES = ("plain", "resnet", "preact")
SWEEP_DEPTHS = (8, 20, 32, 56)
SWEEP_WIDTHS = (8, 16, 32)
SWEEP_SEEDS = (0, 1, 2)
SWEEP_EPOCHS = 6
BUDGET_VARIANTS = (
    ("plain", 14),
    ("resnet", 14),
    ("preact", 14),
    ("wrn", 10),
    ("resnext", 11),
    ("inception_resnet", 8),
)
BUDGET_TARGET = 75_000
BUDGET_SEEDS = tuple(range(10))  # 10: Holm over the 15 pairs of 6 exact sign-flip tests can resolve
BUDGET_EPOCHS = 4
#: Synthetic "true" final test error of each budget family (the generative model's truth).
BUDGET_TRUTH = {
    "plain": 0.118,
    "resnet": 0.105,
    "preact": 0.103,
    "wrn": 0.101,
    "resnext": 0.104,
    "inception_resnet": 0.112,
}

SWEEP_SPEC = """\
name: fixture_sweep
description: SYNTHETIC fixture - depth x width sweep of plain, resnet and preact
dataset: {name: fashion_mnist}
recipe: {epochs: 6, batch_size: 64, lr: 0.05, schedule: cosine}
space:
  families: [plain, resnet, preact]
objectives: [val_acc, params]
sampler: {name: nsga2, seed: 0}
seeds: [0, 1, 2]
"""

BUDGET_SPEC = """\
name: fixture_budget
description: SYNTHETIC fixture - equal-parameter comparison
dataset: {name: fashion_mnist}
recipe: {epochs: 4, batch_size: 64, lr: 0.05, schedule: cosine}
budget: {metric: params, target: 75K, tolerance: 0.10}
variants:
  - {family: plain, depth: 14}
  - {family: resnet, depth: 14}
objectives: [val_acc]
sampler: {name: grid}
seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
"""


def _recipe(epochs: int) -> dict[str, Any]:
    from archbench.training.recipe import Recipe

    return Recipe(epochs=epochs, batch_size=64, lr=0.05, schedule="cosine").to_dict()


def _record(store: Any, spec: Any, family: str, depth: int, width: int) -> str:
    from archbench.models.complexity import analytic

    counts = analytic(spec)
    return store.record_variant(
        spec,
        family=family,
        complexity={"params": counts.params, "macs": counts.macs, "acts": counts.acts},
        depth=depth,
        width=width,
    )


def _sweep_truth(family: str, depth: int, width: int) -> tuple[float, float]:
    """(final test error, final train error) of the synthetic model, before seed noise."""
    depth_gain = 0.022 * math.log2(depth / 8)
    width_gain = 0.018 * math.log2(width / 8)
    if family == "plain":  # degrades beyond ~20 layers: training error rises too
        test = 0.16 - 0.022 * math.log2(min(depth, 20) / 8) - width_gain
        test += 0.045 * max(0.0, math.log2(depth / 20))
        return test, test - 0.012
    test = 0.16 - depth_gain - width_gain
    if family == "preact":
        test -= 0.005 * math.log2(depth / 8)
    return test, test - 0.035


def _curve(final: float, epoch: int, epochs: int, slow: float) -> float:
    return final + (0.85 - final) * math.exp(-3.0 * slow * epoch / epochs)


def _write_run(
    store: Any,
    rng: np.random.Generator,
    *,
    experiment: str,
    profile: str,
    spec_hash: str,
    seed: int,
    trial: int,
    study: str | None,
    hp: dict[str, Any],
    epochs: int,
    test: float,
    train: float,
    slow: float,
    with_epochs: bool = True,
    budget: dict[str, Any] | None = None,
    before_finish: Any = None,
) -> tuple[int, float]:
    """One completed run; returns its run_id and final validation error. ``before_finish``
    (called with the run_id) writes more rows while the run is open: a finished run is never
    changed (fenced writes)."""
    run_id = store.start_run(
        experiment=experiment,
        profile=profile,
        spec_hash=spec_hash,
        seed=seed,
        study_name=study,
        trial_number=trial,
        hyperparameters=hp,
        recipe=_recipe(epochs),
        device="synthetic",
        env={"note": "SYNTHETIC fixture, not a measurement"},
        budget=budget,
    )
    last: dict[str, float] = {}
    for epoch in range(1, epochs + 1) if with_epochs else ():
        tr = _curve(train, epoch, epochs, slow) + rng.normal(0, 0.002)
        te = _curve(test, epoch, epochs, slow) + rng.normal(0, 0.002)
        va = te + rng.normal(0, 0.003)
        last = {"train_err": tr, "test_err": te, "val_err": va}
        store.record_epoch(
            run_id,
            {
                "epoch": epoch,
                "lr": 0.05 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)),
                "train_loss": 2.3 * tr,
                "val_loss": 2.3 * va,
                "test_loss": 2.3 * te,
                "epoch_time_s": 1.0,
                "images_per_s": 4000.0,
                **last,
            },
        )
    if not last:
        va = test + rng.normal(0, 0.003)
        last = {"train_err": train, "test_err": test, "val_err": va}
    if before_finish is not None:
        before_finish(run_id)
    store.finish_run(
        run_id,
        status="completed",
        final={**last, "epochs_done": epochs, "train_loss": 2.3 * last["train_err"]},
        wall_time_s=epochs * 1.0,
    )
    return run_id, float(last["val_err"])


def _diagnostics(family: str, n_blocks: int, epoch: int, rng: np.random.Generator) -> list:
    rows = []
    for i in range(n_blocks):
        if family == "plain":  # vanishing towards the input, worse when deeper
            grad = 0.6 * 0.82 ** (n_blocks - 1 - i)
            ratio = None
        else:
            grad = 0.6 * (0.9 if family == "resnet" else 1.0)
            ratio = 1.1 / math.sqrt(n_blocks) * (1.3 if epoch else 1.0)
        grad *= (0.35 if epoch else 1.0) * math.exp(rng.normal(0, 0.08))
        if ratio is not None:
            ratio *= math.exp(rng.normal(0, 0.05))
        stage = min(2, 3 * i // n_blocks)
        rows.append(
            {
                "epoch": epoch,
                "block": f"stages.{stage}.{i}",
                "index": i,
                "grad_norm": grad,
                "branch_ratio": ratio,
            }
        )
    return rows


def _sweep(store: Any, storage: Any, rng: np.random.Generator) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution

    from archbench.models.presets import get_family

    study = optuna.create_study(
        study_name=f"{SWEEP}:cpu", storage=storage, directions=["maximize", "minimize"]
    )
    study.set_user_attr("experiment", SWEEP)
    study.set_user_attr("profile", "cpu")
    # Where archbench keeps it (the budget study below keeps the older user-attr layout).
    study._storage.set_study_system_attr(study._study_id, "archbench:spec", SWEEP_SPEC)
    seed_effect = {s: rng.normal(0, 0.004) for s in SWEEP_SEEDS}  # shared by all variants
    trial = 0
    for family in SWEEP_FAMILIES:
        fam = get_family(family)
        for depth in SWEEP_DEPTHS:
            for width in SWEEP_WIDTHS:
                spec = fam.build(depth, width, **SHAPE).replace(name=f"{family}{depth}_w{width}")
                spec_hash = _record(store, spec, family, depth, width)
                hp = {"family": family, f"{family}.depth": depth, f"{family}.width": width}
                test0, train0 = _sweep_truth(family, depth, width)
                slow = 0.6 if family == "plain" and depth > 20 else 1.0
                accs = []
                for seed in SWEEP_SEEDS:
                    noise = seed_effect[seed] + rng.normal(0, 0.003)
                    _, val_err = _write_run(
                        store,
                        rng,
                        experiment=SWEEP,
                        profile="cpu",
                        spec_hash=spec_hash,
                        seed=seed,
                        trial=trial,
                        study=f"{SWEEP}:cpu",
                        hp=hp,
                        epochs=SWEEP_EPOCHS,
                        test=test0 + noise,
                        train=train0 + noise,
                        slow=slow,
                        # the same draws of rng, in the same order, as when they came after
                        before_finish=lambda run_id, fam=family, n_blocks=spec.depth: [
                            store.record_diagnostics(run_id, _diagnostics(fam, n_blocks, e, rng))
                            for e in (0, SWEEP_EPOCHS)
                        ],
                    )
                    accs.append(1 - val_err)
                params = store.variants().set_index("spec_hash").loc[spec_hash, "params"]
                study.add_trial(
                    optuna.trial.create_trial(
                        params=hp,
                        distributions={
                            "family": CategoricalDistribution(list(SWEEP_FAMILIES)),
                            f"{family}.depth": CategoricalDistribution(list(SWEEP_DEPTHS)),
                            f"{family}.width": CategoricalDistribution(list(SWEEP_WIDTHS)),
                        },
                        values=[float(np.mean(accs)), float(params)],
                        user_attrs={
                            "label": spec.name,
                            "spec_hash": spec_hash,
                            "params": int(params),
                            "budget_error": None,
                        },
                    )
                )
                trial += 1


def _budget(store: Any, storage: Any, rng: np.random.Generator) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution

    from archbench.models.budget import solve_width

    study = optuna.create_study(
        study_name=f"{BUDGET}:default", storage=storage, direction="maximize"
    )
    study.set_user_attr("experiment", BUDGET)
    study.set_user_attr("profile", "default")
    study.set_user_attr("spec", BUDGET_SPEC)
    labels = [f"{fam}{depth}" for fam, depth in BUDGET_VARIANTS]
    seed_effect = {s: rng.normal(0, 0.003) for s in BUDGET_SEEDS}
    for trial, (family, depth) in enumerate(BUDGET_VARIANTS):
        match = solve_width(family, BUDGET_TARGET, depth=depth, tolerance=0.10, **SHAPE)
        spec = match.spec.replace(name=labels[trial])
        budget = {"metric": "params", "target": BUDGET_TARGET, "tolerance": 0.10}
        spec_hash = _record(store, spec, family, depth, match.width)
        hp = {"config": labels[trial]}
        accs = []
        for seed in BUDGET_SEEDS:
            test = BUDGET_TRUTH[family] + seed_effect[seed] + rng.normal(0, 0.0025)
            _, val_err = _write_run(
                store,
                rng,
                experiment=BUDGET,
                profile="default",
                spec_hash=spec_hash,
                seed=seed,
                trial=trial,
                study=f"{BUDGET}:default",
                hp=hp,
                epochs=BUDGET_EPOCHS,
                test=test,
                train=test - 0.02,
                slow=1.0,
                budget=budget,
            )
            accs.append(1 - val_err)
        study.add_trial(
            optuna.trial.create_trial(
                params=hp,
                distributions={"config": CategoricalDistribution(labels)},
                value=float(np.mean(accs)),
                user_attrs={"label": labels[trial], "spec_hash": spec_hash},
            )
        )


def _thin(store: Any, rng: np.random.Generator) -> None:
    from archbench.models.presets import get_family

    for trial, family in enumerate(("plain", "resnet")):
        spec = get_family(family).build(8, 8, **SHAPE).replace(name=f"{family}8_w8")
        spec_hash = _record(store, spec, family, 8, 8)
        _write_run(
            store,
            rng,
            experiment=THIN,
            profile="default",
            spec_hash=spec_hash,
            seed=0,
            trial=trial,
            study=None,
            hp={},
            epochs=2,
            test=0.2,
            train=0.18,
            slow=1.0,
            with_epochs=False,
        )


def build_fixture_store(path: str | Path, seed: int = 0) -> Path:
    """Write the three SYNTHETIC experiments into a new SQLite file at ``path``."""
    import optuna

    from archbench.store import ResultsStore
    from archbench.store.storage import optuna_storage, resolve_storage

    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    resolved = resolve_storage(path)
    rng = np.random.default_rng(seed)
    storage = optuna_storage(resolved)
    with ResultsStore(resolved) as store:
        _sweep(store, storage, rng)
        _budget(store, storage, rng)
        _thin(store, rng)
    storage.remove_session()
    storage.engine.dispose()
    return path


if __name__ == "__main__":  # python tests/fixtures_store.py out.db: a store to look at
    import sys

    print(build_fixture_store(sys.argv[1] if len(sys.argv) > 1 else "fixture.db"))
