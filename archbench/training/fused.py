"""Fused seeds: the seeds of one configuration trained together as one vectorised model.

Each seed's net is built as for an unfused run (same initial weights, bit for bit) and keeps
everything an unfused run has (its own :class:`~archbench.training.train._Run`: data order,
augmentation, optimizer, schedule, checkpoint). Only the training steps are shared: the
seeds' parameters and buffers are stacked (``torch.func.stack_module_state``) and one
``vmap`` of ``functional_call`` runs all of them on a stacked batch, so a device runs k small
nets as one wide one (HFTA, Wang et al., MLSys 2021). BatchNorm's running statistics are
stacked buffers, updated in place per seed under ``vmap``. The stacked state is copied back
into each seed's net and optimizer for evaluation, diagnostics and checkpoints, which are
therefore the unfused run's, in its format: a run resumes fused or unfused alike.

Per-seed results equal unfused training within float tolerance (the same arithmetic, other
kernels). A seed that diverges or is pruned leaves the stack; the others go on. Dropout
draws from one stream for all seeds under ``vmap``, so nets with dropout are refused
(:func:`fusion_problem`), as is ``recipe.compile``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from archbench.errors import SpecError
from archbench.training.device import fork_rng, select_device
from archbench.training.diagnostics import BlockDiagnostics
from archbench.training.recipe import Recipe
from archbench.training.results import EpochMetrics, TrainResult
from archbench.training.run_checks import CHECK_EVERY, _check_data_fits, _Diverged
from archbench.training.train import _Run, amp_dtype

log = logging.getLogger(__name__)

EpochCallback = Callable[[EpochMetrics, list[BlockDiagnostics]], bool]


def fusion_problem(net: nn.Module, recipe: Recipe | None = None) -> str | None:
    """Why the seeds of ``net`` cannot be trained fused (one line), or ``None``."""
    if recipe is not None and recipe.compile:
        return "recipe.compile is not supported with fused seeds (set it false)"
    for name, module in net.named_modules():
        p = getattr(module, "p", 0.0)
        if isinstance(module, nn.modules.dropout._DropoutNd) and p > 0:
            return (
                f"module {name!r} is {type(module).__name__}(p={p}): under vmap all seeds draw "
                "dropout masks from one stream, not each its own"
            )
    return _draws_random_numbers(net)


def _draws_random_numbers(net: nn.Module) -> str | None:
    """Any other randomness in a training forward (a plugin block's own noise, stochastic
    depth): one forward of a copy on a CPU batch of 2 must leave torch's stream untouched."""
    import copy

    spec = getattr(net, "spec", None)
    if spec is None:
        return None
    probe = copy.deepcopy(net).to("cpu").train()
    x = torch.zeros(2, spec.in_channels, spec.input_size, spec.input_size)
    with torch.random.fork_rng(devices=[]):
        before = torch.random.get_rng_state()
        with torch.no_grad():
            probe(x)
        drew = not torch.equal(before, torch.random.get_rng_state())
    if drew:
        return (
            f"model {spec.name or 'net'!r} draws random numbers in its training forward; under "
            "vmap all seeds would share one stream"
        )
    return None


