"""Issue 20, "nothing lost, ever": damage that used to block work forever heals itself
(checkpoints moved aside, a journal's torn last line dropped) or is refused in one line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from heal_helpers import EPOCH1, RUN, run_cli, spec_file

import archbench.training.train
from archbench.data import LoadedData, load_dataset
from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec, build_net
from archbench.store import ResultsStore
from archbench.training.checkpoint import CheckpointError, load_checkpoint
from archbench.training.train import Recipe, seed_everything, train

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

RECIPE = Recipe(epochs=2, batch_size=32, lr=0.05)


@pytest.fixture(scope="module")
def data() -> LoadedData:
    return load_dataset("digits", train_subset=128, test_subset=64, val_size=32)


def tiny_net(width: int = 8) -> torch.nn.Module:
    spec = NetSpec(
        stem=StemSpec("cifar", width),
        stages=(StageSpec("basic", 1, width),),
        head=HeadSpec("linear"),
        num_classes=10,
        in_channels=1,
        input_size=8,
    )
    seed_everything(0)
    return build_net(spec)


def damage(path: Path, how: str, data: LoadedData) -> None:
    if how == "cut":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x00\xffnot a checkpoint" * 50)
    elif how == "other_seed":
        path.unlink()
        train(
            tiny_net(),
            data,
            RECIPE.replace(epochs=1),
            seed=5,
            checkpoint_dir=path.parent,
            progress=False,
        )
    elif how == "other_model":
        path.unlink()
        train(
            tiny_net(4), data, RECIPE.replace(epochs=1), checkpoint_dir=path.parent, progress=False
        )
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["cut", "empty", "garbage", "other_seed", "other_model"])
def test_a_bad_checkpoint_is_moved_aside_and_the_run_restarts(
    data: LoadedData, tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    train(tiny_net(), data, RECIPE.replace(epochs=1), checkpoint_dir=tmp_path, progress=False)
    last = tmp_path / "last.pt"
    damage(last, how, data)
    kept = last.read_bytes()
    with pytest.raises(CheckpointError):  # the library default still refuses
        train(tiny_net(), data, RECIPE, checkpoint_dir=tmp_path, progress=False)
    with caplog.at_level(logging.WARNING, logger="archbench.training.checkpoint"):
        result = train(
            tiny_net(),
            data,
            RECIPE,
            checkpoint_dir=tmp_path,
            progress=False,
            bad_checkpoint="restart",
        )
    assert [m.epoch for m in result.epochs] == [1, 2]  # from scratch
    aside = list(tmp_path.glob("last.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == kept
    assert load_checkpoint(last)["epoch"] == 2
    said = [r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]
    # Same result as a run that never saw the damaged file (CPU, one thread).
    fresh = train(tiny_net(), data, RECIPE, progress=False)
    assert result.final.val_err == fresh.final.val_err


def test_a_study_run_heals_a_checkpoint_cut_in_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "h.db"
    spec = spec_file(tmp_path, str(db))
    real = archbench.training.train.train

    def interrupted(*args: Any, on_epoch_end: Any, **kwargs: Any) -> Any:
        def stop(metrics: Any, diagnostics: Any) -> bool:
            on_epoch_end(metrics, diagnostics)
            raise KeyboardInterrupt

        return real(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(archbench.training.train, "train", interrupted)
    assert run_cli("run", str(spec), *RUN)[0] == 130
    monkeypatch.setattr(archbench.training.train, "train", real)
    (last,) = tmp_path.rglob("last.pt")
    raw = last.read_bytes()
    last.write_bytes(raw[: len(raw) // 2])
    code, _, err = run_cli("run", str(spec), *RUN)
    assert code == 0, err
    runs = ResultsStore(db).runs(experiment="h")
    assert list(runs["status"]) == ["completed"] and list(runs["epochs_done"]) == [2]
    assert len(list(tmp_path.rglob("last.pt.corrupt-*"))) == 1


@pytest.fixture(scope="module")
def journal_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("journal")
    journal = root / "j.log"
    spec = spec_file(root, f"journal:{journal}", recipe=EPOCH1)
    code, _, err = run_cli("run", str(spec), *RUN)
    assert code == 0, err
    return {"spec": spec, "journal": journal}


def copy_study(journal_study: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    for f in journal_study["journal"].parent.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    journal = tmp_path / "j.log"
    spec = spec_file(tmp_path, f"journal:{journal}", recipe=EPOCH1)
    return spec, journal


def test_a_journal_cut_mid_line_is_recovered(
    journal_study: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec, journal = copy_study(journal_study, tmp_path)
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code":5,"worker_id":"x","trial_id":0,"para')
    other = spec_file(tmp_path / "o", f"journal:{journal}", name="h2", recipe=EPOCH1)
    with caplog.at_level(logging.WARNING, logger="archbench.store.journal_check"):
        code, _, err = run_cli("run", str(other), *RUN)  # appends a new study to it
    assert code == 0, err
    said = [r.getMessage() for r in caplog.records if "cut off mid-write" in r.getMessage()]
    assert len(said) == 1
    assert journal.read_bytes().startswith(whole)
    for line in journal.read_bytes().splitlines():
        assert line.startswith(b"{") and line.endswith(b"}")
    for command in ("results", "stats"):
        code, _, err = run_cli(command, str(spec))
        assert code == 0, err
    runs = ResultsStore(tmp_path / "j.archbench.db").runs()
    assert sorted(runs["experiment"]) == ["h", "h2"] and set(runs["status"]) == {"completed"}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (b"garbage here", "not JSON"),
        (b'{"op_code":1,\x00\x00"x":1}', "NUL bytes"),
        (b'{"op_code":99,"worker_id":"x"}', "unknown op_code 99"),
    ],
)
@pytest.mark.parametrize("command", ["run", "validate", "stats", "report"])
def test_a_damaged_journal_line_is_refused_naming_it(
    journal_study: dict[str, Path], tmp_path: Path, bad: bytes, why: str, command: str
) -> None:
    spec, journal = copy_study(journal_study, tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    damaged = b"".join([*lines[:2], bad + b"\n", *lines[2:]])
    journal.write_bytes(damaged)
    args = [command, str(spec)] + (RUN if command == "run" else [])
    if command == "report":
        args += ["--out", str(tmp_path / "report")]
    code, out, err = run_cli(*args)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "line 3 is damaged" in err and why in err and str(journal) in err
    assert journal.read_bytes() == damaged  # refused, nothing changed
