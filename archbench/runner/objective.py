"""The Optuna objective: one trial trains one configuration over the experiment's seeds.

It suggests (or takes from the grid) the configuration, solves it to the budget, records the
variant, then per seed opens or reuses the run in the results store, trains it (resuming from
its checkpoint), writes every epoch and the diagnostics, and returns the mean validation
accuracy (plus params/MACs for multi-objective studies).

The per-seed steps (a run opened, trained, recorded) are its base class,
:class:`~archbench.runner.seed_run.SeedRuns`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna

from archbench.errors import ArchbenchError
from archbench.runner.heartbeat import AttrHeartbeat, needs_attr_heartbeat
from archbench.runner.identity import (
    GridEntry,
    config_key,
    config_recipe,
    grid_entries,
    is_current_key,
)
from archbench.runner.metrics import TrialOutcome, objective_values
from archbench.runner.run_sharing import wait_for_owners
from archbench.runner.sampled import base_name, current_names, recorded
from archbench.runner.sections import Distribution
from archbench.runner.seed_run import _TAKEN_OVER, SeedRuns, _in_seed_order, _TrialPlan
from archbench.runner.spec import ExperimentSpec
from archbench.runner.study import (
    CONFIG_KEY_ATTR,
    NOT_IN_SPEC,
    NOTHING_QUEUED,
    PRUNED_REASON_ATTR,
    SEEDS_ATTR,
    WORKER_ID,
    RunnerOptions,
)
from archbench.runner.study_storage import results_dir
from archbench.runner.trial_facts import architecture_facts, record_facts
from archbench.runner.variants import ResolvedVariant, bind, dataset_shape, resolve
from archbench.store.lease import LeaseLostError
from archbench.tracking import Trackers

log = logging.getLogger(__name__)


class TrialTakenOverError(ArchbenchError):
    """This trial stopped because another took over its run (or failed it as stale)."""


def grid_entry(spec: ExperimentSpec, trial: optuna.Trial) -> GridEntry:
    """The grid configuration a queued trial carries (its key, a user attr).

    A grid trial that popped no queued configuration is pruned (raises ``TrialPruned``): it
    is not a failure, and it trains nothing.
    """
    key = trial.user_attrs.get(CONFIG_KEY_ATTR)
    if not is_current_key(key):
        # Another worker popped the last queued trial between this worker's progress check
        # and its optimize() (or the queue came from an archbench before configuration keys,
        # whose next `archbench run` queues it again).
        trial.set_user_attr(PRUNED_REASON_ATTR, NOTHING_QUEUED)
        raise optuna.TrialPruned(NOTHING_QUEUED)
    for entry in grid_entries(spec):
        if entry.key == key:
            return entry
    trial.set_user_attr(PRUNED_REASON_ATTR, NOT_IN_SPEC)
    raise optuna.TrialPruned(NOT_IN_SPEC)


def suggest_config(spec: ExperimentSpec, trial: optuna.Trial) -> dict[str, Any]:
    """The trial's configuration: its grid entry, or sampled define-by-run from the space."""
    if spec.sampler.name == "grid":
        return dict(grid_entry(spec, trial).config)
    assert spec.space is not None
    space = spec.space
    # Each param under the name the study knows its distribution by (a changed choice set
    # is a new name: archbench.runner.sampled).
    names = current_names(spec, recorded(trial.study))

    def suggest(name: str, dist: Any) -> Any:
        name = names[name]
        if dist.choices is not None:
            return trial.suggest_categorical(name, list(dist.choices))
        if dist.is_int:
            return trial.suggest_int(
                name, int(dist.low), int(dist.high), step=int(dist.step or 1), log=dist.log
            )
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)

    fam = suggest("family", Distribution(choices=tuple(space.families)))

    depth = suggest(f"{fam}.depth", space.depth[fam])
    width = suggest(f"{fam}.width", space.width[fam]) if fam in space.width else None
    params = {k: suggest(f"{fam}.{k}", d) for k, d in space.params.get(fam, {}).items()}
    recipe = {k: suggest(f"recipe.{k}", d) for k, d in space.recipe.items()}
    label = f"{fam}{depth}" + (f"_w{width}" if width else "")
    label += "".join(f"_{k}{v}" for k, v in sorted(params.items()))
    return {
        "label": label,
        "preset": None,
        "family": fam,
        "depth": depth,
        "width": width,
        "params": params,
        "recipe": recipe,
    }


