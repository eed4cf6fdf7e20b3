"""Check experiments/RESULTS.md against the committed CSVs and specs (no store, no training).

For each numbered section (its experiments in :data:`SECTIONS`):

- **Data-set sizes.** Every "N training images (+V validation, T test)" must be the cpu
  profile's ``train_subset``/``val_size``/``test_subset``, and those must be what the CSVs
  record: the per-epoch training error is a multiple of 1/(floor(N / batch) x batch) (full
  batches only), the validation and test errors of 1/V and 1/T. Each experiment's section
  states its sizes at least once.
- **Intervals.** Every "mean [lo, hi]" (in a sentence or across two table cells, with the
  table's n column when present) must be, to the printed 2 decimals, a configuration's mean
  and 95% t-interval over seeds, a paired difference a - b over common seeds with its
  t-interval, or a comparison of the spec's question as the rounds decided it (the
  difference and the inverted sign-flip interval at its look's level, replayed from the CSV
  by the library's own :func:`archbench.analysis.questions.replay_question`), in percent, of
  test, training or validation error, in that section's CSVs.
- **Counts** the CSVs fix: the TPE search's trials per family, pruned and completed trials;
  the Pareto run's distinct configurations.

Prints one line per problem; exit status 1 if any. Usage: python scripts/check_results_md.py
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "experiments" / "RESULTS.md"
CSV_DIR = ROOT / "experiments" / "results"
#: section number -> the experiments (CSV/spec stems) it reports
SECTIONS: dict[int, tuple[str, ...]] = {
    1: ("degradation",),
    2: ("preact_orderings", "preact_shortcuts"),
    3: ("going_deep",),
    4: ("wide_vs_deep",),
    5: ("resnext_cardinality",),
    6: ("pareto", "quickstart", "quickstart_xeon"),
    7: ("search_tpe",),
}
#: CSV stem -> (spec stem, profile) where they differ from (stem, "cpu")
CSV_SOURCES: dict[str, tuple[str, str]] = {
    "preact_shortcuts": ("preact_orderings", "cpu_shortcuts"),
    "quickstart_xeon": ("quickstart", "cpu"),  # the same run on another processor
}
METRICS = ("test_err", "train_err", "val_err")
TOL = 0.0051  # printed to 2 decimals
MINUS = "\u2212"  # RESULTS.md prints negative numbers with U+2212
NUM = rf"[{MINUS}+-]?\d+(?:\.\d+)?"
SIZES_RE = re.compile(
    r"([\d,]+)\s+training\s+images(?:\s+\(\+([\d,]+)\s+validation,\s+([\d,]+)\s+test\))?"
)
INTERVAL_RE = re.compile(
    rf"(?:\|\s*(\d+)\s*\|\s*)?({NUM})(?:\s*pp)?\s*\|?\s*\[({NUM}),\s*({NUM})\]"
)


def _num(text: str) -> float:
    return float(text.replace(MINUS, "-").replace(",", ""))


@dataclass(frozen=True)
class Sizes:
    train: int
    val: int
    test: int
    batch: int


def source(stem: str) -> tuple[Path, str]:
    """The spec file and profile a CSV stem's runs were made with."""
    spec, profile = CSV_SOURCES.get(stem, (stem, "cpu"))
    return ROOT / "experiments" / f"{spec}.yaml", profile


@functools.cache
def spec_sizes(experiment: str) -> Sizes:
    """The profile's data-set sizes and batch, the profile's values over the base spec's."""
    path, profile = source(experiment)
    spec = yaml.safe_load(path.read_text())
    prof = (spec.get("profiles") or {}).get(profile) or {}
    data = {**spec.get("dataset", {}), **prof.get("dataset", {})}
    recipe = {**spec.get("recipe", {}), **prof.get("recipe", {})}
    return Sizes(data["train_subset"], data["val_size"], data["test_subset"], recipe["batch_size"])


def denominator(values: pd.Series, limit: int = 20000) -> int | None:
    """The smallest D with every value a multiple of 1/D (None beyond ``limit``)."""
    v = np.asarray(values.dropna(), dtype=float)
    for d in range(1, limit):
        if np.all(np.abs(v * d - np.round(v * d)) < 1e-6):
            return d
    return None


