"""Optuna study orchestration: one study per experiment and profile.

Each trial samples (or, for a grid, enumerates) one configuration, solves it to the budget,
trains it once per seed (the same seeds for every configuration, so comparisons can be
paired), writes every epoch to the results store as it goes, and returns the mean final
validation accuracy (plus params/MACs for multi-objective studies).

Faults: trials send heartbeats (Optuna's own on SQLite and PostgreSQL, a system attribute on
journal storage); a trial whose worker died turns stale after the grace period, is failed by
the next worker (or the next ``archbench run``) and re-queued with the same parameters. Its
runs keep their store rows (keyed by configuration and seed) and resume from their last
epoch checkpoint, so nothing recorded is lost or duplicated. A trial interrupted in a way
that marked it failed (Ctrl-C) is re-queued by the next ``archbench run``
(:func:`prepare_study`).

This module sets a study up (sampler, pruner, queue; its storage is opened by
:mod:`archbench.runner.study_storage`); :mod:`archbench.runner.objective` trains one trial;
:mod:`archbench.runner.worker` runs the trials until the study is done.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from archbench.errors import SpecError
from archbench.runner import sampled
from archbench.runner.algorithms import PRUNERS, SAMPLERS
from archbench.runner.identity import config_key, grid_entries, is_current_key
from archbench.runner.options import RunnerOptions  # also imported from here (its old home)
from archbench.runner.spec import ExperimentSpec
from archbench.runner.study_storage import (  # also imported from here (their old home)
    _load_stored_study,
    _retry_callback,
    open_storage,
    study_setup,
)
from archbench.runner.variants import baseline_params

log = logging.getLogger(__name__)

DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
ALIVE_STATES = (*DONE_STATES, TrialState.RUNNING, TrialState.WAITING)
HEARTBEAT_ATTR = "archbench_heartbeat"  # journal storage: seconds since the epoch
# Study system attrs (not user attrs: `optuna studies` prints every user attr in its table).
FINGERPRINT_ATTR = "archbench:fingerprint"
SPEC_ATTR = "archbench:spec"  # the spec's YAML text; archbench.analysis.data reads it
GRID_ATTR = "archbench:grid"  # config key -> label of the grid last prepared (analysis filters)
QUESTION_ATTR = "archbench:question"  # the question of the study's first round (its plan)
# Trial user attrs: what a trial trains (queued with it) and with which seeds.
CONFIG_KEY_ATTR = "config_key"
SEEDS_ATTR = "seeds"
PRUNED_REASON_ATTR = "pruned_reason"  # why a trial ended without training
NOT_IN_SPEC = "no longer in the spec: its variant was removed or edited"
NOTHING_QUEUED = "nothing queued: another worker took the last grid configuration"
#: Why a trial is pruned before it trains anything: it covers no configuration.
UNTRAINED = (NOT_IN_SPEC, NOTHING_QUEUED)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial


def make_sampler(spec: ExperimentSpec, worker: int | str = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler as ``worker`` builds it (see :func:`~.algorithms.worker_seed`)."""
    return SAMPLERS[spec.sampler.name].build(spec, worker)


def make_pruner(spec: ExperimentSpec) -> optuna.pruners.BasePruner:
    return PRUNERS[spec.pruner.name].build(spec)


def grid_labels(spec: ExperimentSpec) -> list[str]:
    """One label per grid configuration, in the spec's order (entries that build the same
    net under the same recipe are one configuration: their labels joined)."""
    return [entry.label for entry in grid_entries(spec)]


def fingerprint(spec: ExperimentSpec) -> dict[str, Any]:
    """What makes stored runs comparable; a study keeps the one it was made with.

    Seeds are not in it: added seeds are trained (and removed ones ignored) beside the
    stored ones. Variants are not either: each configuration has its own key
    (:func:`~archbench.runner.identity.config_key`).
    """
    return {
        "dataset": dataclasses.asdict(spec.dataset),
        "recipe": spec.recipe.to_dict(),
        "budget": dataclasses.asdict(spec.budget) if spec.budget else None,
        "objectives": list(spec.objectives),
    }


