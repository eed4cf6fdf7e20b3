"""Checkpoints: atomic writes, ``weights_only`` loading, RNG capture, and exact resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from archbench.data import LoadedData, load_dataset
from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec, build_net
from archbench.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from archbench.training.train import EpochMetrics, Recipe, seed_everything, train

TIMING_FIELDS = {"epoch_time_s", "train_time_s", "images_per_s", "peak_mem_mb"}
RECIPE = Recipe(epochs=2, batch_size=32, lr=0.05, milestones=(0.6,), warmup_epochs=0.5)


@pytest.fixture(scope="module")
def data() -> LoadedData:
    return load_dataset("digits", train_subset=192, test_subset=64, val_size=32)


def tiny_net(seed: int = 0) -> nn.Module:
    spec = NetSpec(
        stem=StemSpec("cifar", 8),
        stages=(StageSpec("basic", 1, 8), StageSpec("basic", 1, 16, stride=2)),
        head=HeadSpec("linear", {"dropout": 0.3}),  # draws from the RNG stream every step
        num_classes=10,
        in_channels=1,
        input_size=8,
    )
    seed_everything(seed)
    return build_net(spec)


def without_timing(metrics: list[EpochMetrics]) -> list[dict]:
    return [
        {k: v for k, v in dataclasses.asdict(m).items() if k not in TIMING_FIELDS} for m in metrics
    ]


class Crash(Exception):
    pass


def crash_after(epoch: int):
    def callback(metrics: EpochMetrics, diags: list) -> bool:
        if metrics.epoch == epoch:
            raise Crash
        return False

    return callback


def test_resume_after_a_crash_is_bit_exact(data: LoadedData, tmp_path) -> None:
    straight_net = tiny_net()
    straight = train(straight_net, data, RECIPE, seed=1, progress=False)

    with pytest.raises(Crash):  # the process "dies" right after epoch 1's checkpoint
        train(
            tiny_net(),
            data,
            RECIPE,
            seed=1,
            checkpoint_dir=tmp_path,
            on_epoch_end=crash_after(1),
            progress=False,
        )
    resumed_net = tiny_net(seed=99)  # a fresh process builds the net again, any init
    calls: list[int] = []
    resumed = train(
        resumed_net,
        data,
        RECIPE,
        seed=1,
        checkpoint_dir=tmp_path,
        progress=False,
        on_epoch_end=lambda m, d: calls.append(m.epoch) or False,
    )

    assert calls == [2]  # only epoch 2 was trained again
    assert resumed.env["resumed_after_epoch"] == 1
    for key, value in straight_net.state_dict().items():
        assert torch.equal(value, resumed_net.state_dict()[key]), key
    assert without_timing(resumed.epochs) == without_timing(straight.epochs)
    assert resumed.diagnostics == straight.diagnostics
    assert resumed.status == "completed"


def test_resume_without_the_rng_state_would_differ(data: LoadedData, tmp_path) -> None:
    """The resume test above can fail: dropout depends on the restored stream."""
    with pytest.raises(Crash):
        train(
            tiny_net(),
            data,
            RECIPE,
            seed=1,
            checkpoint_dir=tmp_path,
            on_epoch_end=crash_after(1),
            progress=False,
        )
    path = tmp_path / "last.pt"
    state = torch.load(path, weights_only=True)
    state["rng"]["cpu"] = torch.manual_seed(12345).get_state()
    torch.save(state, path)
    tampered_net = tiny_net()
    train(tampered_net, data, RECIPE, seed=1, checkpoint_dir=tmp_path, progress=False)
    straight_net = tiny_net()
    train(straight_net, data, RECIPE, seed=1, progress=False)
    assert not torch.equal(tampered_net.head.fc.weight, straight_net.head.fc.weight)


def test_checkpoint_loads_with_weights_only(data: LoadedData, tmp_path) -> None:
    train(tiny_net(), data, RECIPE.replace(epochs=1), checkpoint_dir=tmp_path, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["format"] == "archbench.checkpoint/1" and state["epoch"] == 1
    assert {
        "model",
        "optimizer",
        "scheduler",
        "rng",
        "metrics",
        "diagnostics",
        "recipe",
        "seed",
        "wall_time_s",
    } <= set(state)
    assert state["scheduler"]["step"] == len(data.train) // 32
    assert isinstance(state["rng"]["cpu"], torch.Tensor)
    assert state["metrics"][0]["epoch"] == 1 and state["recipe"]["epochs"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp files left


def test_completed_checkpoint_returns_without_training(data: LoadedData, tmp_path) -> None:
    recipe = RECIPE.replace(epochs=1)
    first = train(tiny_net(), data, recipe, checkpoint_dir=tmp_path, progress=False)
    net = tiny_net(seed=5)
    again = train(
        net,
        data,
        recipe,
        checkpoint_dir=tmp_path,
        progress=False,
        on_epoch_end=lambda m, d: pytest.fail("no epoch should run"),
    )
    assert again.status == "completed" and again.epochs == first.epochs
    assert again.final == first.final and again.diagnostics == first.diagnostics
    saved = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())


def test_resume_refuses_another_recipe_or_seed(data: LoadedData, tmp_path) -> None:
    train(tiny_net(), data, RECIPE.replace(epochs=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"another recipe \(lr: 0.05 -> 0.1\)"):
        train(
            tiny_net(),
            data,
            RECIPE.replace(epochs=1, lr=0.1),
            checkpoint_dir=tmp_path,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="seed 0, this run has seed 7"):
        train(
            tiny_net(),
            data,
            RECIPE.replace(epochs=1),
            seed=7,
            checkpoint_dir=tmp_path,
            progress=False,
        )
    # resume=False starts over and overwrites the checkpoint.
    result = train(
        tiny_net(),
        data,
        RECIPE.replace(epochs=1, lr=0.1),
        checkpoint_dir=tmp_path,
        resume=False,
        progress=False,
    )
    assert result.env["resumed_after_epoch"] == 0
    assert load_checkpoint(tmp_path / "last.pt")["recipe"]["lr"] == 0.1


def test_resume_refuses_another_model(data: LoadedData, tmp_path) -> None:
    train(tiny_net(), data, RECIPE.replace(epochs=1), checkpoint_dir=tmp_path, progress=False)
    other = build_net(
        NetSpec(
            stem=StemSpec("cifar", 4),
            stages=(StageSpec("basic", 1, 4),),
            num_classes=10,
            in_channels=1,
            input_size=8,
        )
    )
    with pytest.raises(CheckpointError, match="does not fit this model"):
        train(other, data, RECIPE.replace(epochs=1), checkpoint_dir=tmp_path, progress=False)


def test_save_is_atomic(tmp_path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"epoch": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 1  # the previous checkpoint survived
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_rejects_missing_foreign_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="has format None, expected"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")


def test_rng_capture_and_restore() -> None:
    device = torch.device("cpu")
    torch.manual_seed(0)
    state = capture_rng_state(device)
    first = torch.rand(5)
    torch.rand(100)
    restore_rng_state(state, device)
    assert torch.equal(torch.rand(5), first)
