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
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from archbench.errors import ArchbenchError, SpecError
from archbench.spec import ExperimentSpec, config_key, dataset_shape
from archbench.variants import ResolvedVariant, resolve

log = logging.getLogger(__name__)

DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
ALIVE_STATES = (*DONE_STATES, TrialState.RUNNING, TrialState.WAITING)
HEARTBEAT_ATTR = "archbench_heartbeat"  # journal storage: seconds since the epoch
FINGERPRINT_ATTR = "fingerprint"
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial


@dataclass(frozen=True)
class RunnerOptions:
    """How (not what) to run: these never change results, so they are not in the spec."""

    storage: str | None = None  # overrides the spec's storage
    results_dir: str | None = None  # checkpoints; default: beside a SQLite file, else results/
    device: str = "auto"
    heartbeat_interval: int = 30  # seconds; a worker silent for grace_period is stale
    grace_period: int = 90
    max_retry: int = 3
    keep_checkpoints: bool = False
    progress: bool | None = None  # None: progress bars on a terminal only
    threads: int | None = None  # torch CPU threads per worker; None: see set_worker_threads


# -- storage ----------------------------------------------------------------------------------


def _retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    # Intermediate values come along, so a pruner judges a retried trial by its whole curve.
    return optuna.storages.RetryHeartbeatStaleTrialCallback(
        max_retry=None, inherit_intermediate_values=True
    )


def open_storage(spec: ExperimentSpec, options: RunnerOptions) -> tuple[Any, Any]:
    """(Optuna storage, ResultsStore) for the spec, sharing one database where possible."""
    from archbench.storage import optuna_storage, resolve_storage
    from archbench.store import ResultsStore

    resolved = resolve_storage(options.storage or spec.storage)
    store = ResultsStore(resolved.store_url)
    heartbeat: dict[str, Any] = {}
    if resolved.kind in ("sqlite", "postgresql", "other"):
        heartbeat = {
            "heartbeat_interval": options.heartbeat_interval,
            "grace_period": options.grace_period,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=options.max_retry, inherit_intermediate_values=True
            ),
        }
    storage = optuna_storage(resolved, **heartbeat)
    if resolved.kind == "sqlite":
        _serialize_sqlite_transactions(storage)
    return storage, store


def _serialize_sqlite_transactions(storage: Any) -> None:
    """Make every Optuna transaction on a SQLite file take the write lock up front.

    Optuna pops a queued trial with a read-check-update (``SELECT ... FOR UPDATE`` on
    PostgreSQL); SQLite ignores FOR UPDATE, so two worker processes could both see the trial
    WAITING and both run it. ``BEGIN IMMEDIATE`` makes the sequence atomic: the second worker
    waits (busy timeout), then sees it RUNNING and takes the next one.
    """
    from sqlalchemy import event

    engine = getattr(storage, "engine", None)
    if engine is None or getattr(engine, "_archbench_serialized", False):
        return

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        # WAL + NORMAL survives a killed process (only an OS crash can lose the last
        # commits); FULL would fsync every trial attribute.
        dbapi_conn.execute("PRAGMA synchronous = NORMAL")

    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    engine._archbench_serialized = True
    engine.dispose()  # connections made before the listeners reconnect with them


def results_dir(spec: ExperimentSpec, options: RunnerOptions) -> Path:
    if options.results_dir:
        return Path(options.results_dir)
    storage = options.storage or spec.storage
    if "://" not in storage and not storage.startswith(("journal:", ":memory:")):
        return Path(storage).expanduser().resolve().parent
    if storage.startswith("journal:"):
        return Path(storage.removeprefix("journal:")).expanduser().resolve().parent
    return Path("results").resolve()


def make_sampler(spec: ExperimentSpec) -> optuna.samplers.BaseSampler:
    seed = spec.sampler.seed
    name = spec.sampler.name
    if name in ("grid", "random"):
        # A grid study enqueues every configuration (prepare_study), in the spec's order:
        # workers pop them one at a time, so no two workers ever get the same one and the
        # sampler is never asked. (Optuna's GridSampler shuffles the grid and, with several
        # workers, can hand out a point twice.)
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


def make_pruner(spec: ExperimentSpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs
        )
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.recipe.epochs)
    return optuna.pruners.NopPruner()


