"""Fused seeds: k seeds trained as one vectorised model give each seed the unfused run's
results (same initial weights bit for bit, same errors, losses within 1e-4 relative after 2
epochs), for every registered block; a diverging seed stops alone; checkpoints resume."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from archbench.data import LoadedData, load_dataset
from archbench.errors import SpecError
from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec, build_net
from archbench.registry import BLOCKS
from archbench.training.device import seed_everything
from archbench.training.fused import fusion_problem, train_fused
from archbench.training.recipe import Recipe
from archbench.training.train import train

SEEDS = (0, 1)
RECIPE = Recipe(epochs=2, batch_size=32, lr=0.05, schedule="cosine", warmup_epochs=0.5)


@pytest.fixture(scope="module")
def digits() -> LoadedData:
    return load_dataset("digits", train_subset=192, test_subset=64, val_size=64)


def block_spec(block: str, stage: StageSpec | None = None) -> NetSpec:
    return NetSpec(
        stem=StemSpec("cifar", 8),
        stages=(stage or StageSpec(block, 1, 8),),
        head=HeadSpec("linear", {}),
        num_classes=10,
        in_channels=1,
        input_size=8,
    )


def built(spec: NetSpec, seed: int) -> nn.Module:
    seed_everything(seed)
    return build_net(spec)


def assert_same_results(fused: list, unfused: list) -> None:
    for f, u in zip(fused, unfused, strict=True):
        assert f.status == u.status
        assert len(f.epochs) == len(u.epochs)
        for fe, ue in zip(f.epochs, u.epochs, strict=True):
            for key in ("train_err", "val_err", "test_err"):
                assert abs(getattr(fe, key) - getattr(ue, key)) < 1e-9, (f.seed, key)
            for key in ("train_loss", "val_loss", "test_loss"):
                a, b = getattr(fe, key), getattr(ue, key)
                assert math.isclose(a, b, rel_tol=1e-4), (f.seed, key, a, b)


def _buildable(block: str) -> NetSpec | None:
    """A small one-block net of ``block`` (reductions need a stride, ResNeXt whole groups)."""
    for stage in (
        StageSpec(block, 1, 8),
        StageSpec(block, 1, 16, stride=2),
        StageSpec(block, 1, 16, params={"base_width": 16}),
    ):
        spec = block_spec(block, stage)
        try:
            built(spec, 0)
        except SpecError:
            continue
        return spec
    return None


@pytest.mark.parametrize("block", BLOCKS.names())
def test_fused_seeds_equal_unfused_training_for_every_block(block: str, digits: LoadedData) -> None:
    spec = _buildable(block)
    if spec is None:
        pytest.skip(f"block {block!r} does not build as a one-block stage")
    nets = [built(spec, seed) for seed in SEEDS]
    problem = fusion_problem(nets[0], RECIPE)
    if problem is not None:  # refused clearly, per block
        assert "dropout" in problem or "random numbers" in problem
        with pytest.raises(SpecError, match=r"fused seeds: "):
            train_fused(nets, digits, RECIPE, seeds=SEEDS, device="cpu", diagnostics_every=0)
        return
    # Initial weights are the unfused run's, bit for bit (built the same way, seed by seed).
    for seed, net in zip(SEEDS, nets, strict=True):
        reference = built(spec, seed)
        for (name, a), b in zip(net.state_dict().items(), reference.state_dict().values()):
            assert torch.equal(a, b), name
    unfused = [
        train(built(spec, s), digits, RECIPE, seed=s, device="cpu", diagnostics_every=0)
        for s in SEEDS
    ]
    fused = train_fused(nets, digits, RECIPE, seeds=SEEDS, device="cpu", diagnostics_every=0)
    assert_same_results(fused, unfused)
    assert all(r.env["fused_seeds"] == len(SEEDS) for r in fused)


def test_a_diverging_seed_stops_alone(digits: LoadedData) -> None:
    spec = block_spec("basic")
    nets = [built(spec, s) for s in (0, 1, 2)]
    with torch.no_grad():  # seed 1 starts with infinite weights: its loss is not finite
        next(nets[1].parameters()).fill_(float("inf"))
    results = train_fused(nets, digits, RECIPE, seeds=(0, 1, 2), device="cpu", diagnostics_every=0)
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    assert results[1].diverged_at is not None and results[1].diverged_at["step"] == 0
    unfused = [
        train(built(spec, s), digits, RECIPE, seed=s, device="cpu", diagnostics_every=0)
        for s in (0, 2)
    ]
    assert_same_results([results[0], results[2]], unfused)


def test_a_pruned_seed_stops_alone_and_diagnostics_are_per_seed(digits: LoadedData) -> None:
    spec = block_spec("basic")
    nets = [built(spec, s) for s in SEEDS]
    results = train_fused(
        nets,
        digits,
        RECIPE,
        seeds=SEEDS,
        device="cpu",
        diagnostics_every=1,
        on_epoch_end=[lambda m, d: True, None],
    )
    assert [r.status for r in results] == ["pruned", "completed"]
    assert [len(r.epochs) for r in results] == [1, 2]
    reference = train(built(spec, 1), digits, RECIPE, seed=1, device="cpu", diagnostics_every=1)
    assert_same_results([results[1]], [reference])
    got = [(d.epoch, d.block) for d in results[1].diagnostics]
    assert got == [(d.epoch, d.block) for d in reference.diagnostics]


def test_fused_checkpoints_resume_fused_or_unfused(digits: LoadedData, tmp_path: Path) -> None:
    spec = block_spec("basic")
    one = dataclasses.replace(RECIPE, epochs=2)
    dirs = [tmp_path / f"seed{s}" for s in SEEDS]
    stop_after_1 = [lambda m, d: m.epoch == 1] * 2  # "pruned" after epoch 1: a checkpoint stays
    first = train_fused(
        [built(spec, s) for s in SEEDS],
        digits,
        one,
        seeds=SEEDS,
        device="cpu",
        checkpoint_dirs=dirs,
        diagnostics_every=0,
        on_epoch_end=stop_after_1,
    )
    assert [len(r.epochs) for r in first] == [1, 1]
    # Seed 0 resumes unfused, seed 1 fused (alone): both equal an uninterrupted run.
    resumed = [
        train(
            built(spec, 0),
            digits,
            one,
            seed=0,
            device="cpu",
            checkpoint_dir=dirs[0],
            diagnostics_every=0,
        ),
        *train_fused(
            [built(spec, 1)],
            digits,
            one,
            seeds=(1,),
            device="cpu",
            checkpoint_dirs=[dirs[1]],
            diagnostics_every=0,
        ),
    ]
    assert [r.env["resumed_after_epoch"] for r in resumed] == [1, 1]
    straight = [
        train(built(spec, s), digits, one, seed=s, device="cpu", diagnostics_every=0) for s in SEEDS
    ]
    assert_same_results(resumed, straight)


def test_a_block_with_its_own_randomness_is_refused() -> None:
    """A plugin block that draws noise in training (not an nn.Dropout) is caught too."""
    from archbench.registry import BLOCKS

    basic = BLOCKS.get("basic")

    class Noisy(basic):  # type: ignore[misc, valid-type]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x)
            return out + 0.01 * torch.randn_like(out) if self.training else out

    BLOCKS.add("noisy_test_block", Noisy)
    try:
        model = built(block_spec("noisy_test_block"), 0)
        assert "random numbers" in (fusion_problem(model) or "")
        assert fusion_problem(built(block_spec("basic"), 0)) is None
    finally:
        BLOCKS.remove("noisy_test_block")


def test_bad_fusions_are_refused(digits: LoadedData) -> None:
    spec = block_spec("basic")
    with pytest.raises(SpecError, match="one distinct seed per net"):
        train_fused([built(spec, 0)] * 2, digits, RECIPE, seeds=(0, 0), device="cpu")
    other = dataclasses.replace(spec, stages=(StageSpec("basic", 1, 16),))
    with pytest.raises(SpecError, match="differ in architecture"):
        train_fused([built(spec, 0), built(other, 1)], digits, RECIPE, seeds=(0, 1), device="cpu")
    compiled = dataclasses.replace(RECIPE, compile=True)
    with pytest.raises(SpecError, match=r"recipe\.compile"):
        train_fused([built(spec, 0)], digits, compiled, seeds=(0,), device="cpu")


# -- through `archbench run --fuse-seeds` -------------------------------------------------------


def _run_spec(tmp_path: Path, name: str) -> Path:
    import yaml

    data = {
        "name": "fz",
        "dataset": {"name": "digits", "train_subset": 192, "test_subset": 64, "val_size": 64},
        "recipe": {"epochs": 2, "batch_size": 32, "lr": 0.05, "schedule": "cosine"},
        "variants": [
            {"family": "resnet", "depth": 8, "width": 4},
            {"family": "preact", "depth": 8, "width": 4},
        ],
        "seeds": [0, 1, 2],
        "storage": str(tmp_path / f"{name}.db"),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_run_fuse_seeds_stores_every_seed_as_its_own_run_equal_to_unfused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from archbench.cli import main
    from archbench.store import ResultsStore

    assert main(["run", str(_run_spec(tmp_path, "plain")), "--quiet"]) == 0
    assert main(["run", str(_run_spec(tmp_path, "fused")), "--quiet", "--fuse-seeds"]) == 0
    assert "seeds 0, 1, 2 fused" in capsys.readouterr().out
    stores = [ResultsStore(str(tmp_path / f"{n}.db")) for n in ("plain", "fused")]
    plain, fused = (s.runs(experiment="fz").sort_values(["name", "seed"]) for s in stores)
    assert len(fused) == 6 and set(fused["status"]) == {"completed"}
    assert fused["val_err"].tolist() == plain["val_err"].tolist()
    assert fused["test_err"].tolist() == plain["test_err"].tolist()
    assert {r["fuse_seeds"] for r in fused["env"]} == {True}
    assert set(fused["attempts"]) == {1}  # a claimed run is opened once
    assert {r["resumed_after_epoch"] for r in fused["env"]} == {0}
    losses = []
    for store, table in zip(stores, (plain, fused), strict=True):
        epochs = store.epochs(experiment="fz").set_index(["run_id", "epoch"])["train_loss"]
        losses.append([epochs[(run_id, e)] for run_id in table["run_id"] for e in (1, 2)])
    for a, b in zip(*losses, strict=True):
        assert math.isclose(a, b, rel_tol=1e-4)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_failed_fused_training_fails_every_claimed_run_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import archbench.training.fused
    from archbench.cli import main
    from archbench.store import ResultsStore

    spec = _run_spec(tmp_path, "boom")
    real = archbench.training.fused.train_fused

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(archbench.training.fused, "train_fused", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        main(["run", str(spec), "--quiet", "--fuse-seeds"])
    runs = ResultsStore(str(tmp_path / "boom.db")).runs(experiment="fz")
    assert set(runs["status"]) == {"failed"} and len(runs) == 3  # seed 0 and the 2 claimed
    monkeypatch.setattr(archbench.training.fused, "train_fused", real)
    assert main(["run", str(spec), "--quiet", "--fuse-seeds"]) == 0
    runs = ResultsStore(str(tmp_path / "boom.db")).runs(experiment="fz")
    assert len(runs) == 6 and set(runs["status"]) == {"completed"}


def test_fused_follows_every_recipe_option_of_the_step(digits: LoadedData) -> None:
    """channels_last, label smoothing, Nesterov, no decay on norms and biases, step schedule."""
    recipe = dataclasses.replace(
        RECIPE,
        channels_last=True,
        label_smoothing=0.1,
        nesterov=True,
        wd_on_norm_and_bias=False,
        schedule="step",
        milestones=(0.5,),
    )
    spec = block_spec("basic")
    unfused = [
        train(built(spec, s), digits, recipe, seed=s, device="cpu", diagnostics_every=0)
        for s in SEEDS
    ]
    fused = train_fused(
        [built(spec, s) for s in SEEDS], digits, recipe, seeds=SEEDS, device="cpu",
        diagnostics_every=0,
    )  # fmt: skip
    assert_same_results(fused, unfused)


def test_a_seed_with_non_finite_state_after_its_steps_diverges_as_unfused(
    digits: LoadedData,
) -> None:
    """A seed whose BatchNorm running mean is infinite trains on finite losses (batch
    statistics) but its state is not finite: unfused marks it diverged, so must fused."""
    spec = block_spec("basic")

    def nets() -> list[nn.Module]:
        made = [built(spec, s) for s in SEEDS]
        with torch.no_grad():
            mean = next(b for n, b in made[1].named_buffers() if n.endswith("running_mean"))
            mean.fill_(float("inf"))
        return made

    unfused = train(nets()[1], digits, RECIPE, seed=1, device="cpu", diagnostics_every=0)
    assert unfused.status == "diverged"
    fused = train_fused(nets(), digits, RECIPE, seeds=SEEDS, device="cpu", diagnostics_every=0)
    assert [r.status for r in fused] == ["completed", "diverged"]
    assert fused[1].diverged_at == unfused.diverged_at
    assert fused[1].epochs == [] and fused[1].final is None
    reference = train(built(spec, 0), digits, RECIPE, seed=0, device="cpu", diagnostics_every=0)
    assert_same_results([fused[0]], [reference])


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("damaged", [("seed0",), ("seed0", "seed1", "seed2")])
def test_run_fuse_seeds_heals_damaged_checkpoints_as_unfused_runs_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: tuple[str, ...]
) -> None:
    """An interrupted fused study whose checkpoints were then cut in half: the rerun moves
    them aside and completes (unfused runs do, bad_checkpoint="restart"), not fail forever."""
    import archbench.training.fused
    from archbench.cli import main
    from archbench.store import ResultsStore

    spec = _run_spec(tmp_path, "heal")
    real = archbench.training.fused.train_fused

    def interrupted(*args: object, on_epoch_end: list, **kwargs: object) -> object:
        last = on_epoch_end[-1]

        def stop(metrics: object, diagnostics: object) -> bool:
            last(metrics, diagnostics)
            raise KeyboardInterrupt

        return real(*args, on_epoch_end=[*on_epoch_end[:-1], stop], **kwargs)

    monkeypatch.setattr(archbench.training.fused, "train_fused", interrupted)
    assert main(["run", str(spec), "--quiet", "--fuse-seeds"]) == 130
    monkeypatch.setattr(archbench.training.fused, "train_fused", real)
    for name in damaged:
        (last,) = tmp_path.rglob(f"{name}/last.pt")
        raw = last.read_bytes()
        last.write_bytes(raw[: len(raw) // 2])
    assert main(["run", str(spec), "--quiet", "--fuse-seeds"]) == 0
    runs = ResultsStore(str(tmp_path / "heal.db")).runs(experiment="fz")
    assert len(runs) == 6 and set(runs["status"]) == {"completed"}
    assert len(list(tmp_path.rglob("last.pt.corrupt-*"))) == len(damaged)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_pruned_fused_trial_leaves_no_claimed_run_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first seed pruned: the trial stops before the claimed seeds' own calls, so their
    runs are finished here as pruned, with their epochs (not left 'running' forever)."""
    import optuna

    from archbench.cli import main
    from archbench.store import ResultsStore

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    spec = _run_spec(tmp_path, "pruned")
    main(["run", str(spec), "--quiet", "--fuse-seeds"])
    store = ResultsStore(str(tmp_path / "pruned.db"))
    runs = store.runs(experiment="fz")
    assert len(runs) == 6 and set(runs["status"]) == {"pruned"}, runs[["name", "seed", "status"]]
    epochs = store.epochs(experiment="fz")
    assert sorted(epochs.groupby("run_id").size().tolist()) == [1] * 6