def check_study(spec: ExperimentSpec, study: optuna.Study) -> None:
    """Raise :class:`SpecError` (one line) if ``study`` cannot continue under ``spec``:
    other objectives, another dataset, recipe or budget (stored runs would not compare).

    A sampled search whose choices changed continues: a param with another choice set is
    sampled under another name (:mod:`archbench.runner.sampled`)."""
    ways_out = "use another experiment name, profile or storage"
    if [d.name.lower() for d in study.directions] != spec.directions:
        raise SpecError(
            f"study {spec.study_name!r} in this storage has objectives with directions "
            f"{[d.name.lower() for d in study.directions]}, the spec asks for "
            f"{spec.directions}; {ways_out}"
        )
    system = study._storage.get_study_system_attrs(study._study_id)
    # Studies made before the fingerprint moved to the system attrs keep it in the user attrs.
    stored = system.get(FINGERPRINT_ATTR, study.user_attrs.get("fingerprint"))
    if stored is not None:
        wanted = fingerprint(spec)
        changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
        if changed:
            raise SpecError(
                f"study {spec.study_name!r} in this storage was run with another "
                f"{', '.join(changed)}; its results would not be comparable. Use another "
                "experiment name, profile or storage (or delete the study: optuna delete-study)"
            )
    sampled_study = spec.sampler.name != "grid"
    if sampled_study and stored is not None and stored.get("seeds") not in (None, list(spec.seeds)):
        # Its trials carry no seeds: which ones would need the added seeds is unknown.
        raise SpecError(
            f"study {spec.study_name!r} in this storage was run with another seeds by an "
            f"archbench before seeds could change ({stored['seeds']}); {ways_out}"
        )


def check_stored_study(spec: ExperimentSpec, options: RunnerOptions) -> None:
    """:func:`check_study` against the study already stored, without writing anything
    (``archbench validate`` says what ``run`` would refuse). Nothing stored: nothing to say."""
    from archbench.store.storage import resolve_storage, sqlite_table_names

    resolved = resolve_storage(options.storage or spec.storage)
    if resolved.kind == "memory":
        return
    if resolved.kind == "sqlite":
        path = resolved.optuna_url.removeprefix("sqlite:///") if resolved.optuna_url else ""
        tables = sqlite_table_names(path) if path and Path(path).is_file() else None
        if not tables or "studies" not in tables:
            return
    if resolved.kind == "journal" and not (
        resolved.journal_path is not None and resolved.journal_path.is_file()
    ):
        return
    try:
        # Under the setup lock: opening Optuna's storage stamps its version rows when they
        # are missing, which races a worker creating the same store right now.
        with study_setup(spec, options):
            study = _load_stored_study(spec, resolved)
    except Exception as exc:  # unreachable, no Optuna tables: run says so itself
        log.debug("no stored study to check: %s", exc)
        return
    if study is not None:
        check_study(spec, study)


def create_study(spec: ExperimentSpec, storage: Any, *, worker: int | str = 0) -> optuna.Study:
    """Create the study, or load it to continue (same name and storage).

    Raises :class:`SpecError` (:func:`check_study`) when the stored study was made from a
    spec whose dataset, recipe, budget or objectives differ: its results would not be
    comparable. Variants, seeds, the sampler and the number of trials may change between
    runs; so may a sampled space (its ranges and choices: a param whose choices changed is
    sampled under a new name, :mod:`archbench.runner.sampled`).
    """
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study_name,
        sampler=make_sampler(spec, worker),
        pruner=make_pruner(spec),
        directions=spec.directions,
        load_if_exists=True,
    )
    check_study(spec, study)
    if spec.sampler.name != "grid":
        sampled.record(spec, study)  # the distribution each param name was first sampled from
    from archbench.store.storage import redact

    system = study._storage.get_study_system_attrs(study._study_id)
    if system.get(FINGERPRINT_ATTR, study.user_attrs.get("fingerprint")) is None:
        # Short user attrs only: they are `optuna studies`' and the dashboard's columns.
        study.set_user_attr("experiment", spec.name)
        study.set_user_attr("profile", spec.profile)
        # Redacted: never a password in the database (a report shows this text).
        study._storage.set_study_system_attr(study._study_id, SPEC_ATTR, redact(spec.source))
        study._storage.set_study_system_attr(study._study_id, FINGERPRINT_ATTR, fingerprint(spec))
    if study.metric_names is None:  # names the values in the dashboard and trials_dataframe
        import warnings

        from archbench.runner.trial_facts import metric_names

        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(spec))
    return study


