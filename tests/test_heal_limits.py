"""Issue 20, "nothing lost, ever": one line and the right exit code where a traceback was
(out of memory, a full disk, Ctrl-C, read-only or immutable stores), `validate` refusing what
`run` refuses, names that become paths, bounded NetSpec checks, the batch the memory
estimate uses."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from heal_helpers import EPOCH1, RUN, run_cli, spec_file

import archbench.training.train
from archbench.store import ResultsStore

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def test_memory_estimate_uses_the_batch_that_can_occur(tmp_path: Path) -> None:
    # 1,238 training images: a batch of 10**8 is one batch of 1,238 (the loader's last batch).
    spec = spec_file(
        tmp_path, str(tmp_path / "b.db"), recipe={"epochs": 1, "batch_size": 10**8, "lr": 0.1}
    )
    code, out, err = run_cli("validate", str(spec))
    assert code == 0, err
    assert "largest variant needs" in out and " GB of" not in out.split("needs")[1][:12]


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"name": "x" * 300}, "'name' is 300 characters long, at most 64"),
        ({"name": "../x"}, "'name' must be letters, digits"),
        ({"default_profile": "../../../../x", "profiles": {"../../../../x": {}}}, "profile"),
        ({"default_profile": "y" * 300, "profiles": {"y" * 300: {}}}, "300 characters long"),
        ({"variants": [{"family": "resnet", "depth": 8, "label": "z" * 300}]}, "at most 100"),
        ({"variants": [{"family": "resnet", "depth": 8, "label": "a\nb"}]}, "printable"),
    ],
)
def test_names_that_become_paths_are_checked_at_validate(
    tmp_path: Path, changes: dict[str, Any], said: str
) -> None:
    spec = spec_file(tmp_path, str(tmp_path / "n.db"), **changes)
    for command in ("validate", "run"):
        code, out, err = run_cli(command, str(spec), *(RUN if command == "run" else []))
        assert code == 2, (out, err)
        assert said in err and err.count("\n") == 1 and len(err) < 400
    assert not (tmp_path / "n.db").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["h.yaml"]


def test_a_profile_on_the_command_line_is_checked(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, str(tmp_path / "n.db"))
    code, _, err = run_cli("report", str(spec), "--profile", "../../x")
    assert code == 2 and "profile must be letters" in err


def netspec(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "stem": {"kind": "cifar", "width": 8},
        "stages": [{"block": "basic", "depth": 1, "width": 8}],
        "head": {"kind": "linear"},
        "num_classes": 10,
        "in_channels": 1,
        "input_size": 8,
    }
    data.update(changes)
    return data


HOSTILE = {
    "deep": ("[" * 100_000 + "]" * 100_000, "nests deeper than 12 levels"),
    "classes": (
        '{"stem": {"kind": "cifar", "width": 8}, "stages": [{"block": "basic", "depth": 1, '
        '"width": 8}], "num_classes": 1' + "0" * 400 + "}",
        "num_classes is a 401-digit number, at most 1,000,000",
    ),
    # past Python's 4,300-digit limit on int parsing: json.loads raises a plain ValueError
    "digits": (
        '{"stem": {"kind": "cifar", "width": 8}, "num_classes": 1' + "0" * 5_000 + "}",
        "an integer of more than 4,300 digits",
    ),
    "stages": (
        netspec(stages=[{"block": "basic", "depth": 1, "width": 8}] * 10_000),
        "10,000 stages, at most 64",
    ),
    "stages100k": (
        netspec(stages=[{"block": "basic", "depth": 1, "width": 8}] * 100_000),
        "larger than 1,000,000 bytes",
    ),
    "blocks": (
        netspec(stages=[{"block": "basic", "depth": 1_500, "width": 8}] * 3),
        "4,500 blocks in all, at most 2,000",
    ),
    "depth": (
        netspec(stages=[{"block": "basic", "depth": 10**12, "width": 8}]),
        "stage 0 depth is 1,000,000,000,000, at most 2,000",
    ),
    "groups": (
        netspec(stages=[{"block": "basic", "depth": 1, "width": 8, "params": {"x": 10**40}}]),
        "stage 0 params.x is a 41-digit number",
    ),
    "big": (netspec(name="x" * 2_000_000), "larger than 1,000,000 bytes"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("command", ["describe", "train"])
def test_hostile_netspec_json_is_refused_in_one_line_quickly(
    tmp_path: Path, case: str, command: str
) -> None:
    import json
    import time

    content, said = HOSTILE[case]
    path = tmp_path / "net.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    args = [command, str(path)]
    if command == "train":
        args += ["--dataset", "digits", "--epochs", "1"]
    start = time.perf_counter()
    code, out, err = run_cli(*args)
    assert time.perf_counter() - start < 10
    assert code == 2, (out, err[-500:])
    assert said in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("where", ["yaml", "set"])
def test_a_spec_integer_past_pythons_digit_limit_is_one_line(tmp_path: Path, where: str) -> None:
    """PyYAML parses ints with ``int()``, which refuses more than 4,300 digits with a plain
    ValueError: the spec file and ``--set`` alike must say so in one line, exit 2."""
    huge = "1" + "0" * 5_000
    spec = spec_file(tmp_path, str(tmp_path / "d.db"))
    extra: tuple[str, ...] = ("--set", f"recipe.epochs={huge}")
    if where == "yaml":
        spec.write_text(spec.read_text().replace("epochs: 2", f"epochs: {huge}"))
        extra = ()
    code, out, err = run_cli("validate", str(spec), *extra)
    assert code == 2, out
    assert "more than 4,300 digits" in err and err.count("\n") == 1


def test_a_variant_too_deep_to_train_fails_validate(tmp_path: Path) -> None:
    spec = spec_file(
        tmp_path, str(tmp_path / "d.db"), variants=[{"family": "resnet", "depth": 60_002}]
    )
    code, out, err = run_cli("validate", str(spec))
    assert code == 2, out
    assert "depth is 10,000, at most 2,000" in err and err.count("\n") == 1


def _validate_and_run_say_the_same(spec: Path, *extra: str) -> str:
    lines = []
    for command in ("validate", "run"):
        code, out, err = run_cli(command, str(spec), *extra, *(RUN if command == "run" else []))
        assert code == 2, (command, out, err)
        assert err.count("\n") == 1 and "Traceback" not in err
        lines.append(err)
    assert lines[0] == lines[1]
    return lines[0]


@pytest.mark.parametrize(
    ("storage", "said"),
    [
        ("/dev/null", "/dev/null is not a regular file"),
        ("/proc/archbench.db", "cannot create files in /proc"),
        ("mysql://u@localhost/db", "no database driver for mysql://u@localhost/db"),
    ],
)
def test_validate_refuses_what_run_refuses(tmp_path: Path, storage: str, said: str) -> None:
    spec = spec_file(tmp_path, storage)
    assert said in _validate_and_run_say_the_same(spec)


def test_validate_refuses_a_store_of_a_newer_schema(tmp_path: Path) -> None:
    import sqlite3

    from archbench.store.schema import SCHEMA_VERSION, meta

    db = tmp_path / "new.db"
    ResultsStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE {meta.name} SET schema_version = {SCHEMA_VERSION + 1}")
    spec = spec_file(tmp_path, str(db))
    said = _validate_and_run_say_the_same(spec)
    assert f"has schema version {SCHEMA_VERSION + 1}" in said and "upgrade archbench" in said


@contextlib.contextmanager
def read_only_folder(folder: Path):
    """A read-only file system where mount works (root), else a folder without write
    permission (enough for a non-root user)."""
    import os
    import subprocess

    mounted = False
    if os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
            ).returncode
            == 0
        )
        if not mounted:
            pytest.skip("root without mount: cannot make a read-only folder")
    try:
        yield (
            lambda: (
                subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
                if mounted
                else folder.chmod(0o555)
            )
        )
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)  # lazy: engines may hold it
        else:
            folder.chmod(0o755)


def test_a_store_on_a_read_only_file_system(tmp_path: Path) -> None:
    import shutil

    work, ro = tmp_path / "work", tmp_path / "ro"
    work.mkdir()
    ro.mkdir()
    code, _, err = run_cli("run", str(spec_file(work, str(work / "h.db"), recipe=EPOCH1)), *RUN)
    assert code == 0, err
    spec = spec_file(tmp_path, str(ro / "h.db"), recipe=EPOCH1)
    with read_only_folder(ro) as make_read_only:
        for f in work.glob("h.db*"):  # the database, and its write-ahead log if any
            shutil.copy(f, ro / f.name)
        make_read_only()
        said = _validate_and_run_say_the_same(spec)
        assert "cannot create files in" in said and str(ro) in said
        for command in ("results", "stats"):
            code, out, err = run_cli(command, str(spec))
            assert "Traceback" not in err and "cannot open" not in err + out
            assert code == 0 and "resnet8_w4" in out, (command, out, err)
        from archbench.analysis.data import load_study
        from archbench.store.storage import create_engine, resolve_storage

        resolved = resolve_storage(ro / "h.db")
        study, why = load_study(resolved, create_engine(resolved), "h:default")
        assert study is not None and len(study.trials) == 1, why


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (
            lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            "out of memory",
        ),
        (lambda: MemoryError(), "out of memory"),
    ],
)
def test_out_of_memory_in_a_trial_is_a_failed_line_and_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Any, said: str
) -> None:
    db = tmp_path / "m.db"
    spec = spec_file(tmp_path, str(db), recipe=EPOCH1)
    real = archbench.training.train.train

    def oom(*args: Any, **kwargs: Any) -> Any:
        raise fault()

    monkeypatch.setattr(archbench.training.train, "train", oom)
    code, out, err = run_cli("run", str(spec), *RUN)
    assert code == 3, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert "failed" in out + err and said in (out + err).lower()
    runs = ResultsStore(db).runs(experiment="h")
    assert list(runs["status"]) == ["failed"]
    monkeypatch.setattr(archbench.training.train, "train", real)
    code, _, err = run_cli("run", str(spec), *RUN)  # nothing lost: a rerun finishes it
    assert code == 0, err
    assert list(ResultsStore(db).runs(experiment="h")["status"]) == ["completed"]


def _archbench(*args: str, cwd: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "archbench", *args]


def _env() -> dict[str, str]:
    import os

    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": f"{root}:{path}" if path else root,
    }


@pytest.mark.integration
def test_ctrl_c_prints_one_line_not_optunas_traceback(tmp_path: Path) -> None:
    import signal
    import subprocess

    spec = spec_file(
        tmp_path, str(tmp_path / "i.db"), recipe={"epochs": 200, "batch_size": 16, "lr": 0.1}
    )
    proc = subprocess.Popen(
        _archbench("run", str(spec), *RUN, cwd=tmp_path),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("trial 0:"):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "archbench: interrupted"


@contextlib.contextmanager
def small_file_system(folder: Path, size: str):
    import os
    import subprocess

    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
        ).returncode
    ):
        pytest.skip("needs root and mount for a small tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize(
    ("where", "size", "said"),
    [
        ("store", "200k", "no space left for the database"),
        ("checkpoints", "24k", "failed: resnet8_w4: ResourceError: no space left on the device"),
        ("journal", "100k", "no space left"),
    ],
)
def test_a_full_disk_is_one_line_and_exit_3(
    tmp_path: Path, where: str, size: str, said: str
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    with small_file_system(full, size):
        storage = {"store": str(full / "x.db"), "journal": f"journal:{full / 'j.log'}"}.get(
            where, str(tmp_path / "x.db")
        )
        spec = spec_file(tmp_path, storage, recipe={"epochs": 3, "batch_size": 64, "lr": 0.1})
        extra = ["--results-dir", str(full if where == "checkpoints" else tmp_path / "ck")]
        code, out, err = run_cli("run", str(spec), *RUN, *extra)
    assert code == 3, (out, err)
    assert said in out + err and "Traceback" not in err + out
    assert "free some space and rerun" in out + err


def test_a_full_disk_at_the_checkpoint_without_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection where no small tmpfs can be mounted: the checkpoint's write runs out.
    import errno

    import archbench.training.checkpoint as checkpoint

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    db = tmp_path / "f.db"
    code, out, err = run_cli("run", str(spec_file(tmp_path, str(db), recipe=EPOCH1)), *RUN)
    assert code == 3 and "Traceback" not in out + err
    assert "failed: resnet8_w4: ResourceError: no space left on the device of " in err
    assert "last.pt; free some space and rerun" in err
    assert list(ResultsStore(db).runs(experiment="h")["status"]) == ["failed"]


def test_an_immutable_store_folder_is_refused_by_validate_and_run(tmp_path: Path) -> None:
    import subprocess

    folder = tmp_path / "imm"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i needs root and a file system that supports it")
    try:
        said = _validate_and_run_say_the_same(spec_file(tmp_path, str(folder / "s.db")))
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    assert f"cannot create files in {folder} (Operation not permitted)" in said
