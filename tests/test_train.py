"""The training loop: accuracy on digits, determinism, divergence, schedules, optimizer groups,
the recipe's validation and the ``archbench train`` command."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest
import torch
from torch import nn

from archbench.cli import main
from archbench.data import LoadedData, load_dataset
from archbench.errors import SpecError
from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec, build_net
from archbench.models.presets import get_preset
from archbench.training.recipe import LRSchedule, Recipe, build_optimizer, param_groups
from archbench.training.train import EpochMetrics, seed_everything, select_device, train

TIMING_FIELDS = {"epoch_time_s", "train_time_s", "images_per_s", "peak_mem_mb"}


@pytest.fixture(scope="module")
def digits() -> LoadedData:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small_digits() -> LoadedData:
    return load_dataset("digits", train_subset=256, test_subset=100, val_size=64)


def tiny_net(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    """Two basic blocks for 8x8 single-channel digits; dropout exercises the RNG stream."""
    spec = NetSpec(
        stem=StemSpec("cifar", 8),
        stages=(StageSpec("basic", 1, 8), StageSpec("basic", 1, 16, stride=2)),
        head=HeadSpec("linear", {"dropout": dropout} if dropout else {}),
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


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# -- the loop ---------------------------------------------------------------------------------


def test_resnet8_reaches_95_percent_on_digits(digits: LoadedData) -> None:
    spec = get_preset("resnet8", num_classes=10, in_channels=1, input_size=8)
    seed_everything(0)
    net = build_net(spec)
    recipe = Recipe(epochs=3, batch_size=32, lr=0.05, schedule="cosine")
    result = train(net, digits, recipe, seed=0, progress=False, diagnostics_every=0)

    assert result.status == "completed" and result.diverged_at is None
    assert [m.epoch for m in result.epochs] == [1, 2, 3]
    assert result.final == result.epochs[-1]
    assert result.final.test_err <= 0.05, result.final
    assert result.final.val_err is not None and result.final.val_err <= 0.08
    assert result.final.test_top5_err <= result.final.test_err
    # Cosine: the rate falls every epoch; the loss of the training batches too.
    assert [m.lr for m in result.epochs] == sorted((m.lr for m in result.epochs), reverse=True)
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    for m in result.epochs:
        assert m.images_per_s > 0 and 0 < m.train_time_s <= m.epoch_time_s
        assert m.peak_mem_mb is None  # CPU: no reliable peak
    assert result.device == "cpu" and result.wall_time_s > 0
    env = result.env
    assert env["torch"] == torch.__version__ and env["amp"] is None and env["compile"] is False
    assert env["train_images_per_epoch"] == (len(digits.train) // 32) * 32  # full batches
    assert result.recipe == recipe


def test_same_seed_is_bit_identical_and_seed_matters(small_digits: LoadedData) -> None:
    recipe = Recipe(epochs=2, batch_size=32, lr=0.05)
    runs = []
    for seed in (3, 3, 4):
        net = tiny_net(seed, dropout=0.3)
        result = train(net, small_digits, recipe, seed=seed, progress=False)
        runs.append((net, result))
    (net_a, a), (net_b, b), (_, c) = runs
    assert_same_weights(net_a, net_b)
    assert without_timing(a.epochs) == without_timing(b.epochs)
    assert a.diagnostics == b.diagnostics
    assert without_timing(a.epochs) != without_timing(c.epochs)


def test_seed_changes_data_order_and_dropout_not_only_init(small_digits: LoadedData) -> None:
    recipe = Recipe(epochs=1, batch_size=32, lr=0.05)
    nets = [tiny_net(0, dropout=0.3) for _ in range(2)]  # same init
    for net, seed in zip(nets, (0, 1)):
        train(net, small_digits, recipe, seed=seed, progress=False, diagnostics_every=0)
    assert not torch.equal(nets[0].head.fc.weight, nets[1].head.fc.weight)


def test_train_leaves_the_callers_random_state_alone(small_digits: LoadedData) -> None:
    net = tiny_net(dropout=0.3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train(net, small_digits, Recipe(epochs=1, batch_size=64), progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_huge_lr_diverges_without_raising(small_digits: LoadedData) -> None:
    recipe = Recipe(epochs=3, batch_size=32, lr=1e12, schedule="constant")
    result = train(tiny_net(), small_digits, recipe, progress=False, diagnostics_every=0)
    assert result.status == "diverged"
    where = result.diverged_at
    assert where is not None and where["epoch"] == 1 and result.final is None
    assert not math.isfinite(where["loss"]) and where["lr"] == 1e12
    assert 0 <= where["step"] < len(small_digits.train) // 32
    assert where["epoch_step"] == where["step"]
    out = result.to_dict()
    json.dumps(out, allow_nan=False)  # non-finite loss written as a string
    assert out["diverged_at"]["loss"] in ("nan", "inf", "-inf")


def test_a_blow_up_in_the_last_step_is_diverged_not_completed(
    small_digits: LoadedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss is checked before each step; weights made inf by the very last optimizer step
    used to give a 'completed' run with test loss NaN and 90% error."""
    import archbench.training.train as train_mod

    real = train_mod.build_optimizer
    recipe = Recipe(epochs=2, batch_size=64, schedule="constant")
    total = 2 * (len(small_digits.train) // 64)

    def blowing_up(net: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
        opt = real(net, recipe)
        step, calls = opt.step, [0]

        def last_step_blows_up(*args, **kwargs):
            out = step(*args, **kwargs)
            calls[0] += 1
            if calls[0] == total:
                with torch.no_grad():
                    next(net.parameters()).fill_(math.inf)
            return out

        opt.step = last_step_blows_up
        return opt

    monkeypatch.setattr(train_mod, "build_optimizer", blowing_up)
    seen = []
    result = train(
        tiny_net(), small_digits, recipe, progress=False, diagnostics_every=0,
        on_epoch_end=lambda m, d: seen.append(m.epoch) is not None,
    )  # fmt: skip
    assert result.status == "diverged"
    assert result.diverged_at["epoch"] == 2 and result.diverged_at["step"] == total - 1
    assert seen == [1] and [m.epoch for m in result.epochs] == [1]  # epoch 2 not recorded


def test_on_epoch_end_can_stop_the_run(small_digits: LoadedData) -> None:
    seen: list[tuple[int, int]] = []

    def stop_after_two(metrics: EpochMetrics, diags: list) -> bool:
        seen.append((metrics.epoch, len(diags)))
        return metrics.epoch == 2

    result = train(
        tiny_net(),
        small_digits,
        Recipe(epochs=5, batch_size=64),
        progress=False,
        diagnostics_every=2,
        on_epoch_end=stop_after_two,
    )
    assert result.status == "pruned" and len(result.epochs) == 2
    assert seen == [(1, 0), (2, 2)]  # diagnostics every 2 epochs: two blocks at epoch 2


def test_label_smoothing_is_the_training_objective(digits: LoadedData) -> None:
    # With eps = 0.2 over 10 classes the target is (0.82, 0.02 x 9): no prediction gets the
    # training loss below its entropy (0.867); without smoothing the same run goes below it.
    floor = -(0.82 * math.log(0.82) + 9 * 0.02 * math.log(0.02))
    recipe = Recipe(epochs=3, batch_size=32, lr=0.1, schedule="cosine")
    losses = {}
    for eps in (0.0, 0.2):
        smoothed = recipe.replace(label_smoothing=eps)
        result = train(tiny_net(), digits, smoothed, progress=False, diagnostics_every=0)
        losses[eps] = [m.train_loss for m in result.epochs]
    assert all(loss >= floor - 1e-4 for loss in losses[0.2])
    assert losses[0.0][-1] < floor


def test_progress_bar_goes_to_stderr(
    small_digits: LoadedData, capsys: pytest.CaptureFixture
) -> None:
    train(tiny_net(), small_digits, Recipe(epochs=1, batch_size=64), progress=True)
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and captured.out == ""


def test_library_does_not_print(small_digits: LoadedData, capsys: pytest.CaptureFixture) -> None:
    train(tiny_net(), small_digits, Recipe(epochs=1, batch_size=64), progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_amp_on_cpu_warns_and_trains_in_float32(
    small_digits: LoadedData, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="archbench.training.train"):
        result = train(
            tiny_net(), small_digits, Recipe(epochs=1, batch_size=64, amp=True), progress=False
        )
    assert "CUDA-only" in caplog.text and result.env["amp"] is None


def test_channels_last_trains_on_cpu(small_digits: LoadedData) -> None:
    net = tiny_net()
    result = train(
        net, small_digits, Recipe(epochs=1, batch_size=64, channels_last=True), progress=False
    )
    assert result.status == "completed" and result.env["channels_last"] is True
    assert net.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_model_must_fit_the_dataset(small_digits: LoadedData) -> None:
    net = build_net(get_preset("resnet8", num_classes=10, in_channels=3, input_size=8))
    with pytest.raises(SpecError, match="in_channels=3 but dataset 'digits' has 1"):
        train(net, small_digits, Recipe(epochs=1), progress=False)


@pytest.mark.slow
def test_compile_trains_on_cpu(small_digits: LoadedData) -> None:
    result = train(
        tiny_net(), small_digits, Recipe(epochs=1, batch_size=64, compile=True), progress=False
    )
    assert result.status == "completed" and result.env["compile"] is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_channels_last(digits: LoadedData) -> None:
    spec = get_preset("resnet8", num_classes=10, in_channels=1, input_size=8)
    seed_everything(0)
    recipe = Recipe(
        epochs=3, batch_size=32, lr=0.05, schedule="cosine", amp=True, channels_last=True
    )
    result = train(build_net(spec), digits, recipe, device="cuda", progress=False)
    assert result.status == "completed" and result.env["amp"] == "bf16"
    assert result.final is not None and result.final.test_err <= 0.05
    assert result.final.peak_mem_mb is not None and result.final.peak_mem_mb > 0
    assert result.env["gpu_name"]


# -- learning-rate schedules ------------------------------------------------------------------


def test_step_schedule_divides_at_fractions_of_training() -> None:
    sched = LRSchedule(Recipe(epochs=4, lr=0.1, milestones=(0.5, 0.75)), steps_per_epoch=10)
    assert sched.milestone_steps == (20, 30)
    assert sched.lr_at(0) == 0.1 and sched.lr_at(19) == 0.1
    assert sched.lr_at(20) == pytest.approx(0.01) and sched.lr_at(29) == pytest.approx(0.01)
    assert sched.lr_at(30) == pytest.approx(0.001) and sched.lr_at(39) == pytest.approx(0.001)
    # Fractions work for an epoch count that does not divide: 3 epochs x 7 steps.
    odd = LRSchedule(Recipe(epochs=3, milestones=(0.5,)), steps_per_epoch=7)
    assert odd.milestone_steps == (10,)  # round(10.5) (banker's rounding)


def test_linear_warmup_then_step() -> None:
    recipe = Recipe(epochs=10, lr=0.1, warmup_epochs=0.5, milestones=(0.5,))
    sched = LRSchedule(recipe, steps_per_epoch=8)  # 4 warm-up steps
    assert [sched.lr_at(s) for s in range(5)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    assert sched.lr_at(40) == pytest.approx(0.01)
    from_lr = LRSchedule(recipe.replace(warmup_lr=0.02), steps_per_epoch=8)
    assert from_lr.lr_at(0) == pytest.approx(0.04) and from_lr.lr_at(3) == pytest.approx(0.1)


def test_constant_warmup_like_resnet110() -> None:
    recipe = Recipe(epochs=4, lr=0.1, warmup_epochs=1, warmup_lr=0.01, warmup="constant")
    sched = LRSchedule(recipe, steps_per_epoch=5)
    assert [sched.lr_at(s) for s in range(7)] == [0.01] * 5 + [0.1] * 2


def test_cosine_schedule_values() -> None:
    sched = LRSchedule(Recipe(epochs=2, lr=0.2, schedule="cosine"), steps_per_epoch=50)
    assert sched.lr_at(0) == pytest.approx(0.2)
    assert sched.lr_at(50) == pytest.approx(0.1)
    assert sched.lr_at(25) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert sched.lr_at(99) == pytest.approx(0.1 * (1 + math.cos(math.pi * 99 / 100)))
    # After a linear warm-up, cosine anneals over the remaining steps.
    warm = LRSchedule(
        Recipe(epochs=2, lr=0.2, schedule="cosine", warmup_epochs=1), steps_per_epoch=10
    )
    assert warm.lr_at(9) == pytest.approx(0.2) and warm.lr_at(10) == pytest.approx(0.2)
    assert warm.lr_at(15) == pytest.approx(0.1)


def test_constant_schedule_and_apply_sets_every_group() -> None:
    net = tiny_net()
    recipe = Recipe(schedule="constant", lr=0.3, wd_on_norm_and_bias=False)
    opt = build_optimizer(net, recipe)
    sched = LRSchedule(recipe, steps_per_epoch=3)
    for step in range(4):
        assert sched.apply(opt) == 0.3
        assert [g["lr"] for g in opt.param_groups] == [0.3, 0.3]
        assert sched.step == step + 1


def test_lr_recorded_per_epoch_follows_the_step_schedule(small_digits: LoadedData) -> None:
    recipe = Recipe(epochs=4, batch_size=64, lr=0.1, milestones=(0.5, 0.75))
    result = train(tiny_net(), small_digits, recipe, progress=False, diagnostics_every=0)
    assert [m.lr for m in result.epochs] == pytest.approx([0.1, 0.1, 0.01, 0.001])


# -- optimizer --------------------------------------------------------------------------------


def test_no_weight_decay_on_norm_and_bias_when_configured() -> None:
    net = tiny_net()
    groups = param_groups(net, Recipe(weight_decay=1e-4, wd_on_norm_and_bias=False))
    decay, no_decay = groups
    assert decay["name"] == "decay" and decay["weight_decay"] == 1e-4
    assert no_decay["name"] == "no_decay" and no_decay["weight_decay"] == 0.0
    norm_and_bias = {
        id(p)
        for m in net.modules()
        if isinstance(m, (nn.BatchNorm2d, nn.Linear))
        for name, p in m.named_parameters(recurse=False)
        if isinstance(m, nn.BatchNorm2d) or name == "bias"
    }
    assert {id(p) for p in no_decay["params"]} == norm_and_bias
    assert all(p.ndim >= 2 for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))
    opt = build_optimizer(net, Recipe(wd_on_norm_and_bias=False, nesterov=True))
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    assert opt.defaults["nesterov"] is True and opt.defaults["momentum"] == 0.9
    single = build_optimizer(net, Recipe(weight_decay=1e-3))
    assert len(single.param_groups) == 1 and single.param_groups[0]["weight_decay"] == 1e-3


# -- recipe -----------------------------------------------------------------------------------


def test_recipe_round_trip() -> None:
    recipe = Recipe(epochs=3, milestones=(0.3, 0.6), warmup_lr=0.01, nesterov=True)
    data = json.loads(json.dumps(recipe.to_dict()))
    assert Recipe.from_dict(data) == recipe
    assert Recipe.from_dict({"lr": 1}).lr == 1.0  # ints are accepted for floats


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"batch_size": 2.5}, "batch_size must be"),
        ({"lr": -0.1}, "lr must be a finite number > 0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov=True needs momentum > 0"),
        ({"schedule": "linear"}, "schedule must be one of 'step', 'cosine', 'constant'"),
        ({"milestones": (0.75, 0.5)}, r"milestones must be increasing fractions"),
        ({"milestones": (0.5, 30)}, r"milestones must be increasing fractions"),
        ({"gamma": 0.0}, r"gamma must be in \(0, 1\]"),
        ({"warmup_epochs": 20.0}, r"warmup_epochs must be in \[0, epochs=10\]"),
        ({"warmup": "constant", "warmup_epochs": 1.0}, "warmup='constant' needs warmup_lr"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_recipe_validation_names_the_field(changes: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Recipe(**changes).validate()


def test_recipe_from_dict_rejects_unknown_and_mistyped() -> None:
    with pytest.raises(SpecError, match=r"unknown field.*'lrr'.*allowed: amp, batch_size"):
        Recipe.from_dict({"lrr": 0.1})
    with pytest.raises(SpecError, match="field 'epochs' must be int"):
        Recipe.from_dict({"epochs": "3"})
    with pytest.raises(SpecError, match="recipe: lr must be"):
        Recipe.from_dict({"lr": 0})


def test_select_device() -> None:
    assert select_device("cpu") == torch.device("cpu")
    mps = torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert select_device().type == select_device("auto").type == expected
    with pytest.raises(SpecError, match="unknown device 'gpu0'"):
        select_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match="CUDA is not available"):
            select_device("cuda")


# -- the command ------------------------------------------------------------------------------


def test_cli_trains_and_writes_json(tmp_path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run.json"
    code = main(
        [
            "train",
            "resnet8",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--train-subset",
            "256",
            "--test-subset",
            "100",
            "--schedule",
            "cosine",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    assert "resnet8: 75,002 params" in stdout
    assert "train err" in stdout and "img/s" in stdout
    assert "completed: test err" in stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == "archbench.train/1" and doc["status"] == "completed"
    assert len(doc["epochs"]) == 2 and doc["final"] == doc["epochs"][-1]
    assert doc["recipe"]["schedule"] == "cosine" and doc["recipe"]["epochs"] == 2
    assert doc["model"]["spec"]["in_channels"] == 1 and doc["model"]["params"] == 75_002
    assert doc["dataset"] == {
        "name": "digits",
        "train": 256,
        "val": 26,
        "test": 100,
        "image_size": 8,
        "channels": 1,
        "num_classes": 10,
        "source": "sklearn",
    }
    blocks = {d["block"] for d in doc["diagnostics"]}
    assert blocks == {"stages.0.0", "stages.1.0", "stages.2.0"}


def test_cli_spec_file_quiet_and_errors(tmp_path, capsys: pytest.CaptureFixture) -> None:
    spec_path = tmp_path / "net.json"
    spec_path.write_text(json.dumps(tiny_net().spec.to_dict()))
    code = main(
        [
            "train",
            str(spec_path),
            "--dataset",
            "synthetic",
            "--epochs",
            "1",
            "--quiet",
            "--train-subset",
            "128",
            "--test-subset",
            "64",
            "--diagnostics-every",
            "0",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("completed: test err")

    assert main(["train", "resnet8", "--dataset", "digits", "--lr", "-1"]) == 2
    assert "recipe: lr must be a finite number > 0, got -1.0" in capsys.readouterr().err
    assert main(["train", "resnt8", "--dataset", "digits", "--epochs", "1"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_cli_resumes_from_a_checkpoint(tmp_path, capsys: pytest.CaptureFixture) -> None:
    argv = [
        "train",
        "resnet8",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--train-subset",
        "128",
        "--test-subset",
        "64",
        "--checkpoint-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0  # nothing left to train: the table comes from the checkpoint
    second = capsys.readouterr().out
    row = next(line for line in first.splitlines() if line.lstrip().startswith("1 "))
    assert f"{row}  (checkpoint)" in second
    assert (tmp_path / "last.pt").exists()