def _origin(trial: FrozenTrial) -> int:
    """The number of the first trial of a retry chain (Optuna's ``failed_trial`` attribute)."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def trial_key(trial: FrozenTrial) -> str | None:
    """The configuration key of a trial (set when it is queued or planned), or ``None`` for
    a trial that has none yet or was made before keys identified configurations."""
    key = trial.user_attrs.get(CONFIG_KEY_ATTR)
    return key if is_current_key(key) else None


def trial_covers(trial: FrozenTrial, seeds: Any) -> bool:
    """Whether a trial (done, running or queued) trains every one of ``seeds``.

    A trial without the attr was made before issue 16, under the seeds of its study's
    fingerprint (which :func:`check_study` still holds a sampled study of that time to; a
    grid trial of that time has no configuration key and covers nothing anyway).
    """
    if trial.state == TrialState.PRUNED and trial.user_attrs.get(PRUNED_REASON_ATTR) in UNTRAINED:
        return False  # pruned before it trained anything: a re-added variant trains
    had = trial.user_attrs.get(SEEDS_ATTR)
    return had is None or set(seeds) <= set(had)


def current_grid(study: optuna.Study) -> dict[str, str] | None:
    """``config key -> label`` of the grid the study was last prepared for (``None``: not a
    grid study, or prepared by an archbench before keys)."""
    system = study._storage.get_study_system_attrs(study._study_id)
    grid = system.get(GRID_ATTR)
    return dict(grid) if isinstance(grid, Mapping) else None


def prepare_study(spec: ExperimentSpec, options: RunnerOptions) -> tuple[optuna.Study, int]:
    """Create or load the study and queue what is to be run; returns (study, re-queued).

    A grid study gets one queued trial per configuration not yet done, running or queued, in
    the spec's order. A sampled study gets its baselines. Either gets its interrupted trials
    back: those whose retry chain only failed (Ctrl-C, an error, stale retries exhausted).
    Call once per ``archbench run``, not in every worker. Runs under the storage's setup
    lock (:func:`study_setup`), so two started together queue once: the second finds the
    first's queue.
    """
    with study_setup(spec, options):
        return _prepare_study(spec, options)


def _prepare_study(spec: ExperimentSpec, options: RunnerOptions) -> tuple[optuna.Study, int]:
    from archbench.runner.variants import bind

    spec = bind(spec)  # the registries' names and default depths
    storage, store = open_storage(spec, options)
    wanted = None
    try:
        study = create_study(spec, storage)
        _rekey_legacy_runs(spec, store)
        if spec.question is not None:  # the round the stored runs are in (runner.rounds)
            from archbench.runner.rounds import current_round

            wanted = current_round(spec, store).needs
    finally:
        store.close()
    # What analysis shows by default: the current spec (runs of removed variants stay stored).
    from archbench.store.storage import redact

    study._storage.set_study_system_attr(study._study_id, SPEC_ATTR, redact(spec.source))
    if spec.question is not None:
        _check_question_plan(spec, study)
    trials = study.get_trials(deepcopy=False)
    failed_chains = _failed_chains(trials)
    requeued = 0
    if spec.sampler.name == "grid":
        requeued, _ = _queue_grid(spec, study, trials, failed_chains, wanted)
    else:
        # No grid to filter the analysis by: a search continued after a grid shows its runs.
        study._storage.set_study_system_attr(study._study_id, GRID_ATTR, None)
        names = sampled.current_names(spec, sampled.recorded(study))
        seen = {_params_of(t) for t in trials}
        for baseline in spec.baselines:
            params = baseline_params(spec, baseline)
            if _params_of(params) not in seen:  # under any name it was sampled by
                fixed = sampled.translate(params, spec, names)
                study.enqueue_trial(fixed or params, skip_if_exists=True)
        for trial in failed_chains:
            again = sampled.retried(trial, spec, names)  # under the space's names now
            if again is not None:
                _retry_callback()(study, again)
                requeued += 1
        _queue_added_seeds(spec, study, trials)
    if requeued:
        log.info("re-queued %d interrupted trial(s) of %s", requeued, spec.study_name)
    return study, requeued


def _check_question_plan(spec: ExperimentSpec, study: optuna.Study) -> None:
    """Keep the question the first round was planned with; warn when it changed (its looks
    and alpha spending were fixed before the first look; a new plan after some looks voids
    the guarantee that looking after every round keeps false positives under alpha)."""
    assert spec.question is not None
    current = dataclasses.asdict(spec.question)
    system = study._storage.get_study_system_attrs(study._study_id)
    first = system.get(QUESTION_ATTR)
    if first is None:
        study._storage.set_study_system_attr(study._study_id, QUESTION_ATTR, current)
        return
    changed = sorted(k for k in current if first.get(k) != current[k])
    if changed:
        log.warning(
            "the question of %s changed since its first round (%s): its looks and alpha "
            "spending were planned with the first; the false-positive guarantee holds only "
            "for a plan fixed before the first look (use another experiment name for a new "
            "question)",
            spec.study_name,
            ", ".join(changed),
        )


def _failed_chains(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The last trial of each retry chain that only failed."""
    chains: dict[int, list[FrozenTrial]] = {}
    for trial in trials:
        chains.setdefault(_origin(trial), []).append(trial)
    return [
        max(chain, key=lambda t: t.number)
        for chain in chains.values()
        if not any(t.state in ALIVE_STATES for t in chain)
    ]


