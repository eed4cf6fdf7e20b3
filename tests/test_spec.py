"""Experiment specs: validation before anything runs, profiles, grids, and the CLI's
``validate`` and ``run --dry-run`` output. Nothing here trains."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from archbench.cli import main
from archbench.errors import SpecError
from archbench.runner.identity import config_key
from archbench.runner.spec import load_spec, parse_spec

BASE: dict[str, Any] = {
    "name": "t",
    "dataset": {"name": "digits", "val_size": 200},
    "recipe": {"epochs": 1, "batch_size": 64},
    "variants": [{"family": "resnet", "depth": 8, "width": 8}],
}
EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))


def spec_with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(changes))
    return data


def error_of(data: dict[str, Any], profile: str | None = None) -> str:
    """The error of parsing ``data`` and checking it against the registries and budgets
    (what ``archbench validate`` does; parsing alone reads no registry)."""
    from archbench.runner.variants import check_spec

    with pytest.raises(SpecError) as info:
        check_spec(parse_spec(data, profile))
    return str(info.value)


# -- unknown keys, at every level -------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "change", "names"),
    [
        ("top", {"epochs": 3}, ["'epochs'", "recipe", "dataset"]),
        ("dataset", {"dataset": {"name": "digits", "nmae": 1}}, ["'nmae'", "val_size"]),
        ("recipe", {"recipe": {"lrr": 0.1}}, ["'lrr'", "lr", "weight_decay"]),
        ("budget", {"budget": {"target": "20K", "tol": 0.1}}, ["'tol'", "tolerance"]),
        ("sampler", {"sampler": {"name": "grid", "sed": 1}}, ["'sed'", "seed"]),
        ("pruner", {"pruner": {"name": "median", "warmup": 1}}, ["'warmup'", "warmup_epochs"]),
        ("variant", {"variants": [{"family": "resnet", "blok": "x"}]}, ["variants[0]", "'blok'"]),
        (
            "space",
            {"variants": [], "space": {"family": ["resnet"], "depht": [8]}},
            ["space", "'depht'", "depth"],
        ),
        (
            "distribution",
            {"variants": [], "space": {"family": "resnet", "recipe": {"lr": {"lo": 0.1}}}},
            ["space.recipe.lr", "'lo'", "low"],
        ),
        (
            "space recipe",
            {"variants": [], "space": {"family": "resnet", "recipe": {"rate": [0.1]}}},
            ["space.recipe", "'rate'", "lr"],
        ),
        (
            "dataset options",
            {"dataset": {"name": "synthetic", "options": {"num_trian": 5}}},
            ["dataset.options", "'num_trian'", "num_train"],
        ),
    ],
)
def test_unknown_keys_name_the_key_and_what_is_allowed(
    where: str, change: dict[str, Any], names: list[str]
) -> None:
    message = error_of(spec_with(**change))
    for name in names:
        assert name in message, f"{where}: {name} not in {message!r}"


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"recipe": {"lr": "fast"}}, ["lr", "'fast'"]),
        ({"variants": [{"family": "resnet", "depth": "8"}]}, ["variants[0]", "'depth'", "'8'"]),
        ({"dataset": {"name": "digits", "val_size": -1}}, ["val_size", ">= 0"]),
        ({"sampler": {"name": "cmaes"}}, ["'cmaes'", "'tpe'", "'nsga2'"]),
        ({"sampler": {"name": "tpe", "population_size": 8}}, ["population_size", "'nsga2'"]),
        ({"sampler": {"name": "nsga2", "population_size": 1}}, ["population_size", ">= 2"]),
        ({"pruner": {"name": "sha"}}, ["'sha'", "'median'", "'hyperband'"]),
        ({"storage": 5}, ["storage"]),
        ({"name": "a b"}, ["name", "'a b'"]),
        ({"variants": "resnet"}, ["variants", "list"]),
        ({"budget": {"target": "lots"}}, ["budget.target", "'lots'", "1.7M"]),
        ({"budget": {"target": "20K", "metric": "flops"}}, ["metric", "'flops'", "'macs'"]),
        ({"objectives": ["accuracy"]}, ["'accuracy'", "val_acc"]),
        ({"objectives": ["params", "val_acc"]}, ["start with 'val_acc'"]),
        ({"trials": 3}, ["grid", "trials"]),
        ({"sampler": {"name": "tpe"}}, ["'tpe'", "trials"]),
    ],
)
def test_wrong_types_and_values(change: dict[str, Any], names: list[str]) -> None:
    message = error_of(spec_with(**change))
    for name in names:
        assert name in message, f"{name} not in {message!r}"


def test_missing_sections() -> None:
    data = spec_with()
    del data["dataset"]
    assert "missing required key 'dataset'" in error_of(data)
    assert "give 'variants'" in error_of(spec_with(variants=[]))
    assert "must be a mapping" in error_of(["a", "list"])  # type: ignore[arg-type]


# -- layering ---------------------------------------------------------------------------------


def test_parsing_a_spec_imports_neither_torch_nor_the_model_stack(tmp_path: Path) -> None:
    """One-way dependencies: the spec layer is below the model stack and the budget solver."""
    import subprocess
    import sys

    path = write(
        tmp_path,
        spec_with(
            variants=[],
            space={"family": ["resnet", "plain"], "width": [4, 8]},
            budget=None,
            sampler={"name": "tpe"},
            trials=3,
        ),
    )
    code = (
        "import sys\n"
        "from archbench.runner.spec import load_spec\n"
        f"spec = load_spec({str(path)!r})\n"
        "assert spec.space.families == ('resnet', 'plain'), spec.space\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'optuna')\n"
        "               or m.startswith(('archbench.models', 'archbench.data')))\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_binding_gives_space_families_their_default_depth() -> None:
    from archbench.runner.variants import bind

    spec = parse_spec(spec_with(variants=[], space={"family": ["resnet"], "width": [4]}))
    assert "resnet" not in spec.space.depth  # parsing reads no registry
    with pytest.raises(SpecError, match="bind the spec"):
        spec.grid()
    bound = bind(spec)
    assert [c["label"] for c in bound.grid()] == ["resnet20_w4"]
    assert bind(bound) == bound


# -- unknown names, with did-you-mean ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "bad", "suggestion"),
    [
        ({"dataset": {"name": "digitz"}}, "'digitz'", "'digits'"),
        ({"variants": [{"family": "resnte", "depth": 8}]}, "'resnte'", "'resnet'"),
        ({"variants": [{"preset": "resnet_20"}]}, "'resnet_20'", "'resnet20'"),
        ({"variants": ["resnet21"]}, "got 21", "6n+2"),
        ({"variants": [], "space": {"family": ["plian"]}}, "'plian'", "'plain'"),
    ],
)
def test_unknown_names_suggest_the_nearest(
    change: dict[str, Any], bad: str, suggestion: str
) -> None:
    message = error_of(spec_with(**change))
    assert bad in message and suggestion in message, message


def test_unknown_block_parameter_of_a_family() -> None:
    message = error_of(spec_with(variants=[{"family": "resnet", "params": {"blok": "basic"}}]))
    assert "'blok'" in message and "shortcut" in message


def test_a_preset_takes_no_depth_and_a_budget_no_preset() -> None:
    assert "takes no depth" in error_of(spec_with(variants=[{"preset": "resnet20", "depth": 8}]))
    message = error_of(spec_with(variants=["resnet20"], budget={"target": "20K"}))
    assert "fixed size" in message and "resnet20" in message


def test_duplicate_labels_are_rejected() -> None:
    twice = [{"family": "resnet", "depth": 8, "width": 8}] * 2
    assert "duplicate variant label" in error_of(spec_with(variants=twice))


# -- budgets ----------------------------------------------------------------------------------


def test_impossible_budget_names_the_nearest_budgets() -> None:
    message = error_of(spec_with(budget={"target": "100K", "tolerance": 0.001}))
    assert "resnet8_w8" in message
    assert "nearest below" in message and "nearest above" in message
    assert "tolerance" in message and "--tolerance" not in message


def test_budget_solves_each_variant_width() -> None:
    spec = parse_spec(
        spec_with(
            variants=[{"family": "resnet", "depth": 8}, {"family": "plain", "depth": 14}],
            budget={"target": "50K", "tolerance": 0.1},
        )
    )
    from archbench.runner.variants import dataset_shape, resolve_all

    resolved = resolve_all(spec, dataset_shape(spec))
    assert [v.label for v in resolved] == ["resnet8", "plain14"]
    assert all(abs(v.budget.rel_error) <= 0.1 for v in resolved)
    assert resolved[0].budget.width != resolved[1].budget.width  # deeper -> narrower


# -- grid, sampler, pruner, objectives --------------------------------------------------------


def test_grid_needs_enumerable_dimensions() -> None:
    space = {"family": ["resnet"], "depth": [8], "recipe": {"lr": {"low": 0.01, "high": 0.1}}}
    message = error_of(spec_with(variants=[], space=space))
    assert "space.recipe.lr" in message and "grid" in message and "'choices'" in message
    # An integer range with a step is enumerable.
    space = {"family": ["resnet"], "depth": {"low": 8, "high": 14, "step": 6}, "width": [4, 8]}
    spec = parse_spec(spec_with(variants=[], space=space))
    assert [c["label"] for c in spec.grid()] == [
        "resnet8_w4",
        "resnet8_w8",
        "resnet14_w4",
        "resnet14_w8",
    ]


def test_grid_is_variants_times_recipe_choices() -> None:
    spec = parse_spec(
        spec_with(
            variants=[{"family": "resnet", "depth": 8}, {"family": "plain", "depth": 8}],
            space={"family": ["resnet"], "depth": [14], "recipe": {"lr": [0.1, 0.05]}},
        )
    )
    grid = spec.grid()
    assert spec.n_trials() == len(grid) == 6
    assert {(c["label"], c["recipe"]["lr"]) for c in grid} == {
        (label, lr) for label in ("resnet8", "plain8", "resnet14") for lr in (0.1, 0.05)
    }


def test_sampled_study_rules() -> None:
    space = {"family": ["resnet", "plain"], "depth": [8], "width": [4, 8]}
    spec = parse_spec(spec_with(variants=[], space=space, sampler={"name": "tpe"}, trials=4))
    assert spec.n_trials() == 4
    # Fixed variants of a sampled study go under baselines.
    message = error_of(spec_with(space=space, sampler={"name": "tpe"}, trials=4))
    assert "baselines" in message
    message = error_of(spec_with(baselines=[{"family": "resnet", "depth": 8, "width": 8}]))
    assert "baselines" in message and "grid" in message


def test_nsga2_needs_two_objectives_and_pruning_one() -> None:
    space = {"family": ["resnet"], "depth": [8], "width": [4, 8]}
    common = {"variants": [], "space": space, "trials": 2}
    message = error_of(spec_with(**common, sampler={"name": "nsga2"}))
    assert "nsga2" in message and "objectives" in message
    spec = parse_spec(
        spec_with(**common, sampler={"name": "nsga2"}, objectives=["val_acc", "params"])
    )
    assert spec.directions == ["maximize", "minimize"]
    message = error_of(
        spec_with(
            **common,
            sampler={"name": "tpe"},
            objectives=["val_acc", "macs"],
            pruner={"name": "median"},
        )
    )
    assert "prune" in message and "multi-objective" in message


# -- seeds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seeds", [[0, 0], [-1], "0", [], [0.5], [True]])
def test_bad_seeds(seeds: Any) -> None:
    message = error_of(spec_with(seeds=seeds))
    assert "'seeds'" in message and "distinct non-negative ints" in message


def test_seeds_default_and_single_int() -> None:
    assert parse_spec(spec_with()).seeds == (0,)
    assert parse_spec(spec_with(seeds=3)).seeds == (3,)
    assert parse_spec(spec_with(seeds=[2, 0, 1])).seeds == (2, 0, 1)


# -- profiles ---------------------------------------------------------------------------------


def test_profiles_merge_deeply_and_name_the_study() -> None:
    data = spec_with(
        default_profile="cpu",
        profiles={
            "cpu": {"recipe": {"epochs": 3}},
            "gpu": {"dataset": {"val_size": 500}, "seeds": [0, 1, 2]},
        },
    )
    cpu = parse_spec(data)
    assert (cpu.profile, cpu.recipe.epochs, cpu.recipe.batch_size) == ("cpu", 3, 64)
    assert cpu.study_name == "t:cpu"
    gpu = parse_spec(data, "gpu")
    assert (gpu.recipe.epochs, gpu.dataset.val_size, gpu.dataset.name) == (1, 500, "digits")
    assert gpu.seeds == (0, 1, 2) and gpu.study_name == "t:gpu"
    assert "epochs: 3" in cpu.source and "profiles" not in cpu.source


def test_profile_errors() -> None:
    data = spec_with(profiles={"cpu": {"recipe": {"epochs": 3}}})
    message = error_of(data, "gpu")
    assert "unknown profile 'gpu'" in message and "cpu" in message
    assert "known profiles: none defined" in error_of(spec_with(), "cpu")
    assert "'epocs'" in error_of(spec_with(profiles={"cpu": {"recipe": {"epocs": 3}}}), "cpu")
    assert "['name']" in error_of(spec_with(profiles={"cpu": {"name": "other"}}), "cpu")
    assert "['bogus']" in error_of(spec_with(profiles={"cpu": {"bogus": 1}}), "cpu")


def test_default_profile_is_named_default() -> None:
    assert parse_spec(spec_with()).study_name == "t:default"


# -- config keys ------------------------------------------------------------------------------


def test_config_key_changes_with_anything_that_changes_results() -> None:
    # (Changed for issue 16: the key is the net's hash plus recipe, data and budget, not the
    # config's fields; archbench.runner.identity.)
    spec = parse_spec(spec_with(budget={"target": "20K", "tolerance": 0.2}))
    net, recipe = "0123456789abcdef", spec.recipe.to_dict()

    def key(**kw: Any) -> str:
        args = {"budget": spec.budget, "dataset": spec.dataset, **kw}
        return config_key(args.pop("net", net), args.pop("recipe", recipe), **args)

    assert key() == key() and key().startswith(net + "-")
    other = parse_spec(spec_with(budget={"target": "30K", "tolerance": 0.2}))
    assert key() != key(budget=other.budget)
    assert key() != key(recipe=spec.recipe.replace(lr=0.2).to_dict())
    assert key() != key(net="fedcba9876543210")
    assert key() != key(dataset=dataclasses.replace(spec.dataset, val_size=300))


# -- files and the CLI ------------------------------------------------------------------------


def write(tmp_path: Path, data: Any, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_invalid_spec_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "out" / "results.db"
    path = write(tmp_path, spec_with(storage=str(db), recipe={"lrr": 1}))
    for argv in (["validate", str(path)], ["run", str(path)], ["run", str(path), "--dry-run"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("archbench: error: ") and "'lrr'" in err
        assert "Traceback" not in err
    assert not db.exists() and not db.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_unreadable_and_non_yaml_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read experiment spec" in capsys.readouterr().err
    assert main(["validate", str(write(tmp_path, "name: [unclosed\n"))]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    with pytest.raises(SpecError):
        load_spec(write(tmp_path, "- a list\n"))


def test_validate_prints_one_summary_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "r.db"
    path = write(tmp_path, spec_with(storage=str(db), seeds=[0, 1]))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "valid" in out and "'t'" in out and "1 trial(s) x 2 seed(s)" in out
    assert not db.exists()


def test_dry_run_lists_variants_with_params_macs_and_budget_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "r.db"
    data = spec_with(
        storage=str(db),
        variants=[{"family": "resnet", "depth": 8}, {"family": "plain", "depth": 14}],
        budget={"target": "50K", "tolerance": 0.1},
    )
    path = write(tmp_path, data)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "budget: params 50K (tolerance 10%)" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    for column in ("params", "macs", "budget_error", "width"):
        assert column in header
    rows = [line for line in lines if line.startswith(("resnet8", "plain14"))]
    assert len(rows) == 2 and all("%" in row for row in rows)
    assert main(["run", str(path), "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "archbench.dry_run/1"
    assert [v["variant"] for v in doc["variants"]] == ["resnet8", "plain14"]
    for v in doc["variants"]:
        assert abs(v["params"] - 50_000) / 50_000 <= 0.1
        assert abs(v["budget_error"]) <= 0.1 and v["macs"] > 0
    assert not db.exists()


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_shipped_experiments_validate_and_dry_run(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Data that is absent here (CIFAR-10 offline) passes validation only where it can be
    # downloaded: pretend its host answers, as it does on a machine with internet access.
    import archbench.runner.preflight

    monkeypatch.setattr(archbench.runner.preflight, "unreachable", lambda url: None)
    data = yaml.safe_load(path.read_text())
    for profile in [None, *sorted(data.get("profiles") or {})]:
        extra = ["--profile", profile] if profile else []
        assert main(["validate", str(path), *extra]) == 0, capsys.readouterr().err
        assert main(["run", str(path), "--dry-run", *extra]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "trial(s)" in out


def test_val_acc_objective_needs_a_validation_split() -> None:
    data = spec_with()
    data["dataset"] = {**data["dataset"], "val_size": 0}
    assert "dataset.val_size is 0, but the objective 'val_acc' needs" in error_of(data)


@pytest.mark.parametrize(
    ("dataset", "words"),
    [
        ({"val_size": 0.001, "train_subset": 300}, ["0.001", "train_subset 300", "0 validation"]),
        ({"val_size": 0.0001}, ["0.0001", "of 1438 training images", "0 validation images"]),
    ],
)
def test_val_size_rounding_to_no_images_is_refused_at_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture, dataset: dict, words: list[str]
) -> None:
    """A fractional val_size that rounds to 0 images used to pass: every objective was 0 and
    the reference fell back to test error. Refused by validate, also through --set."""
    data = spec_with()
    data["dataset"] = {**data["dataset"], "val_size": 0.1, "train_subset": None}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    sets = [f"dataset.{k}={v}" for k, v in dataset.items()]
    args = ["validate", str(path), *[w for s in sets for w in ("--set", s)]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err


def test_unreadable_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    assert main(["results", "x", "--storage", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archbench: error: database:") and err.count("\n") == 1
