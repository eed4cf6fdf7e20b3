"""Tables: per-configuration statistics, paired comparisons, and the fairness facts.

Each ``*_table`` returns a DataFrame with unit-bearing snake_case columns (errors in percent:
``*_pct``), written as is to CSV; :func:`display` turns one into short, rounded strings for
the terminal and the HTML report.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd

from archbench.analysis import stats
from archbench.analysis.data import (
    FLOP_CONVENTION,
    METRICS,
    ExperimentData,
    config_stats,
    format_count,
)
from archbench.analysis.questions import owed_seeds, question_of
from archbench.errors import UnknownNameError

Pairs = Literal["best", "all"]


def _pct(x: float) -> float:
    return x * 100 if x is not None and not (isinstance(x, float) and math.isnan(x)) else math.nan


def summary_table(
    data: ExperimentData, metric: str = "test_err", level: float = 0.95
) -> pd.DataFrame:
    """One row per configuration with the fairness columns: complete configurations first,
    best mean ``metric`` first among them (a diverged seed counts at 100% error); a
    configuration with failed, pruned or missing seeds after them, its ``note`` saying why."""
    seeds = owed_seeds(data)
    table = config_stats(data.runs, metric, level, seeds)
    val = config_stats(data.runs, "val_err", level, seeds) if metric != "val_err" else table
    val = val.set_index("config_key")
    rows = []
    for r in table.to_dict("records"):
        budget = None
        if isinstance(r["budget_metric"], str) and pd.notna(r["budget_target"]):
            budget = f"{format_count(r['budget_target'])} {r['budget_metric']}"
        v = val.loc[r["config_key"]]
        rows.append(
            {
                "variant": r["label"],
                "family": r["group"],
                "block": r["block"],
                "depth": int(r["depth"]),
                "width": float(r["width"]),
                "params": int(r["params"]),
                "macs": int(r["macs"]),
                "flops": int(r["flops"]),
                "budget": budget,
                "budget_error_pct": _pct(r["budget_error"]) if budget else math.nan,
                "seeds_n": int(r["n"]),
                "seeds": " ".join(map(str, r["seeds"])),
                "epochs": r["epochs"],
                f"{metric}_mean_pct": _pct(r["mean"]),
                f"{metric}_std_pct": _pct(r["std"]),
                f"{metric}_ci{level * 100:g}_low_pct": _pct(r["ci_low"]),
                f"{metric}_ci{level * 100:g}_high_pct": _pct(r["ci_high"]),
                "val_err_mean_pct": _pct(v["mean"]),
                "n_diverged": r["n_diverged"],
                "n_pruned": r["n_pruned"],
                "n_failed": r["n_failed"],
                "complete": bool(r["complete"]),
                "note": r["note"],
                "config_key": r["config_key"],
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values(
        ["complete", f"{metric}_mean_pct", "variant"],
        ascending=[False, True, True],
        na_position="last",
    ).reset_index(drop=True)


def choose_reference(table: pd.DataFrame) -> tuple[str | None, str]:
    """The reference of ``pairs="best"`` from a :func:`config_stats` table: the complete
    configuration with the lowest mean *validation* error (the test set plays no part).
    ``(config_key, "")``, or ``(None, why)`` when no complete configuration has validation
    numbers (then only all-pairs comparisons are made)."""
    ok = table[table["complete"] & table["val_mean"].notna()]
    if ok.empty:
        if table["val_mean"].notna().any():
            return None, (
                "no reference: no configuration with validation numbers has all its seeds; "
                "comparing all pairs instead"
            )
        return None, (
            "no reference: the store has no validation error (val_size 0?), and the test set "
            "never chooses one; comparing all pairs instead"
        )
    ranked = ok.sort_values(["val_mean", "label"], kind="stable")
    return str(ranked["config_key"].iloc[0]), ""


def comparisons_table(
    data: ExperimentData,
    metric: str = "test_err",
    pairs: Pairs = "best",
    *,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired differences ``a - b`` over shared seeds, each tested with the exact sign-flip
    permutation test (:func:`archbench.analysis.stats.sign_flip_test`), Holm-corrected over
    the rows that have a p-value; a diverged seed counts at 100% error.

    ``pairs="best"``: every configuration against the reference (:func:`choose_reference`:
    lowest mean *validation* error among complete configurations); without one, all pairs,
    the reason in ``attrs["note"]``. ``"all"``: every pair. The interval is the inverted
    test at ``1 - alpha`` (unbounded when the seeds cannot reject). ``verdict`` (see
    :func:`verdict`): "no verdict: ..." for a configuration with failed, pruned or missing
    seeds, "undetermined: ..." when ``n`` seeds cannot give ``p < alpha``, a winner when the
    Holm-adjusted p is below ``alpha``, else "within seed noise".
    """
    if pairs not in ("best", "all"):
        raise UnknownNameError(f"unknown pairs {pairs!r}; allowed: best, all")
    table = config_stats(data.runs, metric, seeds=owed_seeds(data))
    unscored = int((table["n"] == 0).sum())
    table = table[table["n"] > 0]
    if len(table) < 2:
        return pd.DataFrame()
    done = data.scored
    values: dict[str, dict[int, float]] = {
        key: dict(zip(g["seed"].astype(int), g[metric].astype(float)))
        for key, g in done.groupby("config_key")
    }
    labels = dict(zip(table["config_key"], table["label"]))
    why = {k: n for k, n, c in zip(table["config_key"], table["note"], table["complete"]) if not c}
    note = ""
    ref = None
    if pairs == "best":
        ref, note = choose_reference(table)
    if ref is not None:
        ranked = table.sort_values(["complete", "val_mean", "mean"], ascending=[False, True, True])
        combos = [(k, ref) for k in ranked["config_key"] if k != ref]
    else:
        ordered = table.sort_values(["complete", "mean"], ascending=[False, True])
        combos = list(itertools.combinations(ordered["config_key"].tolist(), 2))
    rows = []
    for a, b in combos:
        res = stats.paired_difference(values.get(a, {}), values.get(b, {}), alpha)
        blocked = [f"{labels[k]}: {why[k]}" for k in (a, b) if k in why]
        rows.append(
            {
                "a": labels[a],
                "b": labels[b],
                "n_shared_seeds": res.n,
                "diff_mean_pct": _pct(res.mean_diff),
                "diff_std_pct": _pct(res.std_diff),
                f"diff_ci{(1 - alpha) * 100:g}_low_pct": _pct(res.ci_low),
                f"diff_ci{(1 - alpha) * 100:g}_high_pct": _pct(res.ci_high),
                "p": math.nan if blocked else res.p,
                "p_min": res.p_min,
                "_blocked": "; ".join(blocked),
            }
        )
    out = pd.DataFrame(rows)
    out["p_holm"] = stats.holm(out["p"].tolist())
    family = int(out["p"].notna().sum())
    if ref is not None:
        out["p_holm"], family = _holm_over_all_pairs(table, values, why, combos, alpha)
    # With a question, its rounds chose each configuration's seeds by looking at them: a
    # one-shot test of what they left is exploratory, and its winners say so.
    exploratory = question_of(data) is not None
    out["verdict"] = [
        verdict(row, alpha, metric, exploratory=exploratory) for row in out.to_dict("records")
    ]
    if exploratory:
        why = (
            "exploratory: the spec's question decides (its rounds chose these seeds); "
            "these rows test all stored seeds once, without the sequential correction"
        )
        note = f"{note}; {why}" if note else why
    out = out.drop(columns="_blocked")
    order = ["a", "b", "n_shared_seeds", "diff_mean_pct", "diff_std_pct"]
    order += [c for c in out.columns if c.startswith("diff_ci")]
    order += ["p", "p_holm", "p_min", "verdict"]
    out = out[order]
    if unscored:
        left_out = (
            f"{unscored} configuration(s) with no completed or diverged seed left out "
            "(see their notes in the per-configuration table)"
        )
        note = f"{note}; {left_out}" if note else left_out
    out.attrs["note"] = note
    out.attrs["holm_family"] = family  # how many p-values Holm corrected over
    return out


