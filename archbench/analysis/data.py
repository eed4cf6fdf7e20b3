"""Load one experiment's results (store rows, Optuna study, spec) and summarise configurations.

:func:`load_experiment` reads everything the plots, tables and report need once;
:func:`config_stats` turns runs into one row per configuration (variant + recipe) with the
mean, std and t-interval of a metric over seeds, a diverged seed counted at 100% error.
Which seeds each configuration is owed, and which are scored, is :mod:`.seeds`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml

from archbench.analysis.seeds import (
    DIVERGED_ERROR,
    SCORED_STATUSES,
    expected_seeds,
    seed_status,
    spec_seeds,
)
from archbench.analysis.stats import ERROR_BOUNDS, t_interval
from archbench.errors import UnknownNameError
from archbench.store.storage import ResolvedStorage, redact, resolve_storage
from archbench.units import human_count

log = logging.getLogger(__name__)

METRICS = {
    "test_err": "test error",
    "val_err": "validation error",
    "train_err": "training error",
    "test_top5_err": "test top-5 error",
}

#: The block registry's family of a block -> the role it plays in the classic figures
#: (``plain``, ``residual``, ``preact``); any other family is its own role.
ROLES = {"plain": "plain", "resnet": "residual", "preact": "preact"}

FLOP_CONVENTION = (
    "MACs are multiply-accumulates per image (batch 1, eval mode) as counted by fvcore, which "
    "calls one fused multiply-add one 'flop'; FLOPs = 2 x MACs."
)


@dataclass(frozen=True, eq=False)
class ExperimentData:
    """Everything recorded for one experiment and profile (DataFrames as the store returns
    them, plus ``group`` and ``role`` columns)."""

    experiment: str
    profile: str
    store_url: str  # redacted
    runs: pd.DataFrame  # every run, any status
    epochs: pd.DataFrame
    diagnostics: pd.DataFrame
    spec_text: str | None = None
    study: Any = None  # optuna.Study, when the storage holds it
    study_note: str = ""  # why there is no study
    spec: Mapping[str, Any] = field(default_factory=dict)  # the parsed spec_text

    @property
    def completed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "completed"]

    @property
    def scored(self) -> pd.DataFrame:
        """Completed and diverged runs, a diverged run's errors set to 100% (:func:`scored_runs`)."""
        return scored_runs(self.runs)

    @property
    def expected_seeds(self) -> tuple[int, ...]:
        """The seeds every configuration should have (:func:`expected_seeds`)."""
        return expected_seeds(self.runs, self.spec, self.profile)

    @property
    def title(self) -> str:
        return f"{self.experiment} (profile {self.profile})"


def resolve_profile(store: Any, experiment: str, profile: str | None) -> str:
    """The profile to analyse; raises naming the known experiments or profiles."""
    table = store.experiments()
    known = sorted(table["experiment"].unique().tolist())
    if experiment not in known:
        raise UnknownNameError(
            f"no runs recorded for experiment {experiment!r} in {store.url}; known "
            f"experiments: {', '.join(known) or 'none'}"
        )
    profiles = sorted(table.loc[table["experiment"] == experiment, "profile"].tolist())
    if profile is None:
        if len(profiles) > 1:
            raise UnknownNameError(
                f"experiment {experiment!r} has several profiles ({', '.join(profiles)}); "
                "pick one with --profile (their recipes differ, so they are not pooled)"
            )
        return profiles[0]
    if profile not in profiles:
        raise UnknownNameError(
            f"experiment {experiment!r} has no runs for profile {profile!r}; known profiles: "
            f"{', '.join(profiles)}"
        )
    return profile


