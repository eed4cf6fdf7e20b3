"""The Optuna objective: one trial trains one configuration over the experiment's seeds.

It suggests (or takes from the grid) the configuration, solves it to the budget, records the
variant, then per seed opens or reuses the run in the results store, trains it (resuming from
its checkpoint), writes every epoch and the diagnostics, and returns the mean validation
accuracy (plus params/MACs for multi-objective studies).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
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
from archbench.runner.run_sharing import owner_alive, wait_for_owners
from archbench.runner.sampled import base_name, current_names, recorded
from archbench.runner.sections import Distribution
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
from archbench.runner.tracked import track_config, weights_file
from archbench.runner.trial_facts import architecture_facts, record_facts
from archbench.runner.variants import ResolvedVariant, bind, dataset_shape, resolve
from archbench.store.lease import LeaseLostError
from archbench.store.values import RunBusyError
from archbench.tracking import Trackers
from archbench.training.checkpoint import checkpoint_epoch

log = logging.getLogger(__name__)


#: A trial that another worker took over while this one was stopped: its run's lease moved
#: on (fenced write), or Optuna's trial was failed as stale (Optuna refuses the update).
_TAKEN_OVER = (LeaseLostError, optuna.exceptions.UpdateFinishedTrialError)


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


def _remove_checkpoint(ckpt_dir: Path) -> None:
    # Only the file, then empty folders: a duplicate trial of the same run (two workers on
    # one grid point) may be writing into this folder right now.
    from archbench.training.checkpoint import LAST

    (ckpt_dir / LAST).unlink(missing_ok=True)
    for folder in (ckpt_dir, ckpt_dir.parent, ckpt_dir.parent.parent):
        with contextlib.suppress(OSError):
            folder.rmdir()


class Objective:
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

    def _run_seed(
        self,
        trial: optuna.Trial,
        plan: _TrialPlan,
        seed: int,
        device: Any,
        run_ids: dict[int, int],
        *,
        report: bool,
    ) -> float | None:
        """Train (or resume, or reuse) one seed's run; its validation accuracy (0 if diverged),
        or ``None`` while another live trial is training that run."""
        variant = plan.variant
        ckpt = self.checkpoints / plan.ckey / f"seed{seed}"
        resumed = checkpoint_epoch(ckpt, seed, plan.recipe)
        claimed = None  # (run_id, epoch): opened by the fused training of an earlier seed
        if self.options.fuse_seeds:
            from archbench.runner.fused_trial import claimed_run

            claimed = claimed_run(self, trial.number, seed)
            resumed = claimed[1] if claimed else resumed
        opening = self._opening(trial, plan, seed, device, resumed)
        try:
            run_id = claimed[0] if claimed else self.store.start_run(**opening, exclusive=True)
        except RunBusyError as busy:
            if owner_alive(trial.study, busy.owner):
                if (trial.number, seed) in self._told_busy:
                    return None
                self._told_busy.add((trial.number, seed))
                self.on_event(
                    f"trial {trial.number}: {variant.label} seed {seed} is being trained by "
                    f"trial {busy.owner[1]} (same configuration); its result will be reused"
                )
                return None
            # Its worker died (or it belongs to another study): take the run over, unless
            # another waiter already did.
            try:
                run_id = self.store.start_run(**opening, exclusive=True, replacing=busy.owner)
            except RunBusyError:
                return None
        run_ids[seed] = run_id
        previous = self.store.run(run_id)
        if previous is not None and previous.get("status") == "completed":
            # Finished before this worker (or an earlier attempt of the trial) died.
            done_err = previous.get("val_err")
            return 0.0 if done_err is None else 1.0 - done_err
        if previous is not None and previous.get("status") == "diverged":
            trial.set_user_attr("diverged", True)  # a result: the same seed diverges again
            return 0.0
        where = f" (resuming after epoch {resumed})" if resumed else ""
        self.on_event(f"trial {trial.number}: {variant.label} seed {seed} (run {run_id}){where}")
        config = track_config(
            self.spec,
            plan,
            seed=seed,
            run_id=run_id,
            resumed_after_epoch=resumed or 0,
            device=device,
        )
        with self.trackers.run(config) as tracked:
            result, recorded = self._train(
                trial, plan, seed, device, run_id, ckpt, report=report, tracked=tracked
            )
            tracked.finish(result.status, result.final, wall_time_s=result.wall_time_s)
        final = result.final
        # A worker killed between the trainer's checkpoint and the epoch callback resumes
        # after an epoch the store never got: record those this process did not.
        for metrics in result.epochs:
            if metrics.epoch not in recorded:
                self.store.record_epoch(run_id, metrics)
        # Diagnostics at initialisation (epoch 0) come before any epoch callback.
        initial = [d for d in result.diagnostics if d.epoch == 0]
        if initial:
            self.store.record_diagnostics(run_id, initial)
        self.store.finish_run(
            run_id,
            status=result.status,
            final=final,
            wall_time_s=result.wall_time_s,
            diverged_at=result.diverged_at,
        )
        if not self.options.keep_checkpoints and result.status != "pruned":
            _remove_checkpoint(ckpt)
        if result.status == "pruned":
            trial.set_user_attr("run_ids", _in_seed_order(run_ids, plan.seeds))
            raise optuna.TrialPruned()
        if result.status == "diverged" or final is None or final.val_err is None:
            trial.set_user_attr("diverged", True)
            return 0.0  # worst possible accuracy: the study goes on
        return 1.0 - final.val_err

    def _opening(
        self, trial: optuna.Trial, plan: _TrialPlan, seed: int, device: Any, resumed: int | None
    ) -> dict[str, Any]:
        """The fields ``store.start_run`` opens one seed's run with."""
        from archbench.training.device import environment_info

        spec, variant = self.spec, plan.variant
        env = environment_info(device)
        env["resumed_after_epoch"] = resumed or 0
        env["worker"] = WORKER_ID
        env["fuse_seeds"] = self.options.fuse_seeds
        return dict(
            experiment=spec.name,
            profile=spec.profile,
            study_name=spec.study_name,
            trial_number=trial.number,
            spec_hash=plan.spec_hash,
            seed=seed,
            config_key=plan.ckey,
            hyperparameters=plan.hyperparameters,
            recipe=plan.recipe.to_dict(),
            device=str(device),
            env=env,
            budget=_budget_dict(variant),
        )

    def _train(
        self,
        trial: optuna.Trial,
        plan: _TrialPlan,
        seed: int,
        device: Any,
        run_id: int,
        ckpt: Path,
        *,
        report: bool,
        tracked: Any = None,
    ) -> tuple[Any, set[int]]:
        """One seed's training, each epoch stored as it ends; (result, epochs stored)."""
        from archbench.models.net import build_net
        from archbench.runner.resources import as_resource_error
        from archbench.training.device import seed_everything

        recorded: set[int] = set()  # epochs this process wrote (no second round-trip)
        # Values for Optuna's pruner, held while the database is unreachable: training goes
        # on meanwhile (the store holds the epochs too) and Optuna hears of them once it is
        # back (archbench.store.reconnect).
        held: list[tuple[float, int]] = []

        def tell_optuna() -> None:
            for value, step in held:
                trial.report(value, step)
            held.clear()

        def on_epoch_end(metrics: Any, diagnostics: list[Any]) -> bool:
            self.store.record_epoch(run_id, metrics)  # also the run's heartbeat
            recorded.add(metrics.epoch)
            if tracked is not None:
                tracked.log_epoch(metrics)
            if diagnostics:
                self.store.record_diagnostics(run_id, diagnostics)
            if report and metrics.val_err is not None:
                held.append((1.0 - metrics.val_err, metrics.epoch))
                if getattr(self.store, "offline", False):
                    return False
                tell_optuna()
                return trial.should_prune()
            return False

        try:
            # Building the net can fail too (an allocation error): inside the try, so the
            # run row never stays 'running'.
            if self.options.fuse_seeds:  # trains this trial's seeds at once, replays the rest
                from archbench.runner.fused_trial import train_seed_fused

                # The seed's own net, holding its final (unstacked) weights.
                result, net = train_seed_fused(self, trial, plan, seed, device, ckpt, on_epoch_end)
            else:
                seed_everything(seed)
                net = build_net(plan.variant.spec)
                result = self.train_alone(net, plan, seed, device, ckpt, on_epoch_end)
            if self.options.keep_weights and result.status == "completed":
                self._keep_weights(net, plan, seed, run_id)
            tell_optuna()  # what an outage held back (the run's epochs are stored already)
        except _TAKEN_OVER:
            # The run is (or is about to be) another trial's: nothing to say in it. Its
            # owner finished it already: the checkpoint this worker wrote on waking is stale.
            with contextlib.suppress(Exception):
                if not self.options.keep_checkpoints and (
                    self.store.run(run_id)["status"] in ("completed", "diverged")
                ):
                    _remove_checkpoint(ckpt)
            raise
        except BaseException as exc:
            # An error or Ctrl-C: say so in the store (a rerun resumes the checkpoint).
            # A killed process never gets here: its run turns stale instead. Fenced: a run
            # another trial took over meanwhile is left as its new owner has it.
            with contextlib.suppress(Exception):
                reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
                self.store.finish_run(run_id, status="failed", error=reason)
            resource = as_resource_error(exc)  # out of memory or disk: this trial fails alone
            if resource is not None:
                raise resource from exc
            raise
        return result, recorded

    def train_alone(
        self,
        net: Any,
        plan: _TrialPlan,
        seed: int,
        device: Any,
        ckpt: Path,
        on_epoch_end: Callable[[Any, list[Any]], bool],
    ) -> Any:
        """One seed's training on its own (also a fused trial's seed that cannot fuse)."""
        from archbench.training.train import train

        return train(
            net,
            self.data,
            plan.recipe,
            seed=seed,
            device=device,
            checkpoint_dir=ckpt,
            resume=True,
            # At initialisation and after the last epoch: all the gradient-flow and branch
            # plots read; every epoch cost ~2 training steps each.
            diagnostics_every=plan.recipe.epochs,
            on_epoch_end=on_epoch_end,
            progress=self.options.progress,
            bad_checkpoint="restart",  # a damaged checkpoint must not block the run
        )

    def _keep_weights(self, net: Any, plan: _TrialPlan, seed: int, run_id: int) -> None:
        """Save the run's final weights (--keep-weights) and record the file with the run."""
        from archbench.training.weights import save_weights

        # Fenced before the file is written: its path is shared with whoever took the run over.
        self.store.heartbeat(run_id)
        path = weights_file(
            results_dir(self.spec, self.options), self.spec.study_name, plan.ckey, seed
        )
        meta = {"run_id": run_id, "seed": seed, "label": plan.variant.label}
        save_weights(net, path, spec_hash=plan.spec_hash, meta=meta)
        self.store.set_weights_path(run_id, path)


@dataclass(frozen=True)
class _TrialPlan:
    """What one trial trains, shared by its seeds."""

    variant: ResolvedVariant
    recipe: Any
    cost: Any
    spec_hash: str
    ckey: str
    hyperparameters: dict[str, Any]
    seeds: tuple[int, ...]  # the trial's seeds: the spec's, or a question's round


def _in_seed_order(run_ids: dict[int, int], seeds: Sequence[int]) -> list[int]:
    return [run_ids[seed] for seed in seeds if seed in run_ids]


def _budget_dict(variant: ResolvedVariant) -> dict[str, Any] | None:
    m = variant.budget
    if m is None:
        return None
    return {"metric": m.metric, "target": m.target, "tolerance": m.tolerance, "error": m.rel_error}