def _holm_over_all_pairs(
    table: pd.DataFrame,
    values: Mapping[str, dict[int, float]],
    blocked: Mapping[str, str],
    combos: list[tuple[str, str]],
    alpha: float,
) -> tuple[list[float], int]:
    """Holm-adjusted p of each ``combos`` row (and the family's size) within the family of *every* pair of the
    configurations that get a verdict. The reference was chosen on the same seeds' models
    (their validation and test errors share each model's luck), so a family of only the
    rows against it resolves A/A experiments above alpha (~10% at 10 configurations and 10
    seeds); Holm over all pairs controls the error for any rows picked from them."""
    keys = [k for k in table["config_key"] if k not in blocked]
    family = {
        frozenset((a, b)): stats.paired_difference(values.get(a, {}), values.get(b, {}), alpha).p
        for a, b in itertools.combinations(keys, 2)
    }
    adjusted = dict(zip(family, stats.holm(list(family.values()))))
    tested = sum(not math.isnan(p) for p in family.values())
    return [adjusted.get(frozenset(pair), math.nan) for pair in combos], tested


def verdict(row: Mapping[str, Any], alpha: float, metric: str, *, exploratory: bool = False) -> str:
    """The verdict of one comparison row, in this order: a configuration lacks seeds ("no
    verdict"); no shared seeds; the smallest p that ``n`` seeds allow is not below ``alpha``
    ("undetermined"); the Holm-adjusted p is below ``alpha`` (the lower-error side wins,
    prefixed "exploratory: " when a question's rounds chose the seeds); else "within seed
    noise"."""
    if row.get("_blocked"):
        return f"no verdict: {row['_blocked']}"
    n = row["n_shared_seeds"]
    if n == 0:
        return "no shared seeds"
    if row["p_min"] >= alpha:
        return (
            f"undetermined: {n} seed{'s' if n > 1 else ''} cannot reach p < {alpha:g} "
            f"(smallest p {row['p_min']:.3g})"
        )
    p = row["p_holm"]
    if math.isnan(p) or p >= alpha:
        return "within seed noise"
    better = row["a"] if row["diff_mean_pct"] < 0 else row["b"]
    winner = f"{better} lower {METRICS[metric].split()[0]} error"
    return f"exploratory: {winner}" if exploratory else winner