def train_fused(
    nets: Sequence[nn.Module],
    data: Any,
    recipe: Recipe,
    *,
    seeds: Sequence[int],
    device: str | torch.device | None = None,
    checkpoint_dirs: Sequence[str | Path | None] | None = None,
    resume: bool = True,
    diagnostics_every: int = 1,
    on_epoch_end: Sequence[EpochCallback | None] | None = None,
    bad_checkpoint: Literal["raise", "restart"] = "raise",
) -> list[TrainResult]:
    """Train ``nets[i]`` with ``seeds[i]`` as :func:`~archbench.training.train.train` would,
    all at once; one :class:`TrainResult` per seed, in order.

    The nets must share one architecture (the same spec, built under each seed). Checkpoints
    of every seed must be at the same epoch to resume together (else :class:`SpecError`:
    resume them unfused). ``on_epoch_end[i]`` returning ``True`` prunes seed ``i`` alone.
    ``bad_checkpoint``: as :func:`~archbench.training.train.train` (``"restart"``: a seed's
    unusable checkpoint is moved aside and that seed starts from scratch).
    """
    recipe.validate()
    if bad_checkpoint not in ("raise", "restart"):
        raise SpecError(f"bad_checkpoint must be 'raise' or 'restart', got {bad_checkpoint!r}")
    k = len(nets)
    if k == 0 or len(seeds) != k or len(set(seeds)) != k:
        raise SpecError(f"fused seeds: give one distinct seed per net, got {list(seeds)!r}")
    for net in nets:
        problem = fusion_problem(net, recipe)
        if problem:
            raise SpecError(f"fused seeds: {problem}")
        _check_data_fits(net, data)
    shapes = [[(n, p.shape) for n, p in net.state_dict().items()] for net in nets]
    if any(s != shapes[0] for s in shapes):
        raise SpecError("fused seeds: the nets differ in architecture; fuse one configuration")
    dirs = list(checkpoint_dirs) if checkpoint_dirs is not None else [None] * k
    callbacks = list(on_epoch_end) if on_epoch_end is not None else [None] * k
    dev = select_device("auto" if device is None else device)
    if recipe.amp and dev.type == "cuda" and amp_dtype(dev) == torch.float16:
        raise SpecError(
            f"fused seeds: {dev} has no bf16, and fp16 autocast's one gradient scaler would "
            "skip every seed's step when one overflows; set recipe.amp false or train unfused"
        )
    start = time.perf_counter()
    with fork_rng(dev):
        runs = [
            _Run(net, data, recipe, seed, dev, d, diagnostics_every, False)
            for net, seed, d in zip(nets, seeds, dirs, strict=True)
        ]
        for run in runs:
            run.heal = bad_checkpoint == "restart"
        return _Fused(runs, callbacks).execute(resume, start)