def grid_labels(spec: ExperimentSpec) -> list[str]:
    """One readable, unique label per grid configuration (the study's ``config`` param)."""
    labels = []
    for config in spec.grid():
        extra = ",".join(f"{k}={v}" for k, v in sorted(config["recipe"].items()))
        labels.append(f"{config['label']}|{extra}" if extra else config["label"])
    return labels


def fingerprint(spec: ExperimentSpec) -> dict[str, Any]:
    """The parts of a spec that results depend on; a study keeps the one it was made with."""
    return {
        "dataset": dataclasses.asdict(spec.dataset),
        "recipe": spec.recipe.to_dict(),
        "budget": dataclasses.asdict(spec.budget) if spec.budget else None,
        "objectives": list(spec.objectives),
        "seeds": list(spec.seeds),
    }


def create_study(spec: ExperimentSpec, storage: Any) -> optuna.Study:
    """Create the study, or load it to continue (same name and storage).

    Raises :class:`SpecError` when the stored study was made from a spec whose dataset,
    recipe, budget, objectives or seeds differ: its results would not be comparable. Variants,
    the search space, the sampler and the number of trials may change between runs.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study_name,
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
        directions=spec.directions,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != spec.directions:
        raise SpecError(
            f"study {spec.study_name!r} in this storage has objectives with directions "
            f"{[d.name.lower() for d in study.directions]}, the spec asks for "
            f"{spec.directions}; use another experiment name, profile or storage"
        )
    wanted = fingerprint(spec)
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        study.set_user_attr("experiment", spec.name)
        study.set_user_attr("profile", spec.profile)
        study.set_user_attr("spec", spec.source)
        study.set_user_attr(FINGERPRINT_ATTR, wanted)
    elif stored != wanted:
        changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
        raise SpecError(
            f"study {spec.study_name!r} in this storage was run with another {', '.join(changed)}"
            "; its results would not be comparable. Use another experiment name, profile or "
            "storage (or delete the study: optuna delete-study)"
        )
    return study


def _fixed_params(spec: ExperimentSpec, baseline: Any) -> dict[str, Any]:
    """Optuna params that make the define-by-run space produce ``baseline``."""
    from archbench.presets import get_family

    assert spec.space is not None
    fam = baseline.family
    if fam not in spec.space.families:
        raise SpecError(
            f"baseline {baseline.display!r}: family {fam!r} is not in the space "
            f"{list(spec.space.families)}"
        )
    depth = baseline.depth or get_family(fam).default_depth
    params = {"family": fam, f"{fam}.depth": depth}
    if fam in spec.space.width:
        if baseline.width is None:
            raise SpecError(
                f"baseline {baseline.display!r}: the space samples {fam} widths; give 'width'"
            )
        params[f"{fam}.width"] = baseline.width
    pspace = spec.space.params.get(fam, {})
    extra = sorted(set(baseline.params) - set(pspace))
    if extra:
        raise SpecError(
            f"baseline {baseline.display!r}: params {extra} are not in the space's "
            f"params for {fam} ({sorted(pspace) or 'none'})"
        )
    missing = sorted(set(pspace) - set(baseline.params))
    if missing:
        raise SpecError(
            f"baseline {baseline.display!r}: the space samples {fam} params {missing}; give them"
        )
    params.update({f"{fam}.{k}": v for k, v in baseline.params.items()})
    # A baseline trains with the spec's own recipe where the space allows it.
    for key, dist in spec.space.recipe.items():
        value = getattr(spec.recipe, key)
        if dist.choices is not None:
            if value in dist.choices:
                params[f"recipe.{key}"] = value
        elif dist.low <= value <= dist.high and (
            dist.step is None or float(value - dist.low) / dist.step % 1 == 0
        ):
            params[f"recipe.{key}"] = value
    return params


def _origin(trial: FrozenTrial) -> int:
    """The number of the first trial of a retry chain (Optuna's ``failed_trial`` attribute)."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def trial_config(trial: FrozenTrial) -> str | None:
    """The grid label of a trial, also before it suggested it (a queued or just popped one)."""
    label = trial.params.get("config")
    if label is None:
        label = trial.system_attrs.get("fixed_params", {}).get("config")
    return label


def prepare_study(spec: ExperimentSpec, options: RunnerOptions) -> tuple[optuna.Study, int]:
    """Create or load the study and queue what is to be run; returns (study, re-queued).

    A grid study gets one queued trial per configuration not yet done, running or queued, in
    the spec's order. A sampled study gets its baselines. Either gets its interrupted trials
    back: those whose retry chain only failed (Ctrl-C, an error, stale retries exhausted).
    Call once per ``archbench run``, not in every worker: two workers would queue twice.
    """
    storage, store = open_storage(spec, options)
    store.close()  # only the Optuna side is needed here
    study = create_study(spec, storage)
    trials = study.get_trials(deepcopy=False)
    chains: dict[int, list[FrozenTrial]] = {}
    for trial in trials:
        chains.setdefault(_origin(trial), []).append(trial)
    failed_chains = [
        max(chain, key=lambda t: t.number)
        for chain in chains.values()
        if not any(t.state in ALIVE_STATES for t in chain)
    ]
    requeued = 0
    if spec.sampler.name == "grid":
        covered = {trial_config(t) for t in trials if t.state in ALIVE_STATES}
        failed = {trial_config(t): t for t in failed_chains}
        for label in grid_labels(spec):
            if label in covered:
                continue
            if label in failed:
                _retry_callback()(study, copy.deepcopy(failed[label]))
                requeued += 1
            else:
                study.enqueue_trial({"config": label})
    else:
        for baseline in spec.baselines:
            study.enqueue_trial(_fixed_params(spec, baseline), skip_if_exists=True)
        for trial in failed_chains:
            _retry_callback()(study, copy.deepcopy(trial))
            requeued += 1
    if requeued:
        log.info("re-queued %d interrupted trial(s) of %s", requeued, spec.study_name)
    return study, requeued


# -- the objective ----------------------------------------------------------------------------


def suggest_config(spec: ExperimentSpec, trial: optuna.Trial) -> dict[str, Any]:
    """The trial's configuration: a grid entry, or sampled define-by-run from the space."""
    if spec.sampler.name == "grid":
        labels = grid_labels(spec)
        label = trial.suggest_categorical("config", labels)
        if label not in labels:  # queued by an earlier version of the spec
            raise SpecError(f"configuration {label!r} is no longer in the spec's grid")
        return spec.grid()[labels.index(label)]
    assert spec.space is not None
    space = spec.space
    fam = trial.suggest_categorical("family", list(space.families))

    def suggest(name: str, dist: Any) -> Any:
        if dist.choices is not None:
            return trial.suggest_categorical(name, list(dist.choices))
        if dist.is_int:
            return trial.suggest_int(
                name, int(dist.low), int(dist.high), step=int(dist.step or 1), log=dist.log
            )
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)

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