def queue_grid(
    spec: ExperimentSpec,
    study: optuna.Study,
    wanted: Mapping[str, Any],
    *,
    retry_failed: bool = True,
) -> int:
    """Queue the seeds ``wanted`` (config key -> seeds) of grid configurations no trial
    covers yet; returns the trials queued or re-queued. ``retry_failed=False``: a key whose
    trial for these seeds failed for good is left alone (a worker between rounds must not
    retry a failing configuration forever; ``archbench run`` re-queues it)."""
    trials = study.get_trials(deepcopy=False)
    failed_chains = _failed_chains(trials)
    requeued, queued = _queue_grid(
        spec, study, trials, failed_chains, wanted, retry_failed=retry_failed
    )
    return requeued + queued


def _queue_grid(
    spec: ExperimentSpec,
    study: optuna.Study,
    trials: list[FrozenTrial],
    failed_chains: list[FrozenTrial],
    wanted: Mapping[str, Any] | None = None,
    *,
    retry_failed: bool = True,
) -> tuple[int, int]:
    """Queue each grid configuration no trial covers (with every seed, or its ``wanted``
    seeds: a question's round); returns (re-queued, newly queued).

    A configuration is its key: a stored one is not trained again (nor are stored seeds),
    a new or edited one is. Queued trials of configurations no longer in the grid are
    pruned (with a reason), not trained.
    """
    entries = grid_entries(spec)
    current = {entry.key for entry in entries}
    study._storage.set_study_system_attr(
        study._study_id, GRID_ATTR, {entry.key: entry.label for entry in entries}
    )
    for trial in trials:
        if trial.state == TrialState.WAITING and trial_key(trial) not in current:
            storage = study._storage
            # The reason first: Optuna refuses any update of a finished trial.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_user_attr(trial._trial_id, PRUNED_REASON_ATTR, NOT_IN_SPEC)
                storage.set_trial_state_values(trial._trial_id, TrialState.PRUNED)
    if wanted is None:
        wanted = {entry.key: list(spec.seeds) for entry in entries}
    requeued = queued = 0
    for entry in entries:
        if entry.key not in wanted:
            continue  # a question's configuration that needs no more seeds
        seeds = list(wanted[entry.key])
        mine = [t for t in trials if trial_key(t) == entry.key and trial_covers(t, seeds)]
        if any(t.state in ALIVE_STATES for t in mine):
            continue
        numbers = {t.number for t in mine}
        failed = [t for t in failed_chains if t.number in numbers]
        if failed and not retry_failed:
            continue
        if failed:
            _retry_callback()(study, copy.deepcopy(failed[-1]))
            requeued += 1
        else:
            study.enqueue_trial(
                {},
                user_attrs={CONFIG_KEY_ATTR: entry.key, "label": entry.label, SEEDS_ATTR: seeds},
            )
            queued += 1
    return requeued, queued


