"""Re-evaluate a stored run from its kept weights (``archbench eval``).

The net is rebuilt from the variant's stored spec, its weights loaded from the file the run
recorded (``--keep-weights``), and evaluated on the run's own data: the dataset section of the
experiment spec its study stored (same subsets, same split seed), with the run's recipe's
evaluation settings (batch size, memory format, autocast). On the machine and device that
trained it the errors equal the stored ones exactly (the same integer counts of mistakes);
elsewhere they may differ in rare borderline images.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from archbench.errors import ArchbenchError, UnknownNameError

#: The errors compared: stored final value vs re-evaluated.
COMPARED = ("val_err", "test_err", "test_top5_err")


@dataclass(frozen=True)
class Reevaluation:
    """A stored run's errors and the same errors evaluated again from its kept weights."""

    run_id: int
    experiment: str
    profile: str
    label: str
    seed: int
    weights_path: str
    device: str
    stored: dict[str, float | None] = field(default_factory=dict)
    now: dict[str, float | None] = field(default_factory=dict)

    def differences(self) -> dict[str, float]:
        """``{metric: now - stored}`` for every metric both have that is not identical."""
        out = {}
        for key in COMPARED:
            a, b = self.stored.get(key), self.now.get(key)
            if a is None or b is None or (math.isnan(a) and math.isnan(b)):
                continue
            if a != b:
                out[key] = b - a
        return out

    @property
    def matches(self) -> bool:
        return not self.differences()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "profile": self.profile,
            "label": self.label,
            "seed": self.seed,
            "weights_path": self.weights_path,
            "device": self.device,
            "stored": dict(self.stored),
            "now": dict(self.now),
            "matches": self.matches,
        }


def find_run(
    store: Any,
    *,
    run_id: int | None = None,
    experiment: str | None = None,
    label: str | None = None,
    seed: int | None = None,
    profile: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The run row by ``run_id``, or by experiment + label + seed (``profile`` when several).

    ``labels`` maps spec hashes to the labels the experiment's trials used (the store keeps
    the first name a variant was recorded under).
    """
    if run_id is not None:
        row = store.run(run_id)
        if row is None:
            raise UnknownNameError(f"no run {run_id} in {store.url}")
        return row
    if experiment is None or label is None or seed is None:
        raise ArchbenchError("give a run id, or an experiment with --label and --seed")
    frame = store.runs(experiment=experiment, profile=profile)
    if frame.empty:
        where = f"experiment {experiment!r}" + (f", profile {profile!r}" if profile else "")
        raise UnknownNameError(f"no runs recorded for {where} in {store.url}")
    names = [(labels or {}).get(h, n) for h, n in zip(frame["spec_hash"], frame["name"])]
    frame = frame.assign(label=names)
    known = sorted(set(names))
    if label not in known:
        raise UnknownNameError(f"no variant labelled {label!r} in {experiment!r}; known: {known}")
    picked = frame[(frame["label"] == label) & (frame["seed"] == seed)]
    if picked.empty:
        seeds = sorted(int(s) for s in frame.loc[frame["label"] == label, "seed"].unique())
        raise UnknownNameError(f"{label!r} has no run with seed {seed}; seeds: {seeds}")
    if picked["profile"].nunique() > 1 or len(picked) > 1:
        ids = ", ".join(f"{r} (profile {p})" for r, p in zip(picked["run_id"], picked["profile"]))
        raise ArchbenchError(
            f"{label!r} seed {seed} matches several runs: {ids}; give --profile or the run id"
        )
    return store.run(int(picked["run_id"].iloc[0]))


def study_of(storage: Any, study_name: str) -> Any:
    """The Optuna study a run belongs to, or ``None`` (another storage, none recorded)."""
    import optuna

    from archbench.store.storage import optuna_storage

    try:
        optuna_store = optuna_storage(storage)
        if study_name not in optuna.get_all_study_names(optuna_store):
            return None
        return optuna.load_study(study_name=study_name, storage=optuna_store)
    except Exception:  # no Optuna tables, a foreign schema: the caller says what is missing
        return None


def trial_labels(study: Any) -> dict[str, str]:
    """``spec_hash -> label`` as the study's trials named their variants."""
    out: dict[str, str] = {}
    if study is None:
        return out
    for trial in study.get_trials(deepcopy=False):
        spec_hash, label = trial.user_attrs.get("spec_hash"), trial.user_attrs.get("label")
        if isinstance(spec_hash, str) and isinstance(label, str) and label:
            out.setdefault(spec_hash, label)
    return out


def spec_of(study: Any) -> Any:
    """The experiment spec a study stored (:data:`archbench.runner.study.SPEC_ATTR`)."""
    import yaml

    from archbench.runner.spec import parse_spec
    from archbench.runner.study import SPEC_ATTR

    text = study._storage.get_study_system_attrs(study._study_id).get(SPEC_ATTR)
    if not text:
        raise ArchbenchError(f"study {study.study_name!r} holds no experiment spec")
    return parse_spec(yaml.safe_load(text), where=f"study {study.study_name!r}")


