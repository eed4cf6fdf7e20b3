"""Tables for papers: ``stats`` and ``results`` as Markdown and LaTeX (booktabs)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from fixtures_store import BUDGET, build_fixture_store

from archbench.cli import main
from archbench.cli.format import tabulate_rows
from archbench.cli.paper import merge_mean_ci


def test_mean_and_interval_become_one_cell_whatever_the_other_columns() -> None:
    table = pd.DataFrame(
        {
            "variant": ["a", "b", "c"],
            "a_new_column": [1, 2, 3],  # unknown columns pass through
            "test_err_mean_pct": [10.0, 12.5, 0.4],
            "test_err_ci95_low_pct": [9.0, 12.0, 0.0],  # c: clipped at 0%
            "test_err_ci95_high_pct": [11.0, 13.0, 1.2],
            "diff_mean_pct": [0.5, -0.25, math.nan],
            "diff_ci90_low_pct": [0.25, -0.5, math.nan],
            "diff_ci90_high_pct": [0.75, 0.0, math.nan],
        }
    )
    merged, headers = merge_mean_ci(table)
    assert list(merged.columns) == [
        "variant",
        "a_new_column",
        "test_err_mean_ci95",
        "diff_mean_ci90",
    ]
    assert list(merged["test_err_mean_ci95"]) == [
        "10.00 ± 1.00",
        "12.50 ± 0.50",
        "0.40 [0.00, 1.20]",
    ]
    assert list(merged["diff_mean_ci90"]) == ["+0.50 ± 0.25", "-0.25 ± 0.25", "-"]
    assert headers["test_err_mean_ci95"] == "test error % (mean ± 95% CI)"
    assert headers["diff_mean_ci90"] == "a - b, pp (mean ± 90% CI)"


def test_latex_is_booktabs_and_escaped_markdown_pipes_are_escaped() -> None:
    latex = tabulate_rows(["name_1", "err %"], [["a_b", "1.0 ± 0.1"]], ["<", ">"], "latex")
    lines = latex.splitlines()
    assert lines[0] == r"\begin{tabular}{lr}" and lines[-1] == r"\end{tabular}"
    assert [x for x in lines if "rule" in x] == [r"\toprule", r"\midrule", r"\bottomrule"]
    assert r"a\_b" in latex and r"err \%" in latex and r"1.0 $\pm$ 0.1" in latex
    markdown = tabulate_rows(["name"], [["a|b"]], ["<"], "markdown").splitlines()
    assert markdown == ["| name |", "|------|", r"| a\|b |"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_store(tmp_path_factory.mktemp("paper") / "fixture.db")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_stats_as_markdown_has_mean_ci_and_verdicts(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _run(capsys, "stats", BUDGET, "--storage", str(store), "--format", "markdown")
    tables = [block for block in out.split("### ") if block.strip()]
    assert len(tables) == 3  # facts, per configuration, paired comparisons
    summary = [line for line in tables[1].splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in summary[0].strip("|").split("|")]
    assert "test error % (mean ± 95% CI)" in header
    assert len(summary) == 2 + 6  # header, rule, six families
    assert all(line.count("|") == summary[0].count("|") for line in summary)
    comparisons = tables[2]
    assert "verdict" in comparisons and "within seed noise" in comparisons
    assert "a - b, pp (mean ± 95% CI)" in comparisons


def test_stats_and_results_as_latex(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "stats", BUDGET, "--storage", str(store), "--format", "latex")
    assert out.count(r"\begin{tabular}") == 3 and out.count(r"\bottomrule") == 3
    assert r"$\pm$" in out and "inception\\_resnet8" in out
    out = _run(capsys, "results", BUDGET, "--storage", str(store), "--format", "latex")
    assert r"test\_err \% (mean $\pm$ std)" in out and out.count(r"\\") == 1 + 6
    out = _run(capsys, "results", BUDGET, "--storage", str(store), "--format", "markdown")
    assert out.splitlines()[0].startswith("| profile")


def test_json_and_format_are_alternatives(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["stats", BUDGET, "--storage", str(store), "--json", "--format", "latex"])
    assert code == 2 and "alternatives" in capsys.readouterr().err