class _Stack:
    """The active seeds' parameters, buffers and optimizer as stacked tensors."""

    def __init__(self, runs: list[_Run]) -> None:
        self.runs = runs
        nets = [r.net for r in runs]
        self.base = nets[0]
        self.names = [n for n, p in nets[0].named_parameters() if p.requires_grad]
        params, self.buffers = stack_module_state(nets)  # copies; grads required on params
        self.params = {n: params[n] for n in self.names}
        # Parameters that do not train are each seed's own too: passed stacked (no grads),
        # else functional_call would take the first net's for every seed.
        self.frozen = {n: p.detach() for n, p in params.items() if n not in self.params}
        index = {id(p): n for n, p in nets[0].named_parameters()}
        opt0 = runs[0].optimizer
        groups = []
        for group in opt0.param_groups:
            fused = {key: value for key, value in group.items() if key != "params"}
            fused["params"] = [self.params[index[id(p)]] for p in group["params"]]
            groups.append(fused)
        self.optimizer = torch.optim.SGD(groups)
        # Momentum buffers (absent before the first step) from each seed's optimizer.
        for name in self.names:
            bufs = [_momentum(r.optimizer, dict(r.net.named_parameters())[name]) for r in runs]
            if all(b is not None for b in bufs):
                stacked = torch.stack([b for b in bufs if b is not None])
                self.optimizer.state[self.params[name]]["momentum_buffer"] = stacked

        def loss_and_out(
            p: dict[str, torch.Tensor],
            f: dict[str, torch.Tensor],
            b: dict[str, torch.Tensor],
            x: torch.Tensor,
            y: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = functional_call(self.base, (p, f, b), (x,))
            return runs[0].criterion(out, y), out

        self.step_fn = vmap(loss_and_out)

    def write_back(self) -> None:
        """Copy the stacked weights, buffers and momentum into each seed's net and optimizer."""
        with torch.no_grad():
            for i, run in enumerate(self.runs):
                named = dict(run.net.named_parameters())
                for name in self.names:
                    named[name].copy_(self.params[name][i])
                    buf = self.optimizer.state.get(self.params[name], {}).get("momentum_buffer")
                    if buf is not None:
                        run.optimizer.state[named[name]]["momentum_buffer"] = buf[i].clone()
                for name, tensor in run.net.named_buffers():
                    tensor.copy_(self.buffers[name][i])


def _momentum(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> torch.Tensor | None:
    state = optimizer.state.get(param)
    return None if not state else state.get("momentum_buffer")


class _Fused:
    def __init__(self, runs: list[_Run], callbacks: list[EpochCallback | None]) -> None:
        self.runs = runs
        self.callbacks = callbacks
        self.status: list[Literal["completed", "diverged", "pruned"]] = ["completed"] * len(runs)
        self.diverged_at: list[dict[str, Any] | None] = [None] * len(runs)
        self.device = runs[0].device

    def execute(self, resume: bool, start: float) -> list[TrainResult]:
        runs = self.runs
        done = [
            r._resume() if resume and r.checkpoint and r.checkpoint.exists() else 0 for r in runs
        ]
        if len(set(done)) > 1:
            raise SpecError(
                f"fused seeds: the seeds' checkpoints are at different epochs {done}; "
                "resume them unfused"
            )
        for r in runs:
            if r.diag_batch is not None and done[0] == 0:
                r.diagnostics += r._diagnose(0)
        active = list(range(len(runs)))
        epochs = runs[0].recipe.epochs
        for epoch in range(done[0] + 1, epochs + 1):
            if not active:
                break
            t0 = time.perf_counter()
            trained = self._train_epoch(epoch, active)
            train_time = time.perf_counter() - t0
            for i in list(active):
                if i not in trained:  # diverged this epoch
                    active.remove(i)
                    continue
                run = runs[i]
                try:  # as unfused: the last step or the evaluation can show the blow-up
                    run._check_weights(epoch, trained[i][1])
                    metrics, diags = self._finish_epoch(i, epoch, trained[i], train_time)
                except _Diverged as exc:
                    self.status[i], self.diverged_at[i] = "diverged", exc.where
                    log.info("seed %d diverged in epoch %d", run.seed, epoch)
                    active.remove(i)
                    continue
                run.epochs.append(metrics)
                run.diagnostics += diags
                if run.checkpoint is not None:
                    run._save(epoch, run.prior_wall_s + time.perf_counter() - start)
                callback = self.callbacks[i]
                if callback is not None and callback(metrics, diags):
                    self.status[i] = "pruned"
                    active.remove(i)
        wall = time.perf_counter() - start
        return [
            TrainResult(
                status=self.status[i],
                epochs=list(r.epochs),
                diagnostics=list(r.diagnostics),
                final=r.epochs[-1] if r.epochs else None,
                diverged_at=self.diverged_at[i],
                wall_time_s=r.prior_wall_s + wall,
                device=str(r.device),
                env={**r._env(done[i]), "fused_seeds": len(runs)},
                recipe=r.recipe,
                seed=r.seed,
            )
            for i, r in enumerate(runs)
        ]

    def _train_epoch(self, epoch: int, active: list[int]) -> dict[int, tuple[float, float, float]]:
        """One epoch of fused steps for ``active`` seeds: {seed index: (lr, loss, error)} of
        those that did not diverge (the others are marked)."""
        runs = self.runs
        live = list(active)
        stack = _Stack([runs[i] for i in live])
        # No dropout (refused), so the steps draw nothing from torch's global stream: each
        # seed's saved stream (``run.rng``) stays as an unfused run would leave it.
        for i in live:
            runs[i].net.train()  # evaluation left it in eval mode (BN: batch statistics)
            runs[i].train_loader.set_epoch(epoch - 1)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        iters = {i: iter(runs[i].train_loader) for i in live}
        steps = len(runs[live[0]].train_loader)
        # Per seed, in the order of ``live`` (rows of seeds that leave are dropped).
        loss_sum = torch.zeros(len(live), device=self.device)
        wrong_sum = torch.zeros(len(live), device=self.device, dtype=torch.long)
        pending: list[torch.Tensor] = []
        seen = 0
        lr = runs[live[0]].schedule.lr_at(runs[live[0]].schedule.step)
        for step in range(steps):
            batches = [next(iters[i]) for i in live]
            x = torch.stack([b[0] for b in batches])
            y = torch.stack([b[1] for b in batches])
            for i in live:
                lr = runs[i].schedule.apply(runs[i].optimizer)
            for group in stack.optimizer.param_groups:
                group["lr"] = lr
            with runs[live[0]]._autocast():
                losses, out = stack.step_fn(stack.params, stack.frozen, stack.buffers, x, y)
            stack.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            stack.optimizer.step()
            losses = losses.detach()
            pending.append(losses)
            loss_sum += losses.float() * y.shape[1]
            wrong_sum += (out.detach().argmax(-1) != y).sum(1)
            seen += y.shape[1]
            if (step + 1) % CHECK_EVERY == 0 or step + 1 == steps:
                bad = self._diverged(
                    live, pending, epoch, runs[live[0]].schedule.step - len(pending)
                )
                pending.clear()
                if bad:
                    stack.write_back()
                    keep = [j for j, i in enumerate(live) if i not in bad]
                    loss_sum, wrong_sum = loss_sum[keep], wrong_sum[keep]
                    live = [i for i in live if i not in bad]
                    if not live:
                        break
                    stack = _Stack([runs[i] for i in live])
                    for i in bad:
                        del iters[i]
        if live:
            stack.write_back()
        result = {}
        sums, wrongs = loss_sum.tolist(), wrong_sum.tolist()
        for j, i in enumerate(live):
            result[i] = (lr, sums[j] / max(seen, 1), wrongs[j] / max(seen, 1))
        runs[0]._sync()
        return result

    def _diverged(
        self, live: list[int], pending: list[torch.Tensor], epoch: int, first_step: int
    ) -> list[int]:
        losses = torch.stack(pending)  # (steps, seeds)
        finite = torch.isfinite(losses)
        if bool(finite.all()):
            return []
        bad = []
        for j, i in enumerate(live):
            column = finite[:, j]
            if bool(column.all()):
                continue
            s = int((~column).nonzero()[0, 0])
            step = first_step + s
            schedule = self.runs[i].schedule
            self.status[i] = "diverged"
            self.diverged_at[i] = {
                "epoch": epoch,
                "step": step,
                "epoch_step": step - (epoch - 1) * schedule.steps_per_epoch,
                "lr": schedule.lr_at(step),
                "loss": float(losses[s, j].item()),
            }
            log.info("seed %d diverged in epoch %d at step %d", self.runs[i].seed, epoch, step)
            bad.append(i)
        return bad

    def _finish_epoch(
        self,
        i: int,
        epoch: int,
        trained: tuple[float, float, float],
        train_time: float,
    ) -> tuple[EpochMetrics, list[BlockDiagnostics]]:
        run = self.runs[i]
        t_eval = time.perf_counter()
        evals = {name: run._evaluate(loader) for name, loader in run.eval_loaders.items()}
        for eval_loss, _, _ in evals.values():
            if not math.isfinite(eval_loss):
                raise _Diverged(run._where(epoch, eval_loss))
        due = run.diagnostics_every and epoch % run.diagnostics_every == 0
        diags = run._diagnose(epoch) if due and run.diag_batch is not None else []
        val = evals.get("val", (None, None, None))
        test = evals["test"]
        run._sync()
        epoch_time_s = train_time + time.perf_counter() - t_eval
        return run._metrics(epoch, trained, val, test, epoch_time_s, train_time), diags
