"""One seed's run inside a trial: open (or reuse, or take over) its row in the results store,
train it (resuming its checkpoint), store every epoch and its diagnostics, keep its weights.

:class:`~archbench.runner.objective.Objective` decides what a trial trains (its
configuration, plan and seeds) and inherits these per-seed steps from :class:`SeedRuns`.
They are kept apart because they deal with one run's bookkeeping (run leases, another trial
training the same run, failures recorded in the store, checkpoints removed), not with the
trial; :mod:`archbench.runner.fused_trial` calls them too (``_opening``, ``train_alone``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from archbench.runner.options import RunnerOptions
from archbench.runner.run_sharing import owner_alive
from archbench.runner.spec import ExperimentSpec
from archbench.runner.study import WORKER_ID
from archbench.runner.study_storage import results_dir
from archbench.runner.tracked import track_config, weights_file
from archbench.runner.variants import ResolvedVariant
from archbench.store.lease import LeaseLostError
from archbench.store.values import RunBusyError
from archbench.tracking import Trackers
from archbench.training.checkpoint import checkpoint_epoch

#: A trial that another worker took over while this one was stopped: its run's lease moved
#: on (fenced write), or Optuna's trial was failed as stale (Optuna refuses the update).
_TAKEN_OVER = (LeaseLostError, optuna.exceptions.UpdateFinishedTrialError)


def _remove_checkpoint(ckpt_dir: Path) -> None:
    # Only the file, then empty folders: a duplicate trial of the same run (two workers on
    # one grid point) may be writing into this folder right now.
    from archbench.training.checkpoint import LAST

    (ckpt_dir / LAST).unlink(missing_ok=True)
    for folder in (ckpt_dir, ckpt_dir.parent, ckpt_dir.parent.parent):
        with contextlib.suppress(OSError):
            folder.rmdir()


class SeedRuns:
    """The per-seed steps of :class:`~archbench.runner.objective.Objective` (its base class):
    they read the objective's spec, store, options, checkpoints folder, trackers and data."""

    spec: ExperimentSpec
    store: Any
    options: RunnerOptions
    on_event: Callable[[str], None]
    checkpoints: Path
    trackers: Trackers
    _told_busy: set[tuple[int, int]]
    data: Any

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
