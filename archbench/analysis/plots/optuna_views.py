"""Optuna's own views of the experiment's study (``optuna.visualization.matplotlib``).

Those functions draw through pyplot and switch the global style to ggplot; here they run
inside ``rc_context`` (style restored afterwards), with Optuna's ExperimentalWarning and its
INFO logging silenced, and each figure is detached from pyplot at once.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from archbench.analysis.data import ExperimentData
from archbench.analysis.plots import PlotOptions, PlotSkipped, register_plot

log = logging.getLogger(__name__)

OBJECTIVE_NAMES = {
    "val_acc": "validation accuracy (fraction)",
    "params": "parameters (count)",
    "macs": "MACs per image",
}


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna
    from optuna.exceptions import ExperimentalWarning

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings(), mpl.rc_context():
            warnings.simplefilter("ignore", ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _draw(
    fn: Callable[..., Any], *args: Any, size: tuple[float, float] = (7.0, 4.4), **kwargs: Any
) -> Figure:
    import matplotlib.pyplot as plt

    with _quiet_optuna():
        ax = fn(*args, **kwargs)
        fig = ax.figure
        plt.close(fig)  # detach from pyplot: the figure stays usable, nothing leaks
        fig.set_size_inches(*size)
        fig.set_dpi(mpl.rcParams["savefig.dpi"])
        fig.tight_layout()
    return fig


def _study(data: ExperimentData) -> Any:
    if data.study is None:
        raise PlotSkipped(f"no Optuna study: {data.study_note}")
    from optuna.trial import TrialState

    done = data.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        raise PlotSkipped(f"the study has {len(done)} completed trial(s); needs two or more")
    return data.study


def _objective_names(data: ExperimentData, n: int) -> list[str]:
    names = list(data.spec.get("objectives") or [])
    if len(names) != n:
        names = ["val_acc"] + [f"objective {i}" for i in range(1, n)]
    return [OBJECTIVE_NAMES.get(name, str(name)) for name in names]


@register_plot(
    "optuna-history",
    "Optimisation history (Optuna)",
    "Each trial's objective (mean validation accuracy over seeds) in trial order, with the "
    "best so far: whether the search still improves.",
    order=110,
)
def plot_history(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    import optuna.visualization.matplotlib as ovm

    study = _study(data)
    name = _objective_names(data, len(study.directions))[0]
    kwargs: dict[str, Any] = {"target_name": name}
    if len(study.directions) > 1:
        kwargs["target"] = lambda t: t.values[0]
    fig = _draw(ovm.plot_optimization_history, study, **kwargs)
    ax = fig.axes[0]
    if "target" in kwargs:  # Optuna draws no best-so-far line for a chosen target
        from optuna.study import StudyDirection
        from optuna.trial import TrialState

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done = sorted(done, key=lambda t: t.number)
        values = [t.values[0] for t in done]
        best = np.maximum if study.directions[0] == StudyDirection.MAXIMIZE else np.minimum
        ax.plot(
            [t.number for t in done], best.accumulate(values), color="tab:red", label="best so far"
        )
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel("trial number")
    ax.set_ylabel(name)
    ax.set_title(f"Optimisation history of {study.study_name} (objective: mean over seeds)")
    fig.tight_layout()
    return fig, []


def importance_frame(data: ExperimentData) -> pd.DataFrame:
    """One row per completed trial: the architecture (family, depth, width from the stored
    variant), the non-architecture params (recipe.* and family params, family prefix
    removed) and the first objective."""
    from optuna.trial import TrialState

    from archbench.runner.sampled import base_name

    study = _study(data)
    variants = data.runs.drop_duplicates("spec_hash").set_index("spec_hash")
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row: dict[str, Any] = {}
        spec_hash = trial.user_attrs.get("spec_hash")
        if spec_hash in variants.index:
            v = variants.loc[spec_hash]
            row.update(family=v["family"], depth=int(v["depth"]), width=float(v["width"]))
        # By the space's names: a grown choice set samples ``family~<hash>`` (runner.sampled).
        params = {base_name(k): v for k, v in trial.params.items()}
        family = params.get("family", row.get("family"))
        for key, value in params.items():
            if key in ("config", "family"):
                continue
            if family and key.startswith(f"{family}."):
                key = key[len(family) + 1 :]
            row.setdefault(key, value)
        row["objective"] = trial.values[0]
        rows.append(row)
    frame = pd.DataFrame(rows)
    varying = [c for c in frame.columns if c != "objective" and frame[c].nunique() > 1]
    complete = frame[varying].notna().all(axis=1)
    return frame.loc[complete, [*varying, "objective"]]


@register_plot(
    "optuna-importance",
    "Parameter importances (Optuna, fANOVA)",
    "How much of the objective's variance each choice explains (fANOVA, seeded), over the "
    "family, depth and width of the stored variants and the sampled recipe parameters.",
    order=120,
)
def plot_importance(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    import optuna
    import optuna.visualization.matplotlib as ovm
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    frame = importance_frame(data)
    features = [c for c in frame.columns if c != "objective"]
    if len(features) < 2 or len(frame) < 4:
        raise PlotSkipped(
            f"needs two or more varying parameters over four or more trials (have "
            f"{', '.join(features) or 'none'} over {len(frame)} trials)"
        )
    keys = [c for c in features if frame[c].astype(str).nunique() == len(frame)]
    if keys:
        raise PlotSkipped(
            f"every trial has its own {keys[0]}, which then determines every other parameter: "
            "importances would only measure that confounding"
        )
    dists: dict[str, Any] = {}
    for col in features:
        values = frame[col].tolist()
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            dists[col] = FloatDistribution(float(min(values)), float(max(values)))
        else:
            frame[col] = frame[col].astype(str)
            dists[col] = CategoricalDistribution(sorted(set(frame[col])))
    study = data.study
    name = _objective_names(data, len(study.directions))[0]
    with _quiet_optuna():
        proxy = optuna.create_study(direction=study.directions[0].name.lower())
        for row in frame.to_dict("records"):
            params = {
                c: (float(row[c]) if isinstance(dists[c], FloatDistribution) else row[c])
                for c in features
            }
            proxy.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=dists, value=row["objective"]
                )
            )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    fig = _draw(ovm.plot_param_importances, proxy, evaluator=evaluator, target_name=name)
    ax = fig.axes[0]
    if ax.get_legend() is not None:
        ax.get_legend().remove()  # one series: the x label names it
    ax.set_xlabel(f"importance for {name.split(' (')[0]} (fraction of variance)")
    ax.set_ylabel("parameter")
    ax.set_title("", loc="left")
    ax.set_title(f"Parameter importances (fANOVA over {len(frame)} trials)")
    fig.tight_layout()
    return fig, []


@register_plot(
    "optuna-pareto",
    "Pareto front (Optuna)",
    "For multi-objective studies: every trial by its objectives, the non-dominated ones "
    "highlighted.",
    order=130,
)
def plot_pareto(data: ExperimentData, options: PlotOptions) -> tuple[Figure, list[str]]:
    import optuna.visualization.matplotlib as ovm

    study = _study(data)
    if len(study.directions) < 2:
        raise PlotSkipped(
            "single-objective study (the cost plot draws the error/cost Pareto front instead)"
        )
    if len(study.directions) > 3:
        raise PlotSkipped(f"{len(study.directions)} objectives; Optuna draws 2 or 3")
    names = _objective_names(data, len(study.directions))
    fig = _draw(ovm.plot_pareto_front, study, target_names=names)
    ax = fig.axes[0]
    objectives = list(data.spec.get("objectives") or [])
    if len(study.directions) == 2 and objectives[1:2] in (["params"], ["macs"]):
        ax.set_yscale("log")
    ax.set_title(f"Pareto front of study {study.study_name}")
    return fig, []