def _recipe_facts(runs: pd.DataFrame) -> tuple[str, list[str]]:
    """The recipe every configuration shares, and the keys where configurations differ."""
    recipes = {}
    for key, recipe in zip(runs["config_key"], runs["recipe"]):
        recipes.setdefault(key, recipe or {})
    keys = sorted(set().union(*(r.keys() for r in recipes.values()))) if recipes else []
    common, differ = {}, []
    for k in keys:
        seen = {json.dumps(r.get(k), sort_keys=True) for r in recipes.values()}
        if len(seen) == 1:
            common[k] = next(iter(recipes.values())).get(k)
        else:
            differ.append(k)
    text = ", ".join(f"{k}={v}" for k, v in common.items())
    return text, differ


Facts = list[tuple[str, str]]

#: What every table and report says about its statistics.
STATISTICS_FACT = (
    "a diverged seed counts as 100% error in every mean, ranking and test; per configuration: "
    f"mean, std (ddof=1) and a descriptive t-interval over seeds (clipped to 0-100%; fewer "
    f"than {stats.FEW_SEEDS} seeds flagged); paired verdicts: the {stats.PAIRED_TEST}; "
    "Holm-corrected over every pair of the configurations with a verdict (also for the rows "
    "against the reference, which was chosen on the same seeds' models); 'undetermined' "
    "when n seeds cannot reach p < alpha (fewer than 6 at 0.05); a configuration with failed, pruned or missing seeds gets no "
    "verdict and is never the reference; the reference is the complete configuration with the "
    "lowest validation error, never chosen by test error (no validation numbers: no reference, "
    "all pairs)"
)


def fairness_facts(data: ExperimentData) -> pd.DataFrame:
    """The facts that make (or unmake) a fair comparison, as ``fact``/``value`` rows."""
    runs = data.runs
    done = data.completed
    facts: Facts = [
        ("experiment", data.experiment),
        ("profile", data.profile),
        ("store", data.store_url),
    ]
    dataset = data.spec.get("dataset")
    if isinstance(dataset, Mapping):
        facts.append(
            ("dataset", ", ".join(f"{k}={v}" for k, v in dataset.items() if v is not None))
        )
    facts += _training_facts(runs, done)
    facts.append(_seed_fact(data.scored))
    facts += _budget_facts(runs, data.spec.get("budget") or {})
    facts.append(("complexity convention", FLOP_CONVENTION))
    counts = runs["status"].value_counts()
    facts.append(("runs", ", ".join(f"{counts[s]} {s}" for s in counts.index)))
    devices = sorted({str(d) for d in runs["device"].dropna()})
    facts.append(("devices", ", ".join(devices) or "-"))
    facts.append(
        (
            "statistics",
            STATISTICS_FACT,
        )
    )
    return pd.DataFrame(facts, columns=["fact", "value"])


def _training_facts(runs: pd.DataFrame, done: pd.DataFrame) -> Facts:
    """The shared recipe, what differs between configurations, and the epochs trained."""
    recipe, differ = _recipe_facts(done if len(done) else runs)
    epochs = sorted({int(e) for e in done["epochs_done"].dropna()})
    if not epochs:
        trained = "-"
    elif len(epochs) == 1:
        trained = f"{epochs[0]} for every run"
    else:
        trained = f"{epochs} (differs between runs!)"
    return [
        ("recipe (shared by every configuration)", recipe or "-"),
        (
            "recipe differences",
            f"configurations differ in: {', '.join(differ)}" if differ else "none",
        ),
        ("epochs trained (completed runs)", trained),
    ]