def load_experiment(
    storage: str | Path | ResolvedStorage,
    experiment: str,
    profile: str | None = None,
    *,
    with_study: bool = True,
    all_configs: bool = False,
) -> ExperimentData:
    """Read one experiment's runs, epochs, diagnostics and (if present) its Optuna study.

    A grid study keeps the configurations of the spec it last ran (:func:`current_configs`):
    only their runs are read, under the spec's labels, unless ``all_configs`` (runs of
    removed or edited variants stay in the store)."""
    from archbench.store import ResultsStore

    resolved = storage if isinstance(storage, ResolvedStorage) else resolve_storage(storage)
    with ResultsStore(resolved, create=False) as store:
        profile = resolve_profile(store, experiment, profile)
        runs = annotate(store.runs(experiment=experiment, profile=profile))
        epochs = annotate(store.epochs(experiment=experiment, profile=profile))
        diagnostics = annotate(
            store.diagnostics(experiment=experiment, profile=profile), block_col="block_type"
        )
        study, note = (None, "not requested")
        if with_study:
            study, note = load_study(resolved, store.engine, f"{experiment}:{profile}")
        url = store.url
    spec_text = None
    if study is not None:
        # archbench.runner.study.SPEC_ATTR; older studies kept the spec in the user attrs.
        # Redacted again: a study stored by an older archbench may hold a password.
        system = study._storage.get_study_system_attrs(study._study_id)
        spec_text = redact(system.get("archbench:spec") or study.user_attrs.get("spec") or "")
        spec_text = spec_text or None
    spec: dict[str, Any] = {}
    if spec_text:
        try:
            loaded = yaml.safe_load(spec_text)
            spec = loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError as exc:
            log.warning("study %s: its 'spec' attribute is not YAML (%s)", experiment, exc)
    if study is not None:
        labels = trial_labels(study)
        runs, epochs, diagnostics = (relabel(f, labels) for f in (runs, epochs, diagnostics))
        configs = current_configs(study)
        if configs is not None:
            if not all_configs:
                runs = runs[runs["config_key"].isin(list(configs))]
                kept = set(runs["run_id"])
                epochs, diagnostics = (f[f["run_id"].isin(kept)] for f in (epochs, diagnostics))
            runs, epochs, diagnostics = (
                mark_current(f, configs) for f in (runs, epochs, diagnostics)
            )
        wanted = spec_seeds(spec, profile)
        if wanted and not all_configs:  # runs of seeds removed from the spec: not shown
            runs = runs[runs["seed"].isin(wanted)]
            kept = set(runs["run_id"])
            epochs, diagnostics = (f[f["run_id"].isin(kept)] for f in (epochs, diagnostics))
    return ExperimentData(
        experiment, profile, url, runs, epochs, diagnostics, spec_text, study, note, spec
    )


def trial_labels(study: Any) -> dict[str, str]:
    """``spec_hash -> label`` as this experiment's trials named their variants."""
    labels = {}
    for trial in study.get_trials(deepcopy=False):
        spec_hash, label = trial.user_attrs.get("spec_hash"), trial.user_attrs.get("label")
        if isinstance(spec_hash, str) and isinstance(label, str) and label:
            labels.setdefault(spec_hash, label)
    return labels


#: The study system attr where ``archbench run`` keeps ``config key -> label`` of the grid it
#: last ran (archbench.runner.study.GRID_ATTR).
GRID_ATTR = "archbench:grid"


def current_configs(study: Any) -> dict[str, str] | None:
    """``config key -> label`` of the grid the study last ran (entries that build one net
    under one recipe share a key, their labels joined by `` = ``), or ``None`` (a sampled
    study, or one run before configurations had keys: every run is current)."""
    if study is None:
        return None
    grid = study._storage.get_study_system_attrs(study._study_id).get(GRID_ATTR)
    return {str(k): str(v) for k, v in grid.items()} if isinstance(grid, Mapping) else None


NOT_IN_SPEC = " (not in the spec)"


def mark_current(frame: pd.DataFrame, configs: Mapping[str, str]) -> pd.DataFrame:
    """The current configurations under the spec's labels; any other (a removed or edited
    variant, read with ``all_configs``) marked ``(not in the spec)``."""
    if frame.empty or "config_key" not in frame.columns:
        return frame
    frame = frame.copy()
    frame["name"] = [
        configs.get(k, f"{n}{NOT_IN_SPEC}") for k, n in zip(frame["config_key"], frame["name"])
    ]
    return frame


def relabel(
    frame: pd.DataFrame, labels: Mapping[str, str], *, by: str = "spec_hash"
) -> pd.DataFrame:
    """Variant names as this experiment called them (the store keeps the first name a
    variant was recorded under, possibly by another experiment); ``by``: the column
    ``labels`` is keyed by."""
    if frame.empty or not labels or by not in frame.columns:
        return frame
    frame = frame.copy()
    frame["name"] = [labels.get(h, n) for h, n in zip(frame[by], frame["name"])]
    return frame


