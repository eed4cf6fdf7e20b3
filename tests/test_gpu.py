"""The CUDA path, on a real GPU (skipped without one; ``pytest -m gpu``): mixed precision,
channels_last and torch.compile; fused seeds; several workers on one device; resume; and the
device choices that can be checked without a GPU (fp16 fallback, evaluation batch)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from archbench.data import LoadedData, load_dataset
from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec, build_net
from archbench.training.device import seed_everything
from archbench.training.fused import train_fused
from archbench.training.recipe import Recipe
from archbench.training.train import amp_dtype, eval_batch_size, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
SPEC = NetSpec(
    stem=StemSpec("cifar", 16),
    stages=(StageSpec("basic", 2, 16), StageSpec("basic", 2, 32, stride=2)),
    head=HeadSpec("linear", {}),
    num_classes=10,
    in_channels=1,
    input_size=8,
)
RECIPE = Recipe(epochs=2, batch_size=64, lr=0.05, schedule="cosine")


@pytest.fixture(scope="module")
def digits() -> LoadedData:
    return load_dataset("digits")


def net(seed: int = 0) -> torch.nn.Module:
    seed_everything(seed)
    return build_net(SPEC)


# -- without a GPU: the choices the CUDA path makes --------------------------------------------


def test_gpus_without_bf16_train_fp16_with_a_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert amp_dtype(torch.device("cuda", 0)) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert amp_dtype(torch.device("cuda", 0)) == torch.bfloat16


def test_the_evaluation_batch_follows_the_free_device_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from archbench.models.complexity import analytic

    model = net()
    per_image = analytic(SPEC).acts * 4
    assert eval_batch_size(model, torch.device("cpu"), 64, False) == 128
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1000 * 4 * per_image, 0))
    assert eval_batch_size(model, torch.device("cuda", 0), 64, False) == 960  # 1000 // 64 * 64
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * per_image, 0))
    assert eval_batch_size(model, torch.device("cuda", 0), 64, False) == 256  # the floor
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10**15, 0))
    assert eval_batch_size(model, torch.device("cuda", 0), 64, True) == 4096  # the cap


# -- on a GPU -----------------------------------------------------------------------------------


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("compile_", [False, True])
def test_cuda_trainer_amp_channels_last_and_compile(digits: LoadedData, compile_: bool) -> None:
    recipe = dataclasses.replace(RECIPE, amp=True, channels_last=True, compile=compile_)
    result = train(net(), digits, recipe, device="cuda", diagnostics_every=1)
    assert result.status == "completed"
    assert result.final is not None and result.final.test_err < 0.5
    assert result.env["amp"] in ("bf16", "fp16") and result.env["gpu_name"]
    assert all(e.peak_mem_mb and e.peak_mem_mb > 0 for e in result.epochs)


@pytest.mark.gpu
@cuda
def test_cuda_fused_seeds_match_unfused(digits: LoadedData) -> None:
    seeds = (0, 1, 2, 3)
    fused = train_fused(
        [net(s) for s in seeds], digits, RECIPE, seeds=seeds, device="cuda", diagnostics_every=0
    )
    for seed, result in zip(seeds, fused, strict=True):
        alone = train(net(seed), digits, RECIPE, seed=seed, device="cuda", diagnostics_every=0)
        assert result.status == alone.status == "completed"
        a, b = result.final, alone.final
        assert a is not None and b is not None
        # cuDNN picks other kernels for the grouped (fused) convolutions: float-level drift.
        assert math.isclose(a.train_loss, b.train_loss, rel_tol=1e-2)
        assert abs(a.test_err - b.test_err) <= 0.02


@pytest.mark.gpu
@cuda
def test_cuda_resume_continues_the_run(digits: LoadedData, tmp_path: Path) -> None:
    stop = train(
        net(),
        digits,
        RECIPE,
        device="cuda",
        checkpoint_dir=tmp_path,
        diagnostics_every=0,
        on_epoch_end=lambda m, d: m.epoch == 1,
    )
    assert stop.status == "pruned" and len(stop.epochs) == 1
    resumed = train(
        net(), digits, RECIPE, device="cuda", checkpoint_dir=tmp_path, diagnostics_every=0
    )
    straight = train(net(), digits, RECIPE, device="cuda", diagnostics_every=0)
    assert resumed.env["resumed_after_epoch"] == 1 and len(resumed.epochs) == 2
    assert resumed.final is not None and straight.final is not None
    assert math.isclose(resumed.final.train_loss, straight.final.train_loss, rel_tol=1e-2)


@pytest.mark.gpu
@cuda
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_four_workers_share_one_gpu(tmp_path: Path) -> None:
    import yaml

    from archbench.cli import main
    from archbench.store import ResultsStore

    spec = tmp_path / "w.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "g",
                "dataset": {"name": "digits", "val_size": 200},
                "recipe": {"epochs": 1, "batch_size": 64, "lr": 0.1},
                "variants": [{"family": f, "depth": 8, "width": 8} for f in ("resnet", "plain")]
                + [{"family": f, "depth": 14, "width": 8} for f in ("resnet", "plain")],
                "seeds": [0, 1],
                "storage": str(tmp_path / "g.db"),
            }
        )
    )
    assert main(["run", str(spec), "--workers", "4", "--gpus", "0", "--quiet"]) == 0
    runs = ResultsStore(str(tmp_path / "g.db")).runs(experiment="g")
    assert len(runs) == 8 and set(runs["status"]) == {"completed"}
    assert set(runs["device"]) == {"cuda:0"}
    assert {r["gpu_index"] for r in runs["env"]} == {0}
    assert len({r["worker"] for r in runs["env"]}) > 1  # the workers shared the trials
