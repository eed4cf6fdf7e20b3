"""The trial path of fused seeds (``run --fuse-seeds``): one trial's seeds trained at once.

:class:`~archbench.runner.objective.Objective` trains a trial's seeds one after another, each
as its own run row. With ``fuse_seeds`` its per-seed training call comes here: the first call
of a trial claims the later seeds' runs too (the same exclusive ``start_run`` the objective
makes, so a run another trial is training, or one already finished, is left out; the
objective then takes the claimed run instead of opening it again), trains the
claimed seeds with :func:`~archbench.training.fused.train_fused` into their own checkpoint
folders, and keeps the other seeds' results with their nets; their own calls then replay them
through their epoch callbacks (epochs and diagnostics stored as if trained then). Each call
returns its seed's result and net: the fused training copies every seed's slice of the
stacked parameters and buffers back into that seed's own net after each epoch
(``_Stack.write_back``), so the objective keeps its final weights (``--keep-weights``)
exactly as for an unfused run. Every seed stays its own run; nothing downstream changes.

Seeds are not fused (each trains alone, as without the option, and a warning says why) when
the net cannot be fused (:func:`~archbench.training.fused.fusion_problem`: dropout,
``recipe.compile``) or when their checkpoints stopped at different epochs. Under a pruner the
first seed's curve is reported live; pruning it stops the others with it.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archbench.runner.tracked import track_config
from archbench.store.values import RunBusyError
from archbench.training.checkpoint import checkpoint_epoch

log = logging.getLogger(__name__)

#: Results trained fused but not yet handed out, per objective:
#: {(trial number, seed): (result, the seed's net with its final weights)}.
_WAITING: weakref.WeakKeyDictionary[Any, dict[tuple[int, int], tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)
#: Runs opened for a fused training, per objective: {(trial number, seed): (run_id, epoch of
#: its checkpoint then)}; the objective takes them instead of opening the run again (which
#: would count an attempt and read the fused training's checkpoint as a resume).
_CLAIMED: weakref.WeakKeyDictionary[Any, dict[tuple[int, int], tuple[int, int | None]]] = (
    weakref.WeakKeyDictionary()
)


def claimed_run(objective: Any, trial_number: int, seed: int) -> tuple[int, int | None] | None:
    """(run_id, checkpoint epoch at the claim) of a run this trial's fused training opened."""
    return _CLAIMED.get(objective, {}).pop((trial_number, seed), None)


def release_claims(objective: Any, trial_number: int, reason: str) -> None:
    """A trial that failed before its claimed seeds' own calls: their runs fail with it (a
    retry resumes them from their checkpoints) rather than stay 'running', and the results
    waiting for them are dropped. Fenced: a run another trial took over is left as it is."""
    for key in [k for k in _WAITING.get(objective, {}) if k[0] == trial_number]:
        _WAITING[objective].pop(key, None)
    claimed = _CLAIMED.get(objective, {})
    for key in [k for k in claimed if k[0] == trial_number]:
        run_id, _ = claimed.pop(key)
        with contextlib.suppress(Exception):
            objective.store.finish_run(run_id, status="failed", error=reason)