def load_study(resolved: ResolvedStorage, engine: sa.Engine, name: str) -> tuple[Any, str]:
    """``(study, "")`` or ``(None, why not)``; never creates Optuna tables in a reader."""
    if resolved.kind == "memory":
        return None, "in-memory storage keeps no Optuna study"
    if resolved.kind == "journal":
        assert resolved.journal_path is not None
        if not resolved.journal_path.exists():
            return None, f"no Optuna journal file at {resolved.journal_path}"
    elif "studies" not in sa.inspect(engine).get_table_names():
        return None, "the storage holds no Optuna tables"
    import optuna

    from archbench.store.storage import StorageError, optuna_storage

    try:
        storage = optuna_storage(resolved)
        names = optuna.get_all_study_names(storage)
        if name not in names:
            return None, f"no Optuna study named {name!r} (found: {', '.join(names) or 'none'})"
        return optuna.load_study(study_name=name, storage=storage), ""
    except StorageError:
        raise  # a damaged journal line: one line and exit 2, as for every command
    except Exception as exc:  # a damaged or foreign Optuna schema must not stop the report
        log.warning("cannot open Optuna study %s: %s", name, exc)
        return None, f"cannot open the Optuna study ({type(exc).__name__}: {exc})"


def annotate(frame: pd.DataFrame, block_col: str = "block") -> pd.DataFrame:
    """Add ``group`` (the family, split by block type where a family used several) and
    ``role`` columns.

    The role comes from the ``block_family`` the store recorded with each variant, so that
    reading results never imports the block registry (and with it torch).
    """
    frame = frame.copy()
    if frame.empty:
        frame["group"] = pd.Series(dtype=object)
        frame["role"] = pd.Series(dtype=object)
        return frame
    blocks_per_family = frame.groupby("family")[block_col].nunique()
    split = set(blocks_per_family[blocks_per_family > 1].index)
    frame["group"] = [
        f"{fam}:{blk}" if fam in split else fam
        for fam, blk in zip(frame["family"], frame[block_col])
    ]
    frame["role"] = [ROLES.get(bfam, bfam) for bfam in frame["block_family"]]
    return frame


