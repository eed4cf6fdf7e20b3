"""The runner's contract with bad input, case by case: every bad spec and every bad argument
gets exit code 2 and one stderr line that names the culprit, with no traceback, and a store
that already holds results is left byte for byte as it was. ``validate`` and ``run`` reject
the same specs with the same line. A run whose configurations fail exits 3 and says which.

Everything runs in-process (``archbench.cli.main``): one tiny study (digits, 1 epoch) fills
the store once; no case trains."""

from __future__ import annotations

import gc
import hashlib
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import archbench.runner.preflight
import archbench.training.train
from archbench.cli import main
from archbench.errors import DataError
from archbench.runner.preflight import BYTES_PER_PARAM, SAVED_PER_ACT, MemoryEstimate

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

RUN = ["--quiet", "--threads", "1"]
BOMB = "\n".join(
    ["name: t", "dataset: {name: digits}", "variants: [{family: resnet}]", "profiles:"]
    + ['  l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    + [f"  l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 8)]
    + ["description: *l7"]
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with one finished study, an image folder of 3 classes, an empty data root."""
    root = tmp_path_factory.mktemp("bad_input")
    store = root / "store"
    store.mkdir()
    db = store / "t.db"
    spec = root / "good.yaml"
    spec.write_text(yaml.safe_dump(base(db)))
    assert main(["run", str(spec), *RUN]) == 0
    # Engines of that run closed now, not mid-test (SQLite writes its WAL back on close).
    gc.collect()
    images = root / "images"
    from PIL import Image

    for split in ("train", "test"):
        for c in "abc":
            (images / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (80 * i, 40, 10)).save(images / split / c / f"{i}.png")
    (root / "empty").mkdir()
    (root / "afile").write_text("not a folder\n")
    return {"root": root, "store": store, "db": db, "good": spec, "images": images}


def base(db: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 1, "batch_size": 64},
        "variants": [{"family": "resnet", "depth": 8, "width": 4}],
        "storage": str(db),
    }
    data.update(changes)
    return data


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def call(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert err.startswith("archbench: error: "), err
    assert needle.lower() in err.lower(), f"{needle!r} not in {err!r}"


# -- bad specs: (id, how to change the good spec, extra CLI arguments, what the line names) ----


def _set(path: str, value: Any) -> Any:
    """A change that sets one nested key ("recipe.lr") of the spec."""

    def change(data: dict[str, Any], world: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return data

    return change


def _with(**changes: Any) -> Any:
    return lambda data, world: {**data, **changes}


def _text(text: str) -> Any:
    return lambda data, world: text


def _world(fn: Any) -> Any:
    return lambda data, world: fn(data, world)


SPEC_CASES: list[tuple[str, Any, list[str], str]] = [
    # types
    ("name-int", _with(name=5), [], "'name'"),
    ("name-chars", _with(name="bad name!"), [], "'name'"),
    ("dataset-str", _with(dataset="digits"), [], "dataset"),
    ("val_size-str", _set("dataset.val_size", "ten"), [], "val_size"),
    ("epochs-str", _set("recipe.epochs", "3"), [], "epochs"),
    ("batch-float", _set("recipe.batch_size", 1.5), [], "batch_size"),
    ("lr-str", _set("recipe.lr", "fast"), [], "lr"),
    ("seeds-str", _with(seeds="0"), [], "seeds"),
    ("seeds-dup", _with(seeds=[0, 0]), [], "seeds"),
    ("seeds-neg", _with(seeds=[-1]), [], "seeds"),
    ("trials-grid", _with(trials=5), [], "trials"),
    ("variants-map", _with(variants={"family": "resnet"}), [], "variants"),
    ("depth-str", _set("variants.0.depth", "eight"), [], "depth"),
    ("storage-int", _with(storage=5), [], "storage"),
    ("objective-first", _with(objectives=["params"]), [], "objectives"),
    ("objective-unknown", _with(objectives=["val_acc", "bogus"]), [], "bogus"),
    ("nesterov-str", _set("recipe.nesterov", "yes"), [], "nesterov"),
    # ranges
    ("epochs-0", _set("recipe.epochs", 0), [], "epochs"),
    ("batch-neg", _set("recipe.batch_size", -1), [], "batch_size"),
    ("lr-0", _set("recipe.lr", 0), [], "lr"),
    ("lr-inf", _set("recipe.lr", math.inf), [], "lr"),
    ("momentum", _set("recipe.momentum", 1.5), [], "momentum"),
    ("weight_decay", _set("recipe.weight_decay", -1), [], "weight_decay"),
    ("label_smoothing", _set("recipe.label_smoothing", 1), [], "label_smoothing"),
    ("warmup_epochs", _set("recipe.warmup_epochs", 5), [], "warmup_epochs"),
    ("milestones", _set("recipe.milestones", [0.9, 0.5]), [], "milestones"),
    ("gamma", _set("recipe.gamma", 2), [], "gamma"),
    ("val_size-neg", _set("dataset.val_size", -1), [], "val_size"),
    ("val_size-0", _set("dataset.val_size", 0), [], "val_size"),
    ("train_subset-0", _set("dataset.train_subset", 0), [], "train_subset"),
    ("image_size-0", _set("dataset.image_size", 0), [], "image_size"),
    ("tolerance", _with(budget={"target": "5K", "tolerance": 5}), [], "tolerance"),
    ("budget-target", _with(budget={"target": "lots"}), [], "target"),
    ("pruner-warmup", _with(pruner={"name": "median", "warmup_epochs": -1}), [], "warmup_epochs"),
    # names
    ("top-key", _with(epochs=3), [], "'epochs'"),
    ("dataset-name", _set("dataset.name", "cifar11"), [], "cifar11"),
    ("family-name", _set("variants.0.family", "resnett"), [], "resnett"),
    ("preset-name", _with(variants=["nosuchnet"]), [], "nosuchnet"),
    ("schedule", _set("recipe.schedule", "linear"), [], "schedule"),
    ("sampler", _with(sampler={"name": "bogus"}), [], "sampler"),
    ("pruner", _with(pruner={"name": "bogus"}), [], "pruner"),
    ("profile", _with(), ["--profile", "gpu"], "profile"),
    ("dataset-option", _set("dataset.options", {"bogus": 1}), [], "bogus"),
    ("block-param", _set("variants.0.params", {"bogus": 1}), [], "bogus"),
    ("labels-dup", _with(variants=[{"family": "resnet"}, {"family": "resnet"}]), [], "duplicate"),
    ("preset-and-family", _set("variants.0.preset", "resnet20"), [], "preset"),
    ("augment", _set("dataset.options", {"augment": "bogus"}), [], "augment"),
    (
        "synthetic-option",
        _with(dataset={"name": "synthetic", "options": {"num_train": "x"}}),
        [],
        "num_train",
    ),
    # sizes: exact counts against the machine's memory
    ("width-1e6", _set("variants.0.width", 1_000_000), [], "resnet8_w1000000"),
    (
        "depth-60002",
        _with(
            variants=[{"family": "resnet", "depth": 60002, "width": 16}],
            recipe={"epochs": 1, "batch_size": 100_000},
        ),
        [],
        "'resnet60002_w16': stage 0 depth is 10,000, at most 2,000",
    ),
    # batch_size 10**9 on a small training set is valid: the batch that occurs is the whole
    # set (issue 20, case 8; tests/test_heal.py::test_memory_estimate_uses_the_batch_...).
    (
        "space-width",
        _with(
            variants=[],
            sampler={"name": "random"},
            trials=2,
            space={"family": "resnet", "depth": [8], "width": {"low": 4, "high": 10**6}},
        ),
        [],
        "resnet8_w1000000",
    ),
    (
        "baseline-outside-space",
        _with(
            variants=[],
            sampler={"name": "random"},
            trials=2,
            space={"family": "resnet", "depth": [8, 14], "width": [4]},
            baselines=[{"family": "resnet", "depth": 20, "width": 4}],
        ),
        [],
        "baselines[0]: baseline 'resnet20_w4': depth 20 is not in space.depth.resnet",
    ),
    (
        "baseline-width-outside-space",
        _with(
            variants=[],
            sampler={"name": "random"},
            trials=2,
            space={"family": "resnet", "depth": [8], "width": {"low": 4, "high": 8}},
            baselines=[{"family": "resnet", "depth": 8, "width": 16}],
        ),
        [],
        "width 16 is not in space.width.resnet (4..8)",
    ),
    (
        "budget-impossible",
        _with(
            variants=[{"family": "resnet", "depth": 8}], budget={"target": 100, "tolerance": 0.01}
        ),
        [],
        "budget",
    ),
    # storage
    ("storage-not-url", _with(storage="::::not a url::::"), [], "storage"),
    (
        "storage-deep",
        _world(lambda d, w: {**d, "storage": str(w["root"] / "a/b/c/x.db")}),
        [],
        "does not exist",
    ),
    (
        "storage-not-sqlite",
        _world(lambda d, w: {**d, "storage": str(w["good"])}),
        [],
        "not a SQLite",
    ),
    ("storage-dialect", _with(storage="foo://bar/x"), [], "unsupported database"),
    ("storage-folder", _world(lambda d, w: {**d, "storage": str(w["store"])}), [], "storage"),
    ("storage-journal", _with(storage="journal:"), [], "journal"),
    ("storage-memory-url", _with(storage="sqlite:///file:x?mode=memory"), [], "SQLite URL"),
    (
        "storage-under-file",
        _world(lambda d, w: {**d, "storage": str(w["root"] / "afile/x.db")}),
        [],
        "is a file",
    ),
    ("storage-flag", _with(), ["--storage", "::::"], "storage"),
    # data
    (
        "image-folder-missing",
        _world(
            lambda d, w: {
                **d,
                "dataset": {"name": "image_folder", "options": {"path": str(w["root"] / "nope")}},
            }
        ),
        [],
        "image_folder",
    ),
    (
        "image-folder-val",
        _world(
            lambda d, w: {
                **d,
                "dataset": {
                    "name": "image_folder",
                    "val_size": 9,
                    "options": {"path": str(w["images"])},
                },
            }
        ),
        [],
        "val_size",
    ),
    (
        "cifar10-absent",
        _world(
            lambda d, w: {**d, "dataset": {"name": "cifar10", "root": str(w["root"] / "empty")}}
        ),
        [],
        "cannot be downloaded",
    ),
    ("val-ge-train", _set("dataset.val_size", 1438), [], "val_size"),
    (
        "val-ge-subset",
        _with(dataset={"name": "digits", "val_size": 500, "train_subset": 400}),
        [],
        "val_size",
    ),
    (
        "val-plus-subset",
        _with(dataset={"name": "digits", "val_size": 400, "train_subset": 1200}),
        [],
        "val_size",
    ),
    # devices
    ("device-gpu0", _with(), ["--device", "gpu0"], "--device"),
    ("device-tpu", _with(), ["--device", "tpu"], "--device"),
    ("device-cuda", _with(), ["--device", "cuda:7"], "--device"),
    # YAML abuse
    ("yaml-bomb", _text(BOMB), [], "expands"),
    ("yaml-self", _text("name: t\ndataset: {name: digits}\nvariants: &a [*a]\n"), [], "itself"),
    ("yaml-deep", _text("name: t\nvariants: " + "[" * 3000 + "]" * 3000 + "\n"), [], "deep"),
    ("yaml-list", _text("- name: t\n"), [], "mapping"),
    ("yaml-syntax", _text("name: [unclosed\n"), [], "not valid YAML"),
    ("yaml-empty", _text(""), [], "mapping"),
    ("yaml-python-tag", _text("name: !!python/object/apply:os.system ['true']\n"), [], "YAML"),
    ("yaml-binary", _text("\x00\x01\x02"), [], "YAML"),
]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No download host answers (as on this machine), whatever the network."""
    monkeypatch.setattr(archbench.runner.preflight, "unreachable", lambda url: "offline (test)")


@pytest.mark.parametrize(
    ("change", "extra", "needle"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_bad_spec_is_refused_by_validate_and_run_alike(
    world: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    offline: None,
    change: Any,
    extra: list[str],
    needle: str,
) -> None:
    if "cuda:7" in extra and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    data = change(base(world["db"]), world)
    path = tmp_path / "bad.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    before = snapshot(world["store"])
    lines = []
    for command in ("validate", "run"):
        code, out, err = call(capsys, [command, str(path), *extra, *RUN])
        assert_one_line_error(code, err, needle)
        assert out == ""
        lines.append(err)
    assert lines[0] == lines[1], "validate and run disagree"
    assert snapshot(world["store"]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_there_are_at_least_60_bad_specs() -> None:
    assert len(SPEC_CASES) >= 60
    assert len({c[0] for c in SPEC_CASES}) == len(SPEC_CASES)


# -- bad arguments, every sub-command -----------------------------------------------------------


def _args(world: dict[str, Any]) -> list[tuple[list[str], str]]:
    good, db, root = str(world["good"]), str(world["db"]), world["root"]
    afile = str(root / "afile")
    return [
        ([], "command"),
        (["bogus"], "bogus"),
        (["blocks", "--bogus"], "--bogus"),
        (["families", "extra"], "extra"),
        (["models", "--json", "x"], "x"),
        (["describe", "nosuchnet"], "nosuchnet"),
        (["describe", "resnet6000000002"], "'resnet6000000002': stage 0 depth is"),
        (["describe", "wrn_100000000_10"], "'wrn_100000000_10': stage 0 depth"),
        (["describe", "resnet20", "--input-size", "0"], "--input-size"),
        (["describe", "resnet20", "--num-classes", "-1"], "--num-classes"),
        (["describe", "resnet20", "--in-channels", "x"], "--in-channels"),
        (["match", "resnet", "--params", "1M", "--tolerance", "5"], "--tolerance"),
        (["match", "resnet", "--params", "1M", "--tolerance", "0"], "--tolerance"),
        (["match", "resnet", "--params", "1M", "--tolerance", "nan"], "--tolerance"),
        (["match", "resnet", "--params", "lots"], "lots"),
        (["match", "resnet", "--params", "1M", "--depth", "0"], "--depth"),
        (["match", "resnett", "--params", "1M"], "resnett"),
        (["match", "resnet", "--params", "1M", "--width", "8"], "--width"),
        (["match", "resnet", "--params", "1M", "--param", "nokey"], "--param"),
        (["match", "resnet"], "--params"),
        (["train", "resnet8", "--epochs", "0"], "--epochs"),
        (["train", "resnet8", "--batch-size", "x"], "--batch-size"),
        (["train", "resnet8", "--lr", "nan"], "--lr"),
        (["train", "resnet8", "--lr", "-1"], "lr"),
        (["train", "resnet8", "--val-size", "1.5"], "--val-size"),
        (["train", "resnet8", "--val-size", "-3"], "--val-size"),
        (["train", "resnet8", "--seed", "-1"], "--seed"),
        (["train", "resnet8", "--diagnostics-every", "-1"], "--diagnostics-every"),
        (["train", "resnet8", "--train-subset", "0"], "--train-subset"),
        (["train", "resnet8", "--image-size", "0"], "--image-size"),
        (["train", "resnet8", "--schedule", "linear"], "--schedule"),
        (
            ["train", "resnet8", "--dataset", "digits", "--checkpoint-dir", afile],
            "--checkpoint-dir",
        ),
        (["train", "resnet8", "--dataset", "digits", "--json", str(root)], "--json"),
        (["train", "resnet8", "--dataset", "digits", "--device", "gpu0"], "--device"),
        (["train", "resnet8", "--dataset", "nope"], "nope"),
        (["train", "nosuchnet", "--dataset", "digits"], "nosuchnet"),
        (["train", "wrn_100000000_10", "--dataset", "digits", "--epochs", "1"], "at most 2,000"),
        (["train", str(root / "afile"), "--dataset", "digits"], "not valid JSON"),
        (["validate", good, "--threads", "-1"], "--threads"),
        (["validate", str(root / "missing.yaml")], "cannot read"),
        (["run", good, "--heartbeat", "0"], "--heartbeat"),
        (["run", good, "--heartbeat", "-5"], "--heartbeat"),
        (["run", good, "--threads", "0"], "--threads"),
        (["run", good, "--workers", "0"], "--workers"),
        (["run", good, "--workers", "two"], "--workers"),
        (["run", good, "--results-dir", afile], "--results-dir"),
        (["run", good, "--device", "gpu0"], "--device"),
        (["run", good, "--storage", "::::not a url::::"], "storage"),
        (["run", good, "--profile", "nope"], "profile"),
        (["worker", good, "--heartbeat", "0"], "--heartbeat"),
        (["worker", good, "--device", "gpu0"], "--device"),
        (["worker", good, "--storage", str(root / "x/y/z.db")], "does not exist"),
        (["results", "nope", "--storage", db], "nope"),
        (["results", "t", "--storage", str(root / "missing.db")], "no results database"),
        (["export", "nope", "--storage", db, "--out", str(root / "x.csv")], "nope"),
        (["export", "t", "--storage", db, "--out", str(root / "no/such/x.csv")], "--out"),
        (["export", "t", "--storage", db, "--out", str(root)], "--out"),
        (["export", "t", "--storage", db, "--out", afile + "/x.csv"], "--out"),
        (["export", "t", "--storage", db, "--out", "x.csv", "--format", "xls"], "--format"),
        (["export", "t", "--storage", db, "--out", "x.csv", "--table", "bogus"], "--table"),
        (["export", "t", "--storage", db], "--out"),
        (["plot", "bogus", "t", "--storage", db], "bogus"),
        (["plot", "all", "t", "--storage", db, "--metric", "bogus"], "--metric"),
        (["plot", "all", "t", "--storage", db, "--out", afile], "--out"),
        (["plot", "all", "nope", "--storage", db], "nope"),
        (["report", "t", "--storage", db, "--out", str(root)], "--out"),
        (["report", "t", "--storage", db, "--pairs", "bogus"], "--pairs"),
        (["stats", "t", "--storage", db, "--csv", afile], "--csv"),
        (["stats", "nope", "--storage", db], "nope"),
        (["eval", "1"], "--storage"),
        (["eval", "nope", "--storage", db, "--label", "x", "--seed", "0"], "nope"),
        (["eval", "t", "--storage", db], "--label"),
        (["eval", "1", "--storage", db, "--seed", "-1"], "--seed"),
        (["eval", "999", "--storage", db], "no run 999"),
        (["run", good, "--log", "bogus:x"], "bogus"),
        (["validate", good, "--log", "tensorboard"], "KIND:TARGET"),
        (["train", "resnet8", "--dataset", "digits", "--log", "mlflow:"], "mlflow"),
        (["stats", "t", "--storage", db, "--format", "html"], "--format"),
        (["stats", "t", "--storage", db, "--format", "latex", "--json"], "alternatives"),
        (["results", "t", "--storage", db, "--format", "html"], "--format"),
        (["schema", "extra"], "extra"),
    ]


def test_bad_arguments_of_every_subcommand(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from archbench.cli import build_parser

    cases = _args(world)
    commands = {c[0][0] for c in cases if c[0]}
    parser_commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert parser_commands <= commands, parser_commands - commands
    before = snapshot(world["store"])
    listing = sorted(p.name for p in world["root"].iterdir())
    for argv, needle in cases:
        code, out, err = call(capsys, argv)
        assert out == "", (argv, out)
        try:
            assert_one_line_error(code, err, needle)
        except AssertionError as exc:
            raise AssertionError(f"{argv}: {exc}") from None
    assert snapshot(world["store"]) == before
    assert sorted(p.name for p in world["root"].iterdir()) == listing


# -- what passes, and what it says --------------------------------------------------------------


def test_validate_says_what_run_will_create_and_download(
    world: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(archbench.runner.preflight, "unreachable", lambda url: None)
    data = base(tmp_path / "new" / "t.db", dataset={"name": "cifar10", "root": str(tmp_path)})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = call(capsys, ["validate", str(path)])
    assert code == 0, err
    assert "valid" in out and "to be downloaded" in out
    assert "first trial downloads it" in err and "run creates it" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_memory_estimate_arithmetic() -> None:
    est = MemoryEstimate(
        params=1000, acts_per_image=500, batch_size=8, bytes_per_act=4, data_bytes=77
    )
    assert est.param_bytes == 1000 * BYTES_PER_PARAM
    assert est.act_bytes == 500 * 8 * 4 * SAVED_PER_ACT
    assert est.total == est.param_bytes + est.act_bytes + 77
    assert "1,000 params" in est.describe() and "batch 8" in est.describe()


# -- the exit code tells the truth --------------------------------------------------------------


def test_a_run_with_failed_configurations_exits_3_and_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = archbench.training.train.train
    calls: list[str] = []

    def flaky(net: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(net.spec.name)
        if net.spec.name.startswith("plain"):
            raise DataError("disk vanished (test)")
        return real(net, *args, **kwargs)

    monkeypatch.setattr(archbench.training.train, "train", flaky)
    db = tmp_path / "f.db"
    variants = [
        {"family": "resnet", "depth": 8, "width": 4},
        {"family": "plain", "depth": 8, "width": 4},
    ]
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(base(db, name="f", variants=variants)))
    code, out, err = call(capsys, ["run", str(path), *RUN])
    assert code == 3, err
    assert "Traceback" not in err
    assert "failed: plain8_w4: DataError: disk vanished (test)" in err
    assert "1 configuration(s) did not finish" in err and "run the same command again" in err
    assert f"archbench run {path}" in err
    assert "resnet8_w4" in out  # the finished configuration's results are still shown

    monkeypatch.setattr(archbench.training.train, "train", real)
    code, out, err = call(capsys, ["run", str(path), *RUN])
    assert code == 0, err
    assert "1 interrupted trial(s) re-queued" in out and "2/2 trial(s) finished" in out
