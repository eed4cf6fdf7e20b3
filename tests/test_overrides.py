"""Command-line overrides of a spec: ``--set KEY.PATH=VALUE`` and ``--dataset NAME``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archbench.cli import main
from archbench.errors import SpecError
from archbench.runner.overrides import apply_overrides, parse_override
from archbench.runner.spec import load_spec

SPEC = {
    "name": "t",
    "dataset": {"name": "digits", "val_size": 200},
    "recipe": {"epochs": 1, "batch_size": 64},
    "variants": [{"family": "resnet", "depth": 8, "width": 8}],
    "profiles": {"small": {"recipe": {"epochs": 2, "lr": 0.05}}},
}


def write(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("recipe.epochs=3", ("recipe", "epochs"), 3),
        ("recipe.lr=0.1", ("recipe", "lr"), 0.1),
        ("recipe.nesterov=true", ("recipe", "nesterov"), True),
        ("dataset.train_subset=null", ("dataset", "train_subset"), None),
        ("recipe.milestones=[0.3, 0.6]", ("recipe", "milestones"), [0.3, 0.6]),
        ("dataset.name=cifar10", ("dataset", "name"), "cifar10"),
        (" seeds = [0, 1, 2] ", ("seeds",), [0, 1, 2]),
        ("name=a=b", ("name",), "a=b"),
    ],
)
def test_values_are_yaml_scalars(text: str, path: tuple[str, ...], value: object) -> None:
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("recipe.epochs", "KEY=VALUE"),
        ("=3", "KEY=VALUE"),
        ("recipe..epochs=3", "empty part"),
        ("profiles.cpu.seeds=[0]", "--profile"),
        ("recipe.lr=[1,", "not valid YAML"),
    ],
)
def test_malformed_overrides(text: str, needle: str) -> None:
    with pytest.raises(SpecError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        parse_override(text)


def test_overrides_apply_after_the_profile_and_leave_the_input_alone(tmp_path: Path) -> None:
    path = write(tmp_path)
    spec = load_spec(path, "small", overrides=["recipe.epochs=5", "dataset.options.augment=none"])
    assert spec.recipe.epochs == 5 and spec.recipe.lr == 0.05  # the profile's lr survives
    assert spec.dataset.options == {"augment": "none"}  # a missing mapping is created
    assert spec.profile == "small"
    assert "epochs: 5" in spec.source  # the stored spec text shows what actually ran
    data = {"recipe": {"epochs": 1}}
    assert apply_overrides(data, ["recipe.epochs=2"]) == {"recipe": {"epochs": 2}}
    assert data == {"recipe": {"epochs": 1}}
    assert load_spec(path, "small").recipe.epochs == 2


def test_errors_name_the_key_path(tmp_path: Path) -> None:
    path = write(tmp_path)
    with pytest.raises(SpecError, match=r"'variants\.0\.depth'.*'variants' is a list"):
        load_spec(path, overrides=["variants.0.depth=20"])
    with pytest.raises(SpecError, match=r"'recipe\.epochs\.x'.*'recipe\.epochs' is a int"):
        load_spec(path, overrides=["recipe.epochs.x=1"])
    with pytest.raises(SpecError, match="lrr"):  # the spec's own validation, unchanged
        load_spec(path, overrides=["recipe.lrr=1"])
    with pytest.raises(SpecError, match="epochs"):
        load_spec(path, overrides=["recipe.epochs=zero"])


def test_cli_set_and_dataset_shorthand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(write(tmp_path))
    argv = [
        "validate",
        path,
        "--profile",
        "small",
        "--set",
        "recipe.epochs=4",
        "--set",
        "seeds=[0, 1]",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 seed(s)" in out and "overrides: recipe.epochs=4, seeds=[0, 1]" in out
    assert main(["run", path, "--dataset", "fashion_mnist", "--dry-run"]) == 0
    assert "on fashion_mnist" in capsys.readouterr().out
    # An explicit --set wins over the shorthand; a bad name fails in one line naming it.
    assert main(["validate", path, "--dataset", "nope", "--set", "dataset.name=digits"]) == 0
    capsys.readouterr()
    assert main(["validate", path, "--set", "recipe.epochs.x=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'recipe.epochs.x'" in err


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        ("epochs=5", "'recipe.epochs'"),  # issue 19: top-level typos were merged and ignored
        ("seed=[5]", "'seeds'"),
        ("trails=3", "'trials'"),
        ("recipe.epoch=5", "'epochs'"),
        ("dataset.nme=digits", "'name'"),
        ("sampler.nam=grid", "'name'"),
        ("dataset.options.augmnt=none", "'augment'"),
    ],
)
def test_override_typos_at_any_depth_are_refused_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, hint: str
) -> None:
    path = write(tmp_path)
    code = main(["run", str(path), "--set", override, "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"did you mean {hint}" in err


def test_a_yaml_top_level_typo_gets_the_same_hint(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "trails": 3}))
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['trails'\].*did you mean 'trials'"):
        load_spec(path)