def scored_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs every statistic counts: completed ones as recorded, diverged ones with each
    error metric set to :data:`DIVERGED_ERROR` (their recorded numbers are those of the last
    epoch before the blow-up, or none)."""
    out = runs[runs["status"].isin(SCORED_STATUSES)].copy()
    diverged = out["status"] == "diverged"
    for metric in METRICS:
        if metric in out.columns:
            out[metric] = out[metric].astype(float)
            out.loc[diverged, metric] = DIVERGED_ERROR
    return out


CONFIG_COLUMNS = (
    "config_key",
    "label",
    "name",
    "group",
    "role",
    "family",
    "block",
    "depth",
    "width",
    "params",
    "macs",
    "flops",
    "budget_metric",
    "budget_target",
    "budget_error",
    "recipe",
    "hyperparameters",
)


def config_stats(
    runs: pd.DataFrame,
    metric: str = "test_err",
    level: float = 0.95,
    seeds: tuple[int, ...] | Mapping[str, tuple[int, ...]] | None = None,
) -> pd.DataFrame:
    """One row per configuration: metric mean/std/t-interval (clipped to 0..1) over its
    scored seeds: completed runs, and diverged ones at 100% error (:func:`scored_runs`).

    Also ``val_mean`` (for model selection, scored the same way), ``seeds`` (scored, sorted),
    ``epochs``, counts of runs that diverged, were pruned or failed, ``complete`` (every seed
    in ``seeds`` (default: :func:`expected_seeds` of ``runs``; a mapping: per configuration
    key, as a question's rounds owe them) has a scored run) and ``note``
    (what is diverged, failed, pruned or missing). ``label`` is the variant name, made unique
    with the differing hyperparameters when one variant ran with several recipes.
    """
    if metric not in METRICS:
        raise UnknownNameError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    wanted = expected_seeds(runs) if seeds is None else seeds
    rows = []
    for key, group in runs.groupby("config_key", sort=False):
        first = group.iloc[0]
        done = scored_runs(group)
        values = done[metric].astype(float)
        summary = t_interval(values.tolist(), level, bounds=ERROR_BOUNDS)  # errors: 0..1
        val = done["val_err"].astype(float).dropna()
        row = {c: first[c] for c in CONFIG_COLUMNS if c not in ("config_key", "label")}
        epochs_done = done.loc[done["status"] == "completed", "epochs_done"].dropna()
        owed = wanted.get(str(key), ()) if isinstance(wanted, Mapping) else tuple(wanted)
        complete, note = seed_status(group, owed)
        row.update(
            config_key=key,
            n_runs=len(group),
            n=summary.n,
            seeds=tuple(sorted(int(s) for s in done.loc[values.notna(), "seed"])),
            mean=summary.mean,
            std=summary.std,
            ci_low=summary.ci_low,
            ci_high=summary.ci_high,
            val_mean=float(val.mean()) if len(val) else float("nan"),
            epochs=int(epochs_done.max()) if len(epochs_done) else None,
            **{
                f"n_{s}": int((group["status"] == s).sum())
                for s in ("diverged", "pruned", "failed")
            },
            complete=complete,
            note=note,
        )
        rows.append(row)
    columns = [
        *CONFIG_COLUMNS,
        "n_runs",
        "n",
        "seeds",
        "mean",
        "std",
        "ci_low",
        "ci_high",
        "val_mean",
        "epochs",
        "n_diverged",
        "n_pruned",
        "n_failed",
        "complete",
        "note",
    ]
    table = pd.DataFrame(rows, columns=[c for c in columns if c != "label"])
    table.insert(1, "label", unique_labels(table))
    return table.sort_values(["group", "depth", "width", "label"]).reset_index(drop=True)


def unique_labels(table: pd.DataFrame) -> list[str]:
    """Each row's variant ``name``, made unique where several configurations share it (a
    search that sampled one architecture with several recipes) by the hyperparameters that
    differ between them, floats to 3 significant digits: ``resnet14 [lr=0.0846,weight_decay=0.000282]``."""
    names = table["name"].astype(str).tolist()
    hps = [dict(hp) if isinstance(hp, Mapping) else {} for hp in table["hyperparameters"]]
    rows_of: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        rows_of.setdefault(name, []).append(i)
    out = []
    for i, name in enumerate(names):
        same = rows_of[name]
        label = name
        if len(same) > 1:
            keys = sorted({k for j in same for k in hps[j]} - {"config"})
            differing = [
                k
                for k in keys
                if not isinstance(hps[i].get(k), (dict, list))
                and len({_short(hps[j].get(k)) for j in same}) > 1
            ]
            extra = ",".join(f"{k.split('.')[-1]}={_short(hps[i].get(k))}" for k in differing)
            label = f"{name} [{extra}]" if extra else name
        out.append(label)
    # Still ambiguous (same name and hyperparameters: the recipe itself differs).
    counts: dict[str, int] = {}
    final = []
    for label in out:
        counts[label] = counts.get(label, 0) + 1
        final.append(label if counts[label] == 1 else f"{label} #{counts[label]}")
    return final


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def select_best(table: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """One configuration per ``keys`` cell: the lowest mean *validation* error (model selection
    never looks at the test set; a diverged seed counts at 100%), complete configurations first. Returns the table and a note per cell that had several."""
    notes = []
    picked = []
    for _cell, group in table.groupby(keys, dropna=False, sort=False):
        if len(group) == 1:
            picked.append(group.index[0])
            continue
        # A configuration lacking seeds is chosen only when no complete one is in the cell.
        incomplete = ~group["complete"] if "complete" in group else False
        order = group["val_mean"].fillna(np.inf) + np.where(incomplete, np.inf, 0.0)
        order = order.sort_values(kind="stable")
        best = order.index[0]
        picked.append(best)
        notes.append(
            f"{group.loc[best, 'label']}: best of {len(group)} recipes by validation error"
        )
    return table.loc[sorted(picked)], notes


def fixed_quantity(row: Mapping[str, Any]) -> str:
    """What a depth sweep holds fixed: the budget when the variant was solved to one, else
    its width."""
    if isinstance(row.get("budget_metric"), str) and pd.notna(row.get("budget_target")):
        return f"{format_count(row['budget_target'])} {row['budget_metric']}"
    return f"width {row['width']:g}"


def format_count(value: float) -> str:
    """1234567 -> '1.23M'; 75000 -> '75K' (counts, not bytes): :func:`archbench.units.human_count`
    with trailing zeros trimmed, the style of budget targets and count axes."""
    return human_count(float(value), trim=True)