def reevaluate(
    storage: str,
    *,
    run_id: int | None = None,
    experiment: str | None = None,
    label: str | None = None,
    seed: int | None = None,
    profile: str | None = None,
    device: str = "auto",
) -> Reevaluation:
    """Evaluate a stored run's kept weights on its own validation and test splits."""
    from archbench.data import load_dataset
    from archbench.models.net import NetSpec, build_net
    from archbench.store import ResultsStore
    from archbench.store.storage import resolve_storage
    from archbench.training.device import select_device
    from archbench.training.evaluate import evaluate_split
    from archbench.training.recipe import Recipe
    from archbench.training.weights import load_weights

    resolved = resolve_storage(storage)
    with ResultsStore(resolved, create=False) as store:
        study = None
        if run_id is None and profile is None and experiment is not None:
            profiles = sorted(set(store.runs(experiment=experiment)["profile"]))
            profile = profiles[0] if len(profiles) == 1 else None
        if run_id is None:
            name = f"{experiment}:{profile}" if profile else None
            study = study_of(resolved, name) if name else None
        labels = trial_labels(study)
        row = find_run(
            store,
            run_id=run_id,
            experiment=experiment,
            label=label,
            seed=seed,
            profile=profile,
            labels=labels,
        )
        variants = store.variants()
    where = (
        f"run {row['run_id']} ({row['experiment']}, profile {row['profile']}, seed {row['seed']})"
    )
    if not row.get("weights_path"):
        raise ArchbenchError(
            f"{where} has no kept weights (status {row['status']}): only runs trained by "
            "`archbench run/worker --keep-weights` keep theirs"
        )
    study = study if study is not None else study_of(resolved, row["study_name"] or "")
    if study is None:
        raise ArchbenchError(
            f"{where}: its Optuna study {row['study_name']!r} is not in {store.url}, so its "
            "data set is unknown"
        )
    label = trial_labels(study).get(row["spec_hash"]) or label
    spec = spec_of(study)
    match = variants[variants["spec_hash"] == row["spec_hash"]]
    if match.empty:
        raise ArchbenchError(f"{where}: its variant {row['spec_hash']} is not in the store")
    stored_spec = json.loads(match["spec_json"].iloc[0])
    net_spec = NetSpec.from_dict(stored_spec)
    if net_spec.spec_hash() != row["spec_hash"]:
        # The stored spec now builds another net (a block default changed since the run and
        # is pinned into the hash now, or the JSON was edited): its weights may load into
        # that net silently and give another net's errors.
        now = json.loads(net_spec.canonical_json())
        added = ", ".join(_differences(stored_spec, now)[:3])
        why = (
            f"this version pins {added}: a block default changed since the run"
            if added
            else "its stored JSON was changed after the run"
        )
        raise ArchbenchError(
            f"{where}: its stored spec now hashes to {net_spec.spec_hash()}, not its "
            f"{row['spec_hash']} ({why}); its weights cannot be re-evaluated here"
        )
    label = label or str(match["name"].iloc[0])
    dev = select_device(device)
    data = load_dataset(spec.dataset.name, **spec.dataset.load_kwargs())
    net = build_net(net_spec)
    load_weights(net, row["weights_path"], spec_hash=row["spec_hash"])
    recipe = Recipe.from_dict(row["recipe"])
    now: dict[str, float | None] = dict.fromkeys(COMPARED)
    _, now["test_err"], now["test_top5_err"] = evaluate_split(
        net, data.test, data.info, recipe, dev
    )
    if data.val is not None and len(data.val):
        _, now["val_err"], _ = evaluate_split(net, data.val, data.info, recipe, dev)
    stored = {k: (None if row.get(k) is None else float(row[k])) for k in COMPARED}
    return Reevaluation(
        run_id=int(row["run_id"]),
        experiment=row["experiment"],
        profile=row["profile"],
        label=label,
        seed=int(row["seed"]),
        weights_path=row["weights_path"],
        device=str(dev),
        stored=stored,
        now=now,
    )


def _differences(stored: Any, now: Any, path: str = "") -> list[str]:
    """Where two spec dicts differ: ``stages[0].params.inverted (stored: -, now: False)``."""
    if isinstance(stored, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(stored) | set(now)):
            where = f"{path}.{key}" if path else key
            if key not in stored or key not in now:
                old = repr(stored[key]) if key in stored else "-"
                new = repr(now[key]) if key in now else "-"
                out.append(f"{where} (stored: {old}, now: {new})")
            else:
                out.extend(_differences(stored[key], now[key], where))
        return out
    if isinstance(stored, list) and isinstance(now, list) and len(stored) == len(now):
        return [
            d
            for i, (a, b) in enumerate(zip(stored, now))
            for d in _differences(a, b, f"{path}[{i}]")
        ]
    return [] if stored == now else [f"{path} (stored: {stored!r}, now: {now!r})"]