def train_seed_fused(
    objective: Any,
    trial: Any,
    plan: Any,
    seed: int,
    device: Any,
    ckpt: Path,
    on_epoch_end: Callable[[Any, list[Any]], bool],
) -> tuple[Any, Any]:
    """(The :class:`~archbench.training.results.TrainResult` of ``seed``, its net with the
    final weights): trained now with the trial's later seeds fused in, or replayed from such
    a training."""
    waiting = _WAITING.setdefault(objective, {})
    done = waiting.pop((trial.number, seed), None)
    if done is not None:
        return _replay(done[0], on_epoch_end), done[1]
    from archbench.models.net import build_net
    from archbench.training.device import seed_everything
    from archbench.training.fused import fusion_problem, train_fused

    def net_for(s: int) -> Any:
        seed_everything(s)  # as the unfused path builds it: the same initial weights
        return build_net(plan.variant.spec)

    net = net_for(seed)
    problem = fusion_problem(net, plan.recipe)
    resumed = checkpoint_epoch(ckpt, seed, plan.recipe)
    claimed = {} if problem else _claim(objective, trial, plan, seed, device, resumed)
    group = list(claimed)
    if problem:
        log.warning("%s: seeds trained one at a time: %s", plan.variant.label, problem)
    if not group:
        return objective.train_alone(net, plan, seed, device, ckpt, on_epoch_end), net
    seeds = [seed, *group]
    objective.on_event(
        f"trial {trial.number}: {plan.variant.label} seeds {', '.join(map(str, seeds))} fused"
    )
    pruned = [False]

    def first(metrics: Any, diagnostics: list[Any]) -> bool:
        pruned[0] = bool(on_epoch_end(metrics, diagnostics))
        return pruned[0]

    nets = [net, *(net_for(s) for s in group)]
    try:
        results = train_fused(
            nets,
            objective.data,
            plan.recipe,
            seeds=seeds,
            device=device,
            checkpoint_dirs=[ckpt.parent / f"seed{s}" for s in seeds],
            resume=True,
            diagnostics_every=plan.recipe.epochs,
            # Seed i's callback runs after seed 0's in each epoch: a pruned first seed stops
            # all.
            on_epoch_end=[first, *(lambda m, d: pruned[0] for _ in group)],
            bad_checkpoint="restart",
        )
    except BaseException as exc:
        # The objective marks this seed's run failed; the claimed ones fail with it (a
        # retry resumes them all from their checkpoints), rather than stay 'running'.
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        for other, run_id in claimed.items():
            _CLAIMED.get(objective, {}).pop((trial.number, other), None)
            with contextlib.suppress(Exception):
                objective.store.finish_run(run_id, status="failed", error=reason)
        raise
    if results[0].status == "pruned":
        # The objective stops the trial after this seed: the others' own calls never come,
        # so their runs are stored and finished here (else they stay 'running' for good).
        for s, result in zip(group, results[1:], strict=True):
            _, at = _CLAIMED.get(objective, {}).pop((trial.number, s), (None, None))
            config = track_config(
                objective.spec,
                plan,
                seed=s,
                run_id=claimed[s],
                resumed_after_epoch=at or 0,
                device=device,
            )
            with objective.trackers.run(config) as tracked:  # as the objective tracks a run
                _finish(objective.store, claimed[s], result, tracked)
        return results[0], net
    for s, result, other in zip(group, results[1:], nets[1:], strict=True):
        waiting[(trial.number, s)] = (result, other)
    return results[0], net


def _finish(store: Any, run_id: int, result: Any, tracked: Any) -> None:
    """Store (and track) a claimed seed's epochs, diagnostics and end as the objective would."""
    for metrics in result.epochs:
        store.record_epoch(run_id, metrics)
        tracked.log_epoch(metrics)
    if result.diagnostics:
        store.record_diagnostics(run_id, result.diagnostics)
    store.finish_run(
        run_id,
        status=result.status,
        final=result.final,
        wall_time_s=result.wall_time_s,
        diverged_at=result.diverged_at,
    )
    tracked.finish(result.status, result.final, wall_time_s=result.wall_time_s)


def _claim(
    objective: Any, trial: Any, plan: Any, seed: int, device: Any, resumed: int | None
) -> dict[int, int]:
    """The trial's seeds after ``seed`` whose runs this trial may train now, at the same
    checkpoint epoch as ``seed``'s, each opened (claimed) as the objective opens it:
    {seed: run_id}."""
    seeds = list(plan.seeds)  # the trial's: the spec's, or a question's round
    claimed: dict[int, int] = {}
    for other in seeds[seeds.index(seed) + 1 :]:
        ckpt = objective.checkpoints / plan.ckey / f"seed{other}"
        at = checkpoint_epoch(ckpt, other, plan.recipe)
        if (at or 0) != (resumed or 0):
            continue  # trained alone, from its own checkpoint
        opening = objective._opening(trial, plan, other, device, at)
        try:
            run_id = objective.store.start_run(**opening, exclusive=True)
        except RunBusyError:
            continue  # another trial trains it; the objective waits for its result
        previous = objective.store.run(run_id)
        if previous is not None and previous.get("status") in ("completed", "diverged"):
            continue  # the objective reuses it
        claimed[other] = run_id
        _CLAIMED.setdefault(objective, {})[(trial.number, other)] = (run_id, at)
    return claimed


def _replay(result: Any, on_epoch_end: Callable[[Any, list[Any]], bool]) -> Any:
    """Hand a fused seed's epochs to its own callback (the store records them now)."""
    for metrics in result.epochs:
        diagnostics = [d for d in result.diagnostics if d.epoch == metrics.epoch]
        on_epoch_end(metrics, diagnostics)
    return result