def _seed_fact(done: pd.DataFrame) -> tuple[str, str]:
    """Whether every configuration ran the same seeds (paired) or which lack some."""
    per_config = done.groupby("config_key")["seed"].apply(lambda s: tuple(sorted(set(s))))
    seed_sets = set(per_config)
    if len(seed_sets) == 1:
        return ("seeds", f"{list(next(iter(seed_sets)))} for every configuration (paired)")
    if not seed_sets:
        return ("seeds", "no completed runs")
    all_seeds = sorted(set().union(*seed_sets))
    short = sum(1 for s in per_config if len(s) < len(all_seeds))
    return (
        "seeds",
        f"{all_seeds}; {short} configuration(s) lack some (pairs use the seeds both have)",
    )


def _budget_facts(runs: pd.DataFrame, budget: Mapping[str, Any]) -> Facts:
    """The budget targets the variants were solved to and how close they came (per run's
    budget, first run of each variant), or that there was none."""
    variants = runs.drop_duplicates("spec_hash")
    budgeted = variants[variants["budget_target"].notna()]
    if budgeted.empty:
        return [("budget", "none: variants differ in cost (see params/MACs columns)")]
    targets = sorted(
        {
            f"{format_count(t)} {m}"
            for m, t in zip(budgeted["budget_metric"], budgeted["budget_target"])
        }
    )
    err = budgeted["budget_error"] * 100
    tol = budget.get("tolerance")
    tol_text = f", tolerance ±{float(tol) * 100:g}%" if tol else ""
    return [
        ("budget target", ", ".join(targets) + tol_text),
        (
            "achieved budget error",
            f"{err.min():+.2f}% to {err.max():+.2f}% of target "
            f"({len(budgeted)} of {len(variants)} variants budgeted)",
        ),
    ]


# -- display ----------------------------------------------------------------------------------


def _fmt(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in ("params", "macs", "flops"):
        return format_count(value)
    if column == "p" or column.startswith("p_"):
        return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"
    if column == "t":
        return f"{value:.2f}"
    if column.endswith("_pct"):
        return (
            f"{value:+.2f}" if ("error" in column or column.startswith("diff")) else f"{value:.2f}"
        )
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value) or "-"


SHORT_NAMES = {
    "budget_error_pct": "budget err %",
    "seeds_n": "n",
    "val_err_mean_pct": "val err %",
    "n_shared_seeds": "n",
    "diff_mean_pct": "a-b (pp)",
    "diff_std_pct": "std (pp)",
    "p": "p (sign-flip)",
    "p_holm": "p (Holm)",
    "p_min": "min p",
    "flops": "FLOPs (2xMACs)",
    "macs": "MACs",
    "n_diverged": "diverged",
    "n_pruned": "pruned",
    "n_failed": "failed",
}


def display(table: pd.DataFrame, *, compact: bool = False) -> pd.DataFrame:
    """Strings for people: counts as 75K, percents to 2 decimals, short headers; CI bounds
    merged into one ``[low, high]`` column. ``compact`` drops columns for a terminal."""
    if table.empty:
        return table
    out = pd.DataFrame(index=table.index)
    cols = list(table.columns)
    skip = set()
    for c in cols:
        if c in skip:
            continue
        if "_ci" in c and c.endswith("_low_pct"):
            high = c.replace("_low_pct", "_high_pct")
            name = c[: c.index("_ci")]
            level = c[c.index("_ci") + 3 : -len("_low_pct")]
            label = f"{level}% CI (pp)" if name == "diff" else f"{level}% CI %"
            few = table["seeds_n"] < stats.FEW_SEEDS if "seeds_n" in table else [False] * len(table)
            out[label] = [
                "-"
                if math.isnan(lo)
                else "unbounded"
                if math.isinf(lo) and math.isinf(hi)
                else f"[{lo:.2f}, {hi:.2f}]" + (" few seeds" if f else "")
                for lo, hi, f in zip(table[c], table[high], few)
            ]
            skip.add(high)
            continue
        if compact and c in (
            "block",
            "flops",
            "config_key",
            "seeds",
            "p_min",
            "diff_std_pct",
            "complete",
        ):
            continue
        if c == "config_key":
            continue
        header = SHORT_NAMES.get(c)
        if header is None and c.endswith("_mean_pct"):
            header = METRICS.get(c[: -len("_mean_pct")], c) + " %"
        if header is None and c.endswith("_std_pct"):
            header = "std (pp)"
        out[header or c] = [_fmt(v, c) for v in table[c]]
    if compact:  # columns with nothing to say (no budget, nothing diverged) go
        empty = [c for c in out.columns if set(out[c]) <= {"-", "0"}]
        out = out.drop(columns=empty)
    return out


def to_text(table: pd.DataFrame, *, compact: bool = True) -> str:
    """A terminal rendering (``display`` then pandas' fixed-width text)."""
    if table.empty:
        return "(no rows)"
    return display(table, compact=compact).to_string(index=False)