def test_a_frozen_parameter_stays_each_seeds_own(digits: LoadedData) -> None:
    """A parameter that does not train (requires_grad False, as a plugin block may have)
    differs per seed: each seed's forward must use its own, not the first seed's."""
    spec = block_spec("basic")

    def frozen(seed: int) -> nn.Module:
        made = built(spec, seed)
        next(made.parameters()).requires_grad_(False)  # the stem convolution
        return made

    unfused = [
        train(frozen(s), digits, RECIPE, seed=s, device="cpu", diagnostics_every=0) for s in SEEDS
    ]
    fused = train_fused(
        [frozen(s) for s in SEEDS], digits, RECIPE, seeds=SEEDS, device="cpu", diagnostics_every=0
    )
    assert_same_results(fused, unfused)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_fused_runs_keep_every_seeds_weights_and_eval_reproduces_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--fuse-seeds --keep-weights: every seed's run keeps its final weights (as unfused runs
    do) and ``archbench eval`` of each gives its stored errors exactly."""
    import json

    import yaml

    from archbench.cli import main
    from archbench.store import ResultsStore

    path = _run_spec(tmp_path, "kept")
    data = yaml.safe_load(path.read_text())
    data["variants"] = data["variants"][:1]
    path.write_text(yaml.safe_dump(data))
    args = ["--quiet", "--threads", "1", "--keep-weights", "--results-dir", str(tmp_path / "r")]
    assert main(["run", str(path), *args, "--fuse-seeds"]) == 0
    assert "seeds 0, 1, 2 fused" in capsys.readouterr().out
    runs = ResultsStore(str(tmp_path / "kept.db")).runs(experiment="fz")
    assert len(runs) == 3 and set(runs["status"]) == {"completed"}
    assert runs["weights_path"].notna().all()
    assert len(set(runs["weights_path"])) == 3
    for run_id in runs["run_id"]:
        code, out, err = (
            main(["eval", str(int(run_id)), "--storage", str(tmp_path / "kept.db"), "--json"]),
            *capsys.readouterr(),
        )
        assert code == 0, err
        result = json.loads(out)
        assert result["matches"] and result["now"] == result["stored"]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_fused_path_tells_optuna_the_reports_held_during_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epochs 2 and 3 of the first (reported) seed end while the database is away: the fused
    trial still gives Optuna every epoch's value once it is back."""
    from archbench.runner.objective import Objective
    from archbench.runner.study import RunnerOptions, create_study, open_storage
    from archbench.runner.worker import run_worker
    from archbench.store import store as store_module
    from tests.test_reconnect import server_gone
    from tests.test_run_sharing import _spec

    spec = _spec(tmp_path, recipe={"epochs": 3, "batch_size": 64}, trials=1, seeds=[0, 1])
    options = RunnerOptions(
        results_dir=str(tmp_path / "res"), heartbeat_interval=5, threads=1, fuse_seeds=True
    )
    storage, store = open_storage(spec, options)
    study = create_study(spec, storage)
    state = {"down": False}
    real = store_module.write_once

    def write_once(*args: object, **kwargs: object) -> object:
        if state["down"]:
            raise server_gone()
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "write_once", write_once)
    record_epoch = store.record_epoch
    first_run: list[int] = []

    def record(run_id: int, metrics: object) -> None:
        first_run[:] = first_run or [run_id]
        # Away from the first seed's epoch 2 until the fused training has returned.
        if run_id == first_run[0] and metrics.epoch >= 2:  # type: ignore[attr-defined]
            state["down"] = True
        record_epoch(run_id, metrics)

    store.record_epoch = record  # type: ignore[method-assign]
    import archbench.training.fused

    fused = archbench.training.fused.train_fused

    def back_after(*args: object, **kwargs: object) -> object:
        try:
            return fused(*args, **kwargs)
        finally:
            state["down"] = False

    monkeypatch.setattr(archbench.training.fused, "train_fused", back_after)
    try:
        run_worker(spec, options, objective=Objective(spec, store, options))
        (trial,) = study.get_trials(deepcopy=False)
        assert trial.state.name == "COMPLETE"
        assert sorted(trial.intermediate_values) == [1, 2, 3]  # reported once it was back
        assert sorted(store.epochs()["epoch"].tolist()) == [1, 1, 2, 2, 3, 3]
        assert store.runs()["status"].tolist() == ["completed", "completed"]
    finally:
        store.close()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_seeds_that_cannot_fuse_keep_their_weights_too(tmp_path: Path) -> None:
    """A net with dropout trains its seeds one at a time under --fuse-seeds: kept all the same."""
    import yaml

    from archbench.cli import main
    from archbench.store import ResultsStore

    path = _run_spec(tmp_path, "drop")
    data = yaml.safe_load(path.read_text())
    data["variants"] = [{"family": "wrn", "depth": 10, "width": 1, "params": {"dropout": 0.3}}]
    data["seeds"] = [0, 1]
    path.write_text(yaml.safe_dump(data))
    args = ["--quiet", "--threads", "1", "--keep-weights", "--fuse-seeds"]
    assert main(["run", str(path), *args, "--results-dir", str(tmp_path / "r")]) == 0
    runs = ResultsStore(str(tmp_path / "drop.db")).runs(experiment="fz")
    assert len(runs) == 2 and runs["weights_path"].notna().all()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("interrupt", [False, True])