def _checkpoint_epoch(ckpt_dir: Path) -> int | None:
    """The epoch a run's last checkpoint finished, or ``None`` without a readable one."""
    from archbench.checkpoint import LAST, CheckpointError, load_checkpoint

    path = ckpt_dir / LAST
    if not path.exists():
        return None
    try:
        return int(load_checkpoint(path)["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def _remove_checkpoint(ckpt_dir: Path) -> None:
    # Only the file, then empty folders: a duplicate trial of the same run (two workers on
    # one grid point) may be writing into this folder right now.
    from archbench.checkpoint import LAST

    (ckpt_dir / LAST).unlink(missing_ok=True)
    for folder in (ckpt_dir, ckpt_dir.parent, ckpt_dir.parent.parent):
        with contextlib.suppress(OSError):
            folder.rmdir()


class _AttrHeartbeat:
    """Heartbeats for storages without Optuna's own (journal files): a thread refreshes a
    system attribute of the running trial every ``interval`` seconds."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: float) -> None:
        self.storage = study._storage
        self.trial_id = trial._trial_id
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="archbench-heartbeat")

    def _beat(self) -> None:
        while True:
            try:
                self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, time.time())
            except Exception as exc:  # a finished trial, a busy file: try again next time
                log.debug("heartbeat of trial %d failed: %s", self.trial_id, exc)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> _AttrHeartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _native_heartbeat(study: optuna.Study) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def _needs_attr_heartbeat(study: optuna.Study) -> bool:
    from optuna.storages import JournalStorage

    return isinstance(study._storage, JournalStorage)


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
        self.spec = spec
        self.store = store
        self.options = options
        self.on_event = on_event or (lambda message: None)
        self.shape = dataset_shape(spec)
        self._data: Any = None
        self._variants: dict[str, ResolvedVariant] = {}
        self.checkpoints = (
            results_dir(spec, options) / "checkpoints" / spec.study_name.replace(":", "-")
        )

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
        from archbench.complexity import analytic

        # The solver's own spec (before the label became its name) hits the count cache.
        return analytic(variant.budget.spec if variant.budget else variant.spec)

    def resolve(self, config: dict[str, Any]) -> ResolvedVariant:
        """The budget-matched variant of ``config`` (cached: solving a budget takes counts)."""
        import json

        key = json.dumps(
            {k: config.get(k) for k in ("preset", "family", "depth", "width", "params")},
            sort_keys=True,
            default=str,
        )
        if key not in self._variants:
            self._variants[key] = resolve(config, self.shape, self.spec.budget)
        variant = self._variants[key]
        return replace(variant, label=config["label"], config=config)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        beat: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if _needs_attr_heartbeat(trial.study):
            beat = _AttrHeartbeat(trial.study, trial, self.options.heartbeat_interval)
        with beat:
            return self._run(trial)

    def _run(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        from archbench.device import environment_info, seed_everything, select_device
        from archbench.net import build_net
        from archbench.train import train

        spec = self.spec
        config = suggest_config(spec, trial)
        variant = self.resolve(config)
        recipe = replace(spec.recipe, **config["recipe"]) if config["recipe"] else spec.recipe
        recipe.validate()
        cost = self.complexity(variant)
        spec_hash = self.store.record_variant(
            variant.spec,
            family=variant.family or config["preset"],
            complexity=cost,
            budget=_budget_dict(variant),
            depth=config.get("depth"),
            width=variant.budget.width if variant.budget else config.get("width"),
            name=variant.label,
        )
        ckey = config_key(config, recipe, budget=spec.budget, dataset=spec.dataset)
        for key, value in {
            "label": variant.label,
            "spec_hash": spec_hash,
            "config_key": ckey,
            "params": cost.params,
            "macs": cost.macs,
            "budget_error": variant.budget.rel_error if variant.budget else None,
            "worker": WORKER_ID,
        }.items():
            trial.set_user_attr(key, value)

        device = select_device(self.options.device)
        data = self.data
        accs: list[float] = []
        run_ids: list[int] = []
        for i, seed in enumerate(spec.seeds):
            ckpt = self.checkpoints / ckey / f"seed{seed}"
            resumed = _checkpoint_epoch(ckpt)
            env = environment_info(device)
            env["resumed_after_epoch"] = resumed or 0
            env["worker"] = WORKER_ID
            run_id = self.store.start_run(
                experiment=spec.name,
                profile=spec.profile,
                study_name=spec.study_name,
                trial_number=trial.number,
                spec_hash=spec_hash,
                seed=seed,
                config_key=ckey,
                hyperparameters=dict(trial.params),
                recipe=recipe.to_dict(),
                device=str(device),
                env=env,
            )
            run_ids.append(run_id)
            previous = self.store.run(run_id)
            if previous is not None and previous.get("status") == "completed":
                # Finished before this worker (or an earlier attempt of the trial) died.
                done_err = previous.get("val_err")
                accs.append(0.0 if done_err is None else 1.0 - done_err)
                continue
            where = f" (resuming after epoch {resumed})" if resumed else ""
            self.on_event(
                f"trial {trial.number}: {variant.label} seed {seed} (run {run_id}){where}"
            )
            seed_everything(seed)
            net = build_net(variant.spec)
            # Prune on the first seed's curve (later seeds only run if it survives). Optuna
            # takes no intermediate values from multi-objective trials.
            report = i == 0 and len(spec.objectives) == 1

            def on_epoch_end(
                metrics: Any, diagnostics: list[Any], run_id: int = run_id, report: bool = report
            ) -> bool:
                self.store.record_epoch(run_id, metrics)  # also the run's heartbeat
                if diagnostics:
                    self.store.record_diagnostics(run_id, diagnostics)
                if report and metrics.val_err is not None:
                    trial.report(1.0 - metrics.val_err, metrics.epoch)
                    return trial.should_prune()
                return False

            try:
                result = train(
                    net,
                    data,
                    recipe,
                    seed=seed,
                    device=device,
                    checkpoint_dir=ckpt,
                    resume=True,
                    on_epoch_end=on_epoch_end,
                    progress=self.options.progress,
                )
            except BaseException:
                # An error or Ctrl-C: say so in the store (a rerun resumes the checkpoint).
                # A killed process never gets here: its run turns stale instead.
                with contextlib.suppress(Exception):
                    self.store.finish_run(run_id, status="failed")
                raise
            final = result.final
            # A worker killed between the trainer's checkpoint and the epoch callback resumes
            # after an epoch the store never got: record them all again (an upsert).
            for metrics in result.epochs:
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
                trial.set_user_attr("run_ids", run_ids)
                raise optuna.TrialPruned()
            if result.status == "diverged" or final is None or final.val_err is None:
                trial.set_user_attr("diverged", True)
                accs.append(0.0)  # worst possible accuracy: the study goes on
            else:
                accs.append(1.0 - final.val_err)
        acc = sum(accs) / len(accs)
        trial.set_user_attr("val_acc_per_seed", accs)
        trial.set_user_attr("run_ids", run_ids)
        values: list[float] = [acc]
        for objective in spec.objectives[1:]:
            values.append(float(getattr(cost, objective)))
        return values[0] if len(values) == 1 else tuple(values)


def _budget_dict(variant: ResolvedVariant) -> dict[str, Any] | None:
    m = variant.budget
    if m is None:
        return None
    return {"metric": m.metric, "target": m.target, "tolerance": m.tolerance, "error": m.rel_error}


# -- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a study stands. ``done`` counts distinct configurations for a grid (a duplicate,
    e.g. two ``archbench run`` on one storage, counts once), finished trials otherwise."""

    total: int
    done: int
    running: int
    waiting: int
    can_start: bool  # a worker has something to do now
    missing: tuple[str, ...] = ()  # grid labels neither done, running nor queued

    @property
    def complete(self) -> bool:
        return self.done >= self.total


def study_progress(spec: ExperimentSpec, trials: Sequence[FrozenTrial]) -> Progress:
    total = spec.n_trials()
    by_state: dict[TrialState, list[FrozenTrial]] = {}
    for t in trials:
        by_state.setdefault(t.state, []).append(t)
    running = len(by_state.get(TrialState.RUNNING, []))
    waiting = len(by_state.get(TrialState.WAITING, []))
    finished = [t for s in DONE_STATES for t in by_state.get(s, [])]
    if spec.sampler.name != "grid":
        done = len(finished)
        can_start = waiting > 0 or done + running + waiting < total
        return Progress(total, done, running, waiting, can_start)
    labels = grid_labels(spec)
    done_labels = {trial_config(t) for t in finished} & set(labels)
    busy = {
        trial_config(t)
        for s in (TrialState.RUNNING, TrialState.WAITING)
        for t in by_state.get(s, [])
    }
    missing = tuple(label for label in labels if label not in done_labels | busy)
    # Grid configurations are all queued up front: a worker only ever pops a queued one.
    return Progress(total, len(done_labels), running, waiting, waiting > 0, missing)


def fail_stale_trials(study: optuna.Study, options: RunnerOptions) -> int:
    """Fail (and re-queue) trials whose worker stopped sending heartbeats; returns how many.

    RDB storages use Optuna's own mechanism; journal storage our heartbeat attribute.
    """
    if _native_heartbeat(study):
        before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        optuna.storages.fail_stale_trials(study)
        return len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) - before
    if not _needs_attr_heartbeat(study):
        return 0  # in-memory: one process, nothing can die without us
    now = time.time()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.system_attrs.get(HEARTBEAT_ATTR)
        if beat is None and trial.datetime_start is not None:
            start = trial.datetime_start
            if start.tzinfo is None:
                start = start.astimezone(timezone.utc)
            beat = start.timestamp()
        if beat is None or now - float(beat) <= options.grace_period:
            continue
        try:
            changed = study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        if changed:
            failed += 1
            stale = study._storage.get_trial(trial._trial_id)
            retries = len(stale.system_attrs.get("retry_history", []))
            if retries < options.max_retry:
                _retry_callback()(study, copy.deepcopy(stale))
    return failed


# -- running ----------------------------------------------------------------------------------


def run_worker(
    spec: ExperimentSpec,
    options: RunnerOptions,
    *,
    on_event: Callable[[str], None] | None = None,
    objective: Objective | None = None,
) -> optuna.Study:
    """Work on the study until it has its number of finished trials.

    Safe to run in several processes at once and to rerun after a crash: finished trials
    count, stale ones are retried, and runs resume from their checkpoints. A worker starts a
    trial only when there is one to start (a queued retry, an unstarted grid point, or fewer
    trials than asked for); otherwise it waits for the running ones, so two workers do not
    train the same grid point at the end of a study.
    """
    storage, store = open_storage(spec, options)
    try:
        study = create_study(spec, storage)
        return _work(
            spec,
            options,
            study,
            objective or Objective(spec, store, options, on_event=on_event),
            on_event,
        )
    finally:
        store.close()


def _work(
    spec: ExperimentSpec,
    options: RunnerOptions,
    study: optuna.Study,
    objective: Objective,
    on_event: Callable[[str], None] | None,
) -> optuna.Study:
    say = on_event or (lambda message: None)

    def announce(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_event is None:
            return
        label = trial.user_attrs.get("label", trial.params)
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        value = f" val_acc {trial.values[0]:.4f}" if trial.values else ""
        reason = trial.system_attrs.get("fail_reason")
        why = f" [{reason.splitlines()[0][:200]}]" if reason else ""
        progress = study_progress(spec, study.get_trials(deepcopy=False))
        on_event(
            f"trial {trial.number} {trial.state.name.lower()}: {label}{value}{why} "
            f"({seconds:.1f} s; {progress.done}/{progress.total} done)"
        )

    failures = 0
    waited = False
    while True:
        # (Optuna fails stale trials itself before each trial it starts; we check here only
        # when there is nothing to start.)
        progress = study_progress(spec, study.get_trials(deepcopy=False))
        if progress.complete:
            break
        if progress.can_start:
            waited = False
            before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
            study.optimize(
                objective,
                n_trials=1,
                callbacks=[announce],
                catch=(ArchbenchError,),  # a configuration that cannot run fails alone
                gc_after_trial=False,  # a full gc.collect with torch loaded: ~0.25 s a trial
            )
            if len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) > before:
                failures += 1
                if failures > max(progress.total, 3):
                    log.error("%d trials failed in this worker; stopping it", failures)
                    break
            continue
        if progress.running:
            if fail_stale_trials(study, options):
                continue  # their retries are queued now
            if not waited:
                say(
                    f"waiting for {progress.running} running trial(s) (another worker, or a "
                    "dead one that will be retried once its heartbeat is stale)"
                )
                waited = True
            time.sleep(min(options.heartbeat_interval, 2))
            continue
        break  # nothing running, nothing to start: what is left failed for good
    if progress.missing:
        log.warning(
            "%d configuration(s) failed and were not retried: %s (rerun to retry them)",
            len(progress.missing),
            ", ".join(progress.missing),
        )
    return study


def worker_threads(workers: int, threads: int | None = None) -> int:
    """Torch CPU threads per worker: ``threads``, else ``OMP_NUM_THREADS``, else the idle cores
    shared among the workers.

    Idle cores are the usable cores minus the processes running elsewhere right now: OpenMP
    threads that share a core with another busy process wait at every barrier, and a small
    net then trains tens of times slower with 2 threads than with 1.
    """
    if threads is not None:
        if isinstance(threads, bool) or threads < 1:
            raise SpecError(f"threads must be >= 1, got {threads}")
        return threads
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    free = max(1, cores - _busy_cores())
    return max(1, free // max(1, workers))


def _busy_cores() -> int:
    """Runnable processes besides this one (median of a few looks at /proc/loadavg), or the
    1-minute load average where there is no /proc."""
    samples = []
    for i in range(5):
        try:
            fields = Path("/proc/loadavg").read_text().split()
            samples.append(max(0, int(fields[3].split("/")[0]) - 1))
        except (OSError, IndexError, ValueError):
            break
        if i < 4:
            time.sleep(0.02)
    if samples:
        return sorted(samples)[len(samples) // 2]
    try:
        return round(os.getloadavg()[0])
    except OSError:
        return 0


def set_worker_threads(workers: int, threads: int | None = None) -> int:
    """Apply :func:`worker_threads` to torch in this process; returns the count."""
    import torch

    count = worker_threads(workers, threads)
    torch.set_num_threads(count)
    return count