def csv_problems(experiment: str) -> list[str]:
    """Spec sizes that the CSVs contradict."""
    sizes = spec_sizes(experiment)
    epochs_path = CSV_DIR / f"{experiment}_epochs.csv"
    frame = pd.read_csv(epochs_path if epochs_path.exists() else CSV_DIR / f"{experiment}_runs.csv")
    seen = (sizes.train // sizes.batch) * sizes.batch
    out = []
    for what, column, want in (
        ("training", "train_err", seen),
        ("validation", "val_err", sizes.val),
        ("test", "test_err", sizes.test),
    ):
        got = denominator(frame[column])
        if got != want:
            out.append(f"{experiment}: {what} error is in steps of 1/{got}, spec implies 1/{want}")
    return out


def sections(text: str) -> Iterator[tuple[int, str]]:
    """(number, body) of each '## N.' section."""
    parts = re.split(r"^## (\d+)\. ", text, flags=re.M)
    for i in range(1, len(parts) - 1, 2):
        yield int(parts[i]), parts[i + 1]


def _interval(values: np.ndarray) -> tuple[float, float, float] | None:
    n = len(values)
    if n < 2:
        return None
    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


@functools.cache
def candidates(experiment: str) -> list[tuple[int, float, float, float]]:
    """(n, mean, lo, hi) in percent of every configuration and every ordered pair."""
    every = pd.read_csv(CSV_DIR / f"{experiment}_runs.csv")
    runs = every[every["status"] == "completed"]
    out = []
    for _, group in runs.groupby("profile"):
        for metric in METRICS:
            by = {k: g.set_index("seed")[metric] * 100 for k, g in group.groupby("config_key")}
            for a, xa in by.items():
                if (iv := _interval(xa.to_numpy())) is not None:
                    out.append((len(xa), *iv))
                for b, xb in by.items():
                    if a != b:
                        d = (xa - xb).dropna().to_numpy()
                        if (iv := _interval(d)) is not None:
                            out.append((len(d), *iv))
    return out + question_candidates(experiment, every)


def question_candidates(
    experiment: str, runs: pd.DataFrame
) -> list[tuple[int, float, float, float]]:
    """(n, a - b, lo, hi) in percent of every comparison of each profile's question, as the
    rounds decided it."""
    from archbench.analysis.questions import describe, replay_question
    from archbench.runner.spec import load_spec

    path = source(experiment)[0]
    out = []
    for profile, group in runs.groupby("profile"):
        spec = load_spec(path, str(profile))
        if spec.question is None:
            continue
        configs = dict(zip(group["config_key"], group["name"]))
        table = describe(replay_question(spec.question, group, configs, spec.seeds))
        for row in table.itertuples():
            if not math.isnan(row.diff_low_pct):
                out.append((row.seeds_n, row.diff_mean_pct, row.diff_low_pct, row.diff_high_pct))
    return out


def check_sizes(number: int, body: str, experiments: tuple[str, ...]) -> list[str]:
    allowed = {e: spec_sizes(e) for e in experiments}
    out, stated = [], set()
    for m in SIZES_RE.finditer(body):
        n = int(_num(m.group(1)))
        full = None if m.group(2) is None else (n, int(_num(m.group(2))), int(_num(m.group(3))))
        ok = [
            e
            for e, s in allowed.items()
            if s.train == n and full in (None, (s.train, s.val, s.test))
        ]
        if not ok:
            out.append(
                f"§{number}: '{m.group(0)}' is no cpu profile's (train_subset, val_size, test_subset) of {', '.join(experiments)}"
            )
        elif full is not None:
            stated.update(ok)
    out += [
        f"§{number}: no '{allowed[e].train:,} training images (+V validation, T test)' for {e}"
        for e in experiments
        if e not in stated
    ]
    return out


def check_intervals(number: int, body: str, experiments: tuple[str, ...]) -> list[str]:
    known = [c for e in experiments for c in candidates(e)]
    out = []
    for m in INTERVAL_RE.finditer(body):
        n = None if m.group(1) is None else int(m.group(1))
        mean, lo, hi = (_num(m.group(i)) for i in (2, 3, 4))
        if not any(
            (n is None or n == cn)
            and abs(mean - cm) <= TOL
            and abs(lo - cl) <= TOL
            and abs(hi - ch) <= TOL
            for cn, cm, cl, ch in known
        ):
            out.append(
                f"§{number}: '{m.group(0).strip()}' matches no mean or paired difference with its 95% t-interval in the CSVs"
            )
    return out


def check_counts(number: int, body: str) -> list[str]:
    out = []
    if number == 7:
        runs = pd.read_csv(CSV_DIR / "search_tpe_runs.csv")
        trials = runs.groupby("trial_number").agg(
            name=("name", "first"), status=("status", "first")
        )
        for m in re.finditer(r"(\d+)\s+of\s+its\s+(\d+)\s+trials\s+on\s+ResNet-(\d+)", body):
            got = int((trials["name"] == f"resnet{m.group(3)}").sum())
            if (int(m.group(1)), int(m.group(2))) != (got, len(trials)):
                out.append(f"§7: '{m.group(0)}': the CSV has {got} of {len(trials)}")
        for m in re.finditer(
            r"(\d+)\s+of\s+(\d+)\s+trials\s+were\s+pruned\*\*,\s+(\d+)\s+completed", body
        ):
            want = (
                int((trials["status"] == "pruned").sum()),
                len(trials),
                int((trials["status"] == "completed").sum()),
            )
            if tuple(int(g) for g in m.groups()) != want:
                out.append(f"§7: '{m.group(0)}': the CSV has {want}")
    if number == 6:
        runs = pd.read_csv(CSV_DIR / "pareto_runs.csv")
        for m in re.finditer(r"(\d+)\s+distinct\s+configurations", body):
            if int(m.group(1)) != runs["config_key"].nunique():
                out.append(f"§6: '{m.group(0)}': the CSV has {runs['config_key'].nunique()}")
    return out


def check(text: str) -> list[str]:
    """Every problem found in ``text`` (RESULTS.md's contents)."""
    problems = [p for exps in SECTIONS.values() for e in exps for p in csv_problems(e)]
    found = dict(sections(text))
    for number, experiments in SECTIONS.items():
        body = found.get(number)
        if body is None:
            problems.append(f"§{number}: section missing")
            continue
        problems += check_sizes(number, body, experiments)
        problems += check_intervals(number, body, experiments)
        problems += check_counts(number, body)
    return problems


def main() -> int:
    problems = check(RESULTS_MD.read_text())
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) in {RESULTS_MD.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