def test_a_trial_failing_after_its_fused_training_leaves_no_claimed_run_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt: bool
) -> None:
    """The first seed's run fails after the fused training (its weights cannot be saved): the
    trial stops before the claimed seeds' own calls, so their runs fail with it (a rerun
    resumes them) rather than stay 'running'."""
    import errno

    import yaml

    import archbench.training.weights
    from archbench.cli import main
    from archbench.store import ResultsStore

    path = _run_spec(tmp_path, "full")
    data = yaml.safe_load(path.read_text())
    data["variants"] = data["variants"][:1]
    path.write_text(yaml.safe_dump(data))

    def full(*args: object, **kwargs: object) -> None:
        if interrupt:
            raise KeyboardInterrupt  # Ctrl-C
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archbench.training.weights, "save_weights", full)
    args = ["--quiet", "--keep-weights", "--results-dir", str(tmp_path / "r"), "--fuse-seeds"]
    try:
        code = main(["run", str(path), *args])
    except (KeyboardInterrupt, SystemExit):
        code = 130
    assert code != 0
    runs = ResultsStore(str(tmp_path / "full.db")).runs(experiment="fz")
    assert len(runs) == 3 and set(runs["status"]) == {"failed"}, runs[["seed", "status"]]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_pruned_fused_trial_logs_its_claimed_runs_to_the_trackers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claimed seeds' runs a pruned fused trial stores are tracked runs too (--log):
    every stored run has its tracker run, as every run of an unfused study has."""
    import optuna

    from archbench.cli import main
    from archbench.store import ResultsStore

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    spec = _run_spec(tmp_path, "pruned")
    tb = tmp_path / "tb"
    main(["run", str(spec), "--quiet", "--fuse-seeds", "--log", f"tensorboard:{tb}"])
    runs = ResultsStore(str(tmp_path / "pruned.db")).runs(experiment="fz")
    assert len(runs) == 6 and set(runs["status"]) == {"pruned"}
    logged = sorted(p.name for p in (tb / "fz" / "default").iterdir())
    expected = sorted(f"run{r.run_id}_{r.name}_seed{r.seed}" for r in runs.itertuples())
    assert logged == expected