class Objective(SeedRuns):
    """Trains one configuration over the spec's seeds; lives in one worker process."""

    def __init__(
        self,
        spec: ExperimentSpec,
        store: Any,
        options: RunnerOptions,
        *,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec = bind(spec)  # idempotent: the registries' names, default depths
        self.store = store
        self.options = options
        self.on_event = on_event or (lambda message: None)
        self.shape = dataset_shape(spec)
        self._data: Any = None
        self._variants: dict[str, ResolvedVariant] = {}
        self._told_busy: set[tuple[int, int]] = set()  # (trial, seed) said to be trained elsewhere
        # A trial that lost its run (fenced write) and that another worker had already ended
        # (stale heartbeat): Optuna's tell of it fails, which the worker expects then.
        self.abandoned_trial: int | None = None
        self.checkpoints = (
            results_dir(spec, options) / "checkpoints" / spec.study_name.replace(":", "-")
        )
        # Experiment trackers (--log): this process's own loggers, opened now.
        self.trackers = Trackers.from_targets(options.loggers)

    @property
    def data(self) -> Any:
        if self._data is None:  # loaded once per worker, on first use
            from archbench.data import load_dataset

            self._data = load_dataset(self.spec.dataset.name, **self.spec.dataset.load_kwargs())
        return self._data

    def complexity(self, variant: ResolvedVariant) -> Any:
        """Params, MACs and activations of a variant, by the analytic counter: fvcore's
        formulas on the meta device, equal to fvcore's trace (tests/test_complexity.py checks
        every registered block) at ~1/20 of its cost, and already cached by budget solving."""
        from archbench.models.complexity import analytic

        # The solver's own spec (before the label became its name) hits the count cache.
        return analytic(variant.budget.spec if variant.budget else variant.spec)

    def resolve(self, config: dict[str, Any]) -> ResolvedVariant:
        """The budget-matched variant of ``config`` (cached: solving a budget takes counts)."""
        from archbench.canonical import canonical_json

        key = canonical_json(
            {k: config.get(k) for k in ("preset", "family", "depth", "width", "params")},
            default=str,
        )
        if key not in self._variants:
            self._variants[key] = resolve(config, self.shape, self.spec.budget)
        variant = self._variants[key]
        return replace(variant, label=config["label"], config=config)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        beat: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if needs_attr_heartbeat(trial.study):
            beat = AttrHeartbeat(trial.study, trial, self.options.heartbeat_interval)
        try:
            with beat:
                return self._run(trial)
        except optuna.TrialPruned:
            raise
        except BaseException as exc:
            if isinstance(exc, _TAKEN_OVER):
                exc = self._lost(trial, exc)
            # Optuna 5 keeps no failure reason: record one line for `archbench run` to show.
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            if self.options.fuse_seeds:  # runs claimed for seeds never reached fail too
                from archbench.runner.fused_trial import release_claims

                release_claims(self, trial.number, reason)
            if not isinstance(exc, Exception):  # Ctrl-C: nothing more to record
                raise
            with contextlib.suppress(Exception):
                trial.set_user_attr("fail_reason", reason)
            if isinstance(exc, TrialTakenOverError):
                raise exc from None
            raise

    def _lost(self, trial: optuna.Trial, exc: Exception) -> TrialTakenOverError:
        """A fenced write refused (another trial owns the run now), or Optuna refused to
        update this trial (another worker failed it as stale): this worker was stopped or
        cut off past its heartbeat's grace period. Training stopped, nothing more was
        written; one line says so and the trial fails (its configuration is the other
        trial's to finish)."""
        why = (
            str(exc)
            if isinstance(exc, LeaseLostError)
            else "another worker ended this trial (its heartbeat went stale)"
        )
        self.on_event(f"trial {trial.number}: stopped, {why}")
        log.info("trial %d stopped: %s", trial.number, why)
        with contextlib.suppress(Exception):
            state = trial.study._storage.get_trial(trial._trial_id).state
            if state.is_finished():
                self.abandoned_trial = trial.number
        return TrialTakenOverError(f"stopped, {why}")

    def _run(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        from archbench.training.device import select_device

        plan = self._plan(trial)
        device = select_device(self.options.device)
        _ = self.data  # loaded before any run row is started, as before the split
        accs: dict[int, float] = {}
        run_ids: dict[int, int] = {}
        seeds = plan.seeds
        first = seeds[0]
        # Prune on the first seed's curve (later seeds only run if it survives). Optuna
        # takes no intermediate values from multi-objective trials.
        pruning = len(self.spec.objectives) == 1
        gated = pruning and self.spec.pruner.name != "none"
        pending = list(seeds)
        while pending:
            # A seed whose run another live trial is training (a sampler drew this
            # configuration twice) is skipped, the other seeds trained meanwhile, and its
            # result read once that trial finishes it: each run is trained once. Under a
            # pruner the first seed gates the others, so a busy first seed is waited for.
            busy = []
            for seed in pending:
                if busy and busy[0] == first and gated:
                    busy.append(seed)
                    continue
                report = pruning and seed == first
                acc = self._run_seed(trial, plan, seed, device, run_ids, report=report)
                if acc is None:
                    busy.append(seed)
                else:
                    accs[seed] = acc
            if busy and busy == pending:  # nothing else to do: wait for the other trial
                wait_for_owners(trial.study, self.options)
            pending = busy
        per_seed = [accs[seed] for seed in seeds]
        acc = sum(per_seed) / len(per_seed)
        trial.set_user_attr("val_acc_per_seed", per_seed)
        trial.set_user_attr("run_ids", _in_seed_order(run_ids, seeds))
        values = objective_values(self.spec.objectives, TrialOutcome(val_acc=acc, cost=plan.cost))
        return values[0] if len(values) == 1 else tuple(values)

    def _plan(self, trial: optuna.Trial) -> _TrialPlan:
        """The trial's configuration, resolved, counted and recorded (variant row, trial attrs)."""
        import torch

        spec = self.spec
        if spec.sampler.name == "grid":
            entry = grid_entry(spec, trial)
            config, label = dict(entry.config), entry.label
            variant = replace(entry.variant, label=label)
            hyperparameters = dict(config["recipe"])  # the grid's recipe choices
        else:
            config = suggest_config(spec, trial)
            variant = self.resolve(config)
            label = variant.label
            # What was sampled, under the names of the space (no distribution suffix).
            hyperparameters = {base_name(k): v for k, v in trial.params.items()}
        recipe = config_recipe(spec, config)
        recipe.validate()
        seeds = tuple(spec.seeds)
        queued = trial.user_attrs.get(SEEDS_ATTR)
        if spec.question is not None and queued:
            seeds = tuple(int(s) for s in queued)  # this round's seeds (runner.rounds)
        cost = self.complexity(variant)
        spec_hash = self.store.record_variant(
            variant.spec,
            family=variant.family or config["preset"],
            complexity=cost,
            depth=variant.depth,  # solved, default or preset depth; not the config's None
            width=variant.budget.width if variant.budget else config.get("width"),
            name=label,
        )
        ckey = config_key(spec_hash, recipe.to_dict(), budget=spec.budget, dataset=spec.dataset)
        facts = {**architecture_facts(variant, spec), "threads": torch.get_num_threads()}
        # User attrs only, never params: Optuna's importance views would credit a grid's
        # family effect to a budget-solved width or depth (the confound archbench's own
        # importance plot refuses), and a categorical whose choices follow the grid would
        # refuse the next grown grid ("dynamic value space").
        record_facts(trial, facts, {})
        for key, value in {
            "label": label,
            "spec_hash": spec_hash,
            CONFIG_KEY_ATTR: ckey,
            SEEDS_ATTR: list(seeds),
            "params": cost.params,
            "macs": cost.macs,
            "budget_error": variant.budget.rel_error if variant.budget else None,
            "worker": WORKER_ID,
        }.items():
            trial.set_user_attr(key, value)
        return _TrialPlan(variant, recipe, cost, spec_hash, ckey, hyperparameters, seeds)
