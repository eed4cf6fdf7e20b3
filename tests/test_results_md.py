"""experiments/RESULTS.md agrees with the committed CSVs and specs (issue 17, "Fidelity"):
data-set sizes, intervals and counts, checked by scripts/check_results_md.py. Each error the
issue found, put back into a copy of the text, must be caught. Reads CSVs only: fast."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_checker():
    spec = importlib.util.spec_from_file_location(
        "check_results_md", ROOT / "scripts" / "check_results_md.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


checker = _load_checker()
TEXT = checker.RESULTS_MD.read_text()
MINUS = checker.MINUS


def test_results_md_matches_the_csvs() -> None:
    assert checker.check(TEXT) == []


# The errors (old text), each put back into RESULTS.md: the check must report it.
REGRESSIONS = {
    "an interval flipped": ("0.79 [-1.00, 2.40]", "0.79 [-2.40, 1.00]"),
    "§1 training set without the validation images": (
        "3,000 training images (+1,000 validation, 2,000 test)",
        "2,000 training images (+1,000 validation, 2,000 test)",
    ),
    "§4 training set without the validation images": (
        "8,500 training images (+500 validation, 2,000 test)",
        "8,000 training images (+500 validation, 2,000 test)",
    ),
    "§7 TPE trials on ResNet-14": (
        "17 of its 30 trials on ResNet-14",
        "20 of its 30 trials on ResNet-14",
    ),
    "a summary row's n": ("| 8 | 6.95 [5.52, 8.39]", "| 12 | 6.95 [5.52, 8.39]"),
    "a question's interval at its look's level": (
        "| 8 | 19.18 [14.88, 26.29]",
        "| 8 | 19.18 [16.34, 22.02]",
    ),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_each_known_error_is_caught(name: str) -> None:
    good, bad = REGRESSIONS[name]
    assert good in TEXT, f"fixture out of date: {good!r} not in RESULTS.md"
    problems = checker.check(TEXT.replace(good, bad, 1))
    assert problems, f"{name}: not caught"


def test_sizes_are_the_spec_and_the_csvs_agree() -> None:
    # degradation cpu: 3,000 trained on (46 full batches of 64 = 2,944 counted), 1,000 val.
    sizes = checker.spec_sizes("degradation")
    assert (sizes.train, sizes.val, sizes.test) == (3000, 1000, 2000)
    assert checker.csv_problems("degradation") == []


def test_preact_plot_from_the_csvs_names_what_it_draws() -> None:
    # preact_orderings_curves.png was titled "Original vs pre-activation" over BN-after-addition:
    # the "preact" role covers every Fig. 4 ordering; the plot now prefers full pre-activation
    # and its title names both families.
    spec = importlib.util.spec_from_file_location(
        "plot_from_csv", ROOT / "scripts" / "plot_from_csv.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    from archbench.analysis.plots import render

    result = render(module.load_with_epochs("preact_orderings", "cpu"), "preact")
    assert result.figure is not None, result.skipped
    title = result.figure.axes[0].get_title()
    assert "resnet_variant:basic vs resnet_variant:preact_basic" in title
    assert "bn_after_add" not in title