def seed_targets(spec: ExperimentSpec, trials: Any) -> dict[str, tuple[int, ...]]:
    """Config key -> the seeds its trials must cover for the grid to be done: every seed of
    the spec for each configuration; with a question, the seeds of the rounds queued so far
    (the union over each configuration's trials: later rounds are queued between rounds)."""
    entries = grid_entries(spec)
    if spec.question is None:
        return {entry.key: tuple(spec.seeds) for entry in entries}
    current = {entry.key for entry in entries}
    out: dict[str, set[int]] = {}
    for trial in trials:
        key = trial_key(trial)
        if key in current:
            out.setdefault(key, set()).update(trial.user_attrs.get(SEEDS_ATTR) or ())
    return {key: tuple(sorted(seeds)) for key, seeds in out.items()}


def _rekey_legacy_runs(spec: ExperimentSpec, store: Any) -> None:
    """Runs stored before configuration keys (keyed by the label's config) get their key, so
    a rerun reuses them. The study's fingerprint vouches for their dataset and budget."""

    def key_of(row: Mapping[str, Any]) -> str:
        return config_key(
            row["spec_hash"], row["recipe"] or {}, budget=spec.budget, dataset=spec.dataset
        )

    moved = store.rekey_runs(spec.name, spec.profile, key_of, keep=is_current_key)
    if moved:
        log.info("%d stored run(s) of %s got their configuration key", moved, spec.study_name)


def _queue_added_seeds(spec: ExperimentSpec, study: optuna.Study, trials: list[Any]) -> None:
    """A sampled study whose seeds grew: each finished configuration is queued again with
    its params; its stored seeds are reused, only the added ones train. The trials that
    lack a seed no longer count as done (:func:`trial_covers`)."""
    seeds = list(spec.seeds)
    names = sampled.current_names(spec, sampled.recorded(study))
    covered = {_params_of(t) for t in trials if t.state in ALIVE_STATES and trial_covers(t, seeds)}
    for trial in trials:
        if trial.state in DONE_STATES and trial.params and _params_of(trial) not in covered:
            covered.add(_params_of(trial))
            params = sampled.translate(trial.params, spec, names)
            if params is not None:  # else no longer in the space: nothing to complete
                study.enqueue_trial(params, user_attrs={SEEDS_ATTR: seeds})


def _params_of(trial: FrozenTrial | Mapping[str, Any]) -> str:
    """A trial's (or params') sampled values by base name: equal for one configuration
    whatever names its params were sampled under."""
    import json

    params = trial.params if isinstance(trial, FrozenTrial) else trial
    named = {sampled.base_name(k): v for k, v in params.items()}
    return json.dumps(named, sort_keys=True, default=str)
