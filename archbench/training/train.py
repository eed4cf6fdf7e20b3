"""The training loop: one call trains a net on loaded data with a :class:`Recipe`.

Its result types (:class:`EpochMetrics`, :class:`TrainResult`) live in :mod:`.results`
and are re-exported here.

``train`` returns a :class:`TrainResult` with metrics per epoch, per-block diagnostics and
the environment. It never raises for a diverging run (status ``"diverged"``) and never prints:
it logs, and shows a tqdm bar per epoch when attached to a terminal.

Reproducibility: the caller builds the net under :func:`seed_everything` (initialisation);
``seed`` fixes the rest through independent derived streams: data order and augmentation
(the loader's, a function of (seed, epoch)) and dropout (torch's global stream, captured after
every epoch's training steps and restored before the next). Evaluation, diagnostics and the
``on_epoch_end`` callback therefore cannot perturb training, a resumed run continues exactly,
and the caller's own random state is left as it was. On CPU two runs with the same seed are
bit-identical; CUDA kernels (cuDNN, atomics) need not be.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from archbench.data import DeviceLoader, LoadedData, TensorSplit
from archbench.errors import SpecError
from archbench.training.checkpoint import (
    LAST,
    CheckpointError,
    capture_rng_state,
    check_fits,
    load_checkpoint,
    quarantine_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from archbench.training.device import (
    derive_seed,
    environment_info,
    fork_rng,
    seed_everything,
    select_device,
)
from archbench.training.diagnostics import BlockDiagnostics, block_diagnostics
from archbench.training.evaluate import amp_dtype, eval_batch_size, evaluate_loader
from archbench.training.recipe import LRSchedule, Recipe, build_optimizer
from archbench.training.results import RESULT_SCHEMA, EpochMetrics, TrainResult
from archbench.training.run_checks import CHECK_EVERY, DivergenceChecks, _check_data_fits, _Diverged

__all__ = [
    "RESULT_SCHEMA",
    "BlockDiagnostics",
    "EpochMetrics",
    "Recipe",
    "TrainResult",
    "seed_everything",
    "select_device",
    "train",
]

log = logging.getLogger(__name__)


def train(
    net: nn.Module,
    data: LoadedData,
    recipe: Recipe,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    diagnostics_every: int = 1,
    on_epoch_end: Callable[[EpochMetrics, list[BlockDiagnostics]], bool] | None = None,
    progress: bool | None = None,
    bad_checkpoint: Literal["raise", "restart"] = "raise",
) -> TrainResult:
    """Train ``net`` in place on ``data`` following ``recipe``.

    ``checkpoint_dir``: write ``last.pt`` there after every epoch; with ``resume`` an existing
    one (same recipe and seed, else :class:`CheckpointError`) is continued. With
    ``bad_checkpoint="restart"`` a checkpoint that cannot be read or belongs to another run
    (seed, recipe, model) is moved aside (``last.pt.corrupt-<time>``, one warning) and the run
    starts from scratch instead; it is checked completely before anything is loaded.
    ``diagnostics_every``: per-block diagnostics at initialisation (epoch 0) and every that many epochs (0: off).
    ``on_epoch_end(metrics, diagnostics)`` returning ``True`` stops the run (``"pruned"``).
    ``progress``: a tqdm bar per epoch; ``None`` shows it when stderr is a terminal.
    """
    recipe.validate()
    if isinstance(diagnostics_every, bool) or diagnostics_every < 0:
        raise SpecError(f"diagnostics_every must be an integer >= 0, got {diagnostics_every!r}")
    if bad_checkpoint not in ("raise", "restart"):
        raise SpecError(f"bad_checkpoint must be 'raise' or 'restart', got {bad_checkpoint!r}")
    dev = select_device("auto" if device is None else device)
    _check_data_fits(net, data)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    start = time.perf_counter()  # wall time includes the setup (data to device, compile)
    with fork_rng(dev):  # the caller's random state is left as it was
        run = _Run(net, data, recipe, seed, dev, checkpoint_dir, diagnostics_every, show)
        run.heal = bad_checkpoint == "restart"
        return run.execute(resume, on_epoch_end, start)


class _Run(DivergenceChecks):
    """The state of one training run (kept out of ``train`` so each step reads on its own)."""

    def __init__(
        self,
        net: nn.Module,
        data: LoadedData,
        recipe: Recipe,
        seed: int,
        device: torch.device,
        checkpoint_dir: str | Path | None,
        diagnostics_every: int,
        progress: bool,
    ) -> None:
        self.net, self.data, self.recipe, self.seed, self.device = net, data, recipe, seed, device
        self.checkpoint = Path(checkpoint_dir) / LAST if checkpoint_dir is not None else None
        self.diagnostics_every = diagnostics_every
        self.progress = progress
        self.amp = recipe.amp and device.type == "cuda"
        if recipe.amp and not self.amp:
            log.warning("amp (bf16 autocast) is CUDA-only; training %s in float32", device)
        # bf16 where the GPU has it; else fp16, whose small range needs a gradient scaler.
        self.amp_dtype = amp_dtype(device) if self.amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

        net.to(device)
        if recipe.channels_last:
            net.to(memory_format=torch.channels_last)
        self.model = torch.compile(net) if recipe.compile else net

        info, cl = data.info, recipe.channels_last
        self.train_loader = DeviceLoader(
            data.train,
            info,
            batch_size=recipe.batch_size,
            device=device,
            train=True,
            # Full batches only: one shape for BN statistics, compile and timing.
            drop_last=len(data.train) >= recipe.batch_size,
            seed=derive_seed(seed, "data"),
            channels_last=cl,
        )
        eval_bs = eval_batch_size(net, device, recipe.batch_size, self.amp)
        self.eval_loaders = {
            name: DeviceLoader(split, info, batch_size=eval_bs, device=device, channels_last=cl)
            for name, split in (("val", data.val), ("test", data.test))
            if split is not None
        }
        self.optimizer = build_optimizer(net, recipe)
        self.schedule = LRSchedule(recipe, len(self.train_loader))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.diag_batch = self._diagnostics_batch() if diagnostics_every else None

        self.epochs: list[EpochMetrics] = []
        self.diagnostics: list[BlockDiagnostics] = []
        self.prior_wall_s = 0.0  # time spent before a resume
        self.heal = False  # a bad checkpoint: raise (False) or move it aside and restart
        torch.manual_seed(derive_seed(seed, "dropout"))
        self.rng = capture_rng_state(device)  # the stream the next epoch's steps draw from

    # -- the run ----------------------------------------------------------------------------
    def execute(
        self,
        resume: bool,
        on_epoch_end: Callable[[EpochMetrics, list[BlockDiagnostics]], bool] | None,
        start: float,
    ) -> TrainResult:
        done = self._resume() if resume and self.checkpoint and self.checkpoint.exists() else 0
        if self.diag_batch is not None and done == 0:
            self.diagnostics += self._diagnose(0)
        status: Literal["completed", "diverged", "pruned"] = "completed"
        diverged_at = None
        for epoch in range(done + 1, self.recipe.epochs + 1):
            try:
                metrics, diags = self._epoch(epoch)
            except _Diverged as exc:
                status, diverged_at = "diverged", exc.where
                log.info(  # a result, not a fault: searches over lr expect some
                    "diverged in epoch %d at step %d (lr %.4g): loss %s",
                    epoch,
                    exc.where["step"],
                    exc.where["lr"],
                    exc.where["loss"],
                )
                break
            self.epochs.append(metrics)
            self.diagnostics += diags
            if self.checkpoint is not None:
                self._save(epoch, self.prior_wall_s + time.perf_counter() - start)
            if on_epoch_end is not None and on_epoch_end(metrics, diags):
                status = "pruned"
                log.info("stopped after epoch %d by on_epoch_end", epoch)
                break
        return TrainResult(
            status=status,
            epochs=list(self.epochs),
            diagnostics=list(self.diagnostics),
            final=self.epochs[-1] if self.epochs else None,
            diverged_at=diverged_at,
            wall_time_s=self.prior_wall_s + time.perf_counter() - start,
            device=str(self.device),
            env=self._env(done),
            recipe=self.recipe,
            seed=self.seed,
        )

    def _epoch(self, epoch: int) -> tuple[EpochMetrics, list[BlockDiagnostics]]:
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        bar = self._bar(epoch)
        try:
            restore_rng_state(self.rng, self.device)
            lr, train_loss, train_err = self._train_steps(epoch, bar)
            # The losses checked so far were computed before each step: the epoch's last
            # step can still have made the weights non-finite.
            self._check_weights(epoch, train_loss)
            self.rng = capture_rng_state(self.device)
            self._sync()
            train_time = time.perf_counter() - t0
            evals = {name: self._evaluate(loader) for name, loader in self.eval_loaders.items()}
            for _name, (eval_loss, _, _) in evals.items():
                if not math.isfinite(eval_loss):
                    raise _Diverged(self._where(epoch, eval_loss))
            due = self.diagnostics_every and epoch % self.diagnostics_every == 0
            diags = self._diagnose(epoch) if due and self.diag_batch is not None else []
            val = evals.get("val", (None, None, None))
            test = evals["test"]
            if bar is not None:
                bar.set_postfix(
                    loss=f"{train_loss:.3f}",
                    err=f"{train_err:.3f}",
                    **({"val_err": f"{val[1]:.3f}"} if val[1] is not None else {}),
                    test_err=f"{test[1]:.3f}",
                )
        finally:
            if bar is not None:
                bar.close()
        self._sync()
        metrics = self._metrics(
            epoch, (lr, train_loss, train_err), val, test, time.perf_counter() - t0, train_time
        )
        log.info(
            "epoch %d/%d: train loss %.4f err %.4f | val err %s | test err %.4f | lr %.4g | "
            "%.1f s, %.0f img/s",
            epoch,
            self.recipe.epochs,
            metrics.train_loss,
            metrics.train_err,
            "-" if metrics.val_err is None else f"{metrics.val_err:.4f}",
            metrics.test_err,
            metrics.lr,
            metrics.epoch_time_s,
            metrics.images_per_s,
        )
        return metrics, diags

    def _train_steps(self, epoch: int, bar: Any) -> tuple[float, float, float]:
        """One epoch of SGD steps; returns (last lr, mean loss, error) or raises _Diverged."""
        model, optimizer, loader = self.model, self.optimizer, self.train_loader
        model.train()
        loader.set_epoch(epoch - 1)
        loss_sum = torch.zeros((), device=self.device)
        wrong = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        pending: list[torch.Tensor] = []  # losses since the last finiteness check
        lr = self.schedule.lr_at(self.schedule.step)
        steps = len(loader)
        for i, (x, y) in enumerate(loader):
            lr = self.schedule.apply(optimizer)
            with self._autocast():
                out = model(x)
                loss = self.criterion(out, y)
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is None:
                loss.backward()
                optimizer.step()
            else:  # fp16: a step with inf/nan gradients is skipped and the scale lowered
                self.scaler.scale(loss).backward()
                self.scaler.step(optimizer)
                self.scaler.update()
            loss = loss.detach()
            pending.append(loss)
            loss_sum += loss.float() * y.shape[0]
            wrong += (out.detach().argmax(1) != y).sum()
            seen += y.shape[0]
            if (i + 1) % CHECK_EVERY == 0 or i + 1 == steps:
                self._check_finite(pending, epoch, self.schedule.step - len(pending))
                pending.clear()
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{loss_sum.item() / seen:.3f}", err=f"{wrong.item() / seen:.3f}"
                    )
            if bar is not None:
                bar.update(1)
        values = torch.stack([loss_sum, wrong.float()]).tolist()
        return lr, values[0] / max(seen, 1), values[1] / max(seen, 1)

    def _metrics(
        self,
        epoch: int,
        trained: tuple[float, float, float],
        val: tuple[Any, Any, Any],
        test: tuple[Any, Any, Any],
        epoch_time_s: float,
        train_time: float,
    ) -> EpochMetrics:
        """One epoch's record: ``trained`` is (lr, train loss, train error), ``val`` and
        ``test`` are (loss, top-1 error, top-5 error); also the fused trainer's, per seed."""
        lr, train_loss, train_err = trained
        return EpochMetrics(
            epoch=epoch,
            lr=lr,
            train_loss=train_loss,
            train_err=train_err,
            val_loss=val[0],
            val_err=val[1],
            val_top5_err=val[2],
            test_loss=test[0],
            test_err=test[1],
            test_top5_err=test[2],
            epoch_time_s=epoch_time_s,
            train_time_s=train_time,
            # Images of this seed per second (fused: of the fused epoch; all seeds: x k).
            images_per_s=self.train_loader.num_samples / train_time if train_time > 0 else 0.0,
            peak_mem_mb=(
                torch.cuda.max_memory_allocated(self.device) / 2**20
                if self.device.type == "cuda"
                else None
            ),
        )

    def _evaluate(self, loader: DeviceLoader) -> tuple[float, float, float]:
        """(mean cross-entropy, top-1 error, top-5 error) in eval mode."""
        return evaluate_loader(self.model, loader, self.data.info.num_classes, self._autocast)

    # -- diagnostics ------------------------------------------------------------------------
    def _diagnostics_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One fixed, unaugmented batch of training images, chosen by a private generator."""
        train = self.data.train
        n = min(self.recipe.batch_size, len(train))
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "diagnostics"))
        idx = torch.randperm(len(train), generator=gen)[:n].to(train.images.device)
        subset = TensorSplit(train.images[idx], train.labels[idx])
        loader = DeviceLoader(
            subset,
            self.data.info,
            batch_size=n,
            device=self.device,
            channels_last=self.recipe.channels_last,
        )
        return next(iter(loader))

    def _diagnose(self, epoch: int) -> list[BlockDiagnostics]:
        assert self.diag_batch is not None
        x, y = self.diag_batch
        return block_diagnostics(self.net, x, y, epoch=epoch, criterion=self.criterion)

    # -- checkpoints ------------------------------------------------------------------------
    def _save(self, epoch: int, wall_time_s: float) -> None:
        assert self.checkpoint is not None
        save_checkpoint(
            self.checkpoint,
            {
                "epoch": epoch,
                "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "rng": self.rng,
                "metrics": [dataclasses.asdict(m) for m in self.epochs],
                "diagnostics": [dataclasses.asdict(d) for d in self.diagnostics],
                "recipe": self.recipe.to_dict(),
                "seed": self.seed,
                "wall_time_s": wall_time_s,
            },
        )

    def _resume(self) -> int:
        """Load ``last.pt``; returns the number of epochs it completed (0 after healing)."""
        assert self.checkpoint is not None
        try:
            state = load_checkpoint(self.checkpoint)
            check_fits(
                state,
                str(self.checkpoint),
                seed=self.seed,
                recipe=self.recipe.to_dict(),
                model=self.net.state_dict(),
                optimizer=self.optimizer.state_dict(),
                steps_per_epoch=self.schedule.steps_per_epoch,
            )
            epochs = [EpochMetrics(**m) for m in state["metrics"]]
            diagnostics = [BlockDiagnostics(**d) for d in state["diagnostics"]]
        except (CheckpointError, TypeError) as exc:  # TypeError: metrics of another format
            bad = (
                exc
                if isinstance(exc, CheckpointError)
                else CheckpointError(
                    f"checkpoint {str(self.checkpoint)!r} holds malformed metrics ({exc})"
                )
            )
            if not self.heal:
                raise bad from None
            quarantine_checkpoint(self.checkpoint, str(bad).split("; use another")[0])
            return 0
        where = str(self.checkpoint)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.rng = state["rng"]
        self.epochs, self.diagnostics = epochs, diagnostics
        self.prior_wall_s = float(state["wall_time_s"])
        log.info("resumed from %s after epoch %d", where, state["epoch"])
        return int(state["epoch"])

    # -- small helpers ----------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def _bar(self, epoch: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=len(self.train_loader),
            desc=f"epoch {epoch}/{self.recipe.epochs}",
            unit="step",
            leave=False,  # transient: the per-epoch line comes from logging or the CLI
            dynamic_ncols=True,
        )

    def _env(self, resumed_after: int) -> dict[str, Any]:
        env = environment_info(self.device)
        env.update(
            amp={torch.bfloat16: "bf16", torch.float16: "fp16", None: None}[self.amp_dtype],
            channels_last=self.recipe.channels_last,
            compile=self.recipe.compile,
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            diagnostics_every=self.diagnostics_every,
            resumed_after_epoch=resumed_after,
            train_batches_per_epoch=len(self.train_loader),
            train_images_per_epoch=self.train_loader.num_samples,
            dataset=self.data.info.name,
            data_source=self.data.source,
        )
        return env
