"""Workers placed on GPUs, tested without one: a faked CUDA (device count, properties) and a
faked process spawner record what device each worker of ``archbench run`` is given, and the
memory preflight counts every worker that shares a device."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import archbench.cli.run as cli_run
from archbench.cli import main
from archbench.errors import SpecError
from archbench.runner.preflight import check_data, check_memory, data_bytes
from archbench.training.device import environment_info, parse_gpus, place_workers

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

GIB = 2**30


def fake_cuda(monkeypatch: pytest.MonkeyPatch, count: int, memory: int = 80 * GIB) -> None:
    """``count`` CUDA devices of ``memory`` bytes each, as far as archbench asks."""
    props = types.SimpleNamespace(name="Fake H200", total_memory=memory, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)


def test_workers_go_round_robin_over_the_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, 4)
    assert place_workers(6) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert place_workers(3, "cuda") == ["cuda:0", "cuda:1", "cuda:2"]
    assert place_workers(5, "auto", (0, 3)) == ["cuda:0", "cuda:3", "cuda:0", "cuda:3", "cuda:0"]
    assert place_workers(2, "cuda:2") == ["cuda:2", "cuda:2"]  # an explicit device: all on it
    assert place_workers(2, "cpu") == ["cpu", "cpu"]


def test_bad_gpu_choices_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, 2)
    with pytest.raises(SpecError, match=r"--gpus 0,5: only 2 CUDA device\(s\)"):
        place_workers(2, "auto", (0, 5))
    with pytest.raises(SpecError, match=r"--gpus needs CUDA devices.*--device 'cpu'"):
        place_workers(2, "cpu", (0,))
    with pytest.raises(SpecError, match="'x' is not a device index"):
        parse_gpus("0,x")
    with pytest.raises(SpecError, match="listed twice"):
        parse_gpus("1,1")
    assert parse_gpus(" 0, 3 ") == (0, 3) and parse_gpus(None) is None


def test_without_cuda_auto_stays_on_the_cpu_and_gpus_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert place_workers(3) == ["auto"] * 3
    with pytest.raises(SpecError, match="without CUDA"):
        place_workers(1, "auto", (0,))


def test_each_run_records_its_gpu_name_index_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, 4, memory=141 * GIB)
    env = environment_info(torch.device("cuda", 3))
    assert (env["device"], env["gpu_name"], env["gpu_index"]) == ("cuda:3", "Fake H200", 3)
    assert env["gpu_mem_mb"] == 141 * 1024


def _spec(tmp_path: Path, **recipe: Any) -> Path:
    data = {
        "name": "place",
        "dataset": {"name": "digits", "val_size": 200},
        "recipe": {"epochs": 1, "batch_size": 64, "lr": 0.1, **recipe},
        "variants": [{"family": "resnet", "depth": 8, "width": 4}],
        "seeds": [0],
        "storage": str(tmp_path / "s.db"),
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class _FakeProcess:
    spawned: list[Any] = []

    def __init__(self, target: Any, args: tuple[Any, ...]) -> None:
        self.target, self.args, self.exitcode = target, args, 0
        _FakeProcess.spawned.append(self)

    def start(self) -> None:
        pass

    def join(self) -> None:
        pass


def test_run_gives_each_spawned_worker_its_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_cuda(monkeypatch, 2)
    _FakeProcess.spawned = []
    ctx = types.SimpleNamespace(Process=_FakeProcess)
    monkeypatch.setattr(cli_run.multiprocessing, "get_context", lambda method: ctx)
    main(["run", str(_spec(tmp_path)), "--workers", "5", "--quiet"])  # the fakes train nothing
    given = [p.args[2] for p in _FakeProcess.spawned]
    assert [o.device for o in given] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert [o.worker for o in given] == [0, 1, 2, 3, 4]
    assert "5 worker(s) x 1 thread(s) on cuda:0 (3), cuda:1 (2)" in capsys.readouterr().out

    _FakeProcess.spawned = []
    main(["run", str(_spec(tmp_path)), "--workers", "2", "--gpus", "1", "--quiet"])
    assert [p.args[2].device for p in _FakeProcess.spawned] == ["cuda:1", "cuda:1"]


def test_a_single_worker_trains_on_the_chosen_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cuda(monkeypatch, 4)
    seen: list[Any] = []
    monkeypatch.setattr(
        cli_run, "_worker_main", lambda spec, prof, options, *a: seen.append(options)
    )
    main(["run", str(_spec(tmp_path)), "--gpus", "3", "--quiet"])
    assert [o.device for o in seen] == ["cuda:3"]


def test_memory_preflight_counts_the_workers_sharing_a_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from archbench.runner.variants import load_checked

    spec = load_checked(str(_spec(tmp_path, batch_size=512)), None)
    one = check_memory(spec, torch.device("cpu"), 10**12, 0)
    assert one is not None
    four = check_memory(spec, torch.device("cpu"), 10**12, 0, runs=4)
    assert four is not None and four.total == 4 * one.total
    limit = 3 * one.total  # three of these fit on the device, four do not
    check_memory(spec, torch.device("cuda", 0), limit, 0, runs=3)
    with pytest.raises(SpecError, match=r"for 4 trainings at once on the device.*fewer workers"):
        check_memory(spec, torch.device("cuda", 0), limit, 0, runs=4)
    # Through the CLI: 2 GPUs of that size take 6 workers (3 each), not 7 (4 on cuda:0).
    data, _ = check_data(spec)
    with_data = check_memory(spec, torch.device("cpu"), 10**12, data_bytes(data))
    assert with_data is not None
    fake_cuda(monkeypatch, 2, memory=3 * with_data.total)
    path = str(_spec(tmp_path, batch_size=512))
    assert main(["validate", path, "--workers", "6"]) == 0
    assert main(["validate", path, "--workers", "7"]) == 2
    assert "for 4 trainings at once on the device" in capsys.readouterr().err
    # Fused seeds count too: 3 workers x 2 seeds need 6 at once (2 per GPU fit 3 each).
    spec2 = tmp_path / "two_seeds.yaml"
    spec2.write_text(Path(path).read_text().replace("seeds:\n- 0", "seeds:\n- 0\n- 1"))
    assert main(["validate", str(spec2), "--workers", "2"]) == 0
    assert main(["validate", str(spec2), "--workers", "2", "--fuse-seeds"]) == 0
    assert main(["validate", str(spec2), "--workers", "4", "--fuse-seeds"]) == 2
    assert "for 4 trainings at once" in capsys.readouterr().err


def test_fused_memory_preflight_counts_a_questions_round_not_the_spec_seed_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a question, a trial trains its round's seeds (``min_seeds`` at the first look),
    not the spec's seed list: fused, they are all on the device at once."""
    from archbench.runner.variants import load_checked

    path = _spec(tmp_path, batch_size=512)
    data = yaml.safe_load(path.read_text())
    data["variants"] = [
        {"family": "resnet", "depth": 8, "width": 4, "label": "a"},
        {"family": "resnet", "depth": 8, "width": 2, "label": "b"},
    ]
    data["question"] = {"compare": "all", "min_seeds": 3, "max_seeds": 4, "per_round": 1}
    path.write_text(yaml.safe_dump(data))
    spec = load_checked(str(path), None)
    data_set, _ = check_data(spec)
    one = check_memory(spec, torch.device("cpu"), 10**12, data_bytes(data_set))
    assert one is not None
    fake_cuda(monkeypatch, 1, memory=2 * one.total)  # two trainings fit, three do not
    assert main(["validate", str(path)]) == 0
    assert main(["validate", str(path), "--fuse-seeds"]) == 2
    assert "for 3 trainings at once" in capsys.readouterr().err
