"""Per-block training diagnostics: gradient norms and residual branch ratios.

Measured on one fixed batch with one forward and backward pass of a *deep copy* of the net in
train mode: batch statistics in BN, as the training step sees them, while the real model's
weights, BN running statistics and ``.grad`` fields cannot change. Dropout draws from a forked
random stream, so the training stream is untouched. Enabling diagnostics therefore does not
change the trained weights (tested).

* ``grad_norm``: L2 norm of the gradients of all the block's parameters (unused ones count
  as zero); a vanishing value in early blocks is the plain-net degradation signature.
* ``branch_ratio``: ``||branch_scale * F(x)|| / ||shortcut_scale * x||`` over the whole
  batch at the block's :class:`~archbench.models.blocks.base.ResidualAdd` (the mean over several
  when a block has more than one); ``None`` for blocks without one (plain blocks).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archbench.models.blocks.base import ResidualAdd
from archbench.training.device import fork_rng


@dataclass(frozen=True)
class BlockDiagnostics:
    """One block's diagnostics at the end of ``epoch`` (0: at initialisation)."""

    epoch: int
    block: str  # "stages.i.j"
    index: int  # position from input to output
    grad_norm: float
    branch_ratio: float | None


def named_blocks(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The net's blocks in order (``Net.blocks()``); empty for modules without blocks."""
    blocks = getattr(net, "blocks", None)
    return list(blocks()) if callable(blocks) else []


def block_diagnostics(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epoch: int,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[BlockDiagnostics]:
    """Gradient norm and branch ratio of every block of ``net`` on the batch ``(x, y)``.

    ``criterion`` defaults to cross-entropy; the trainer passes its own (label smoothing
    included) so the gradients are those of the training objective.
    """
    blocks = named_blocks(net)
    if not blocks:
        return []
    probe = copy.deepcopy(net)
    probe.train()
    probe.zero_grad(set_to_none=True)
    probe_blocks = named_blocks(probe)
    sums: list[list[torch.Tensor]] = [[] for _ in probe_blocks]  # per block: ratio tensors
    handles = []
    for i, (_, block) in enumerate(probe_blocks):
        for module in block.modules():
            if isinstance(module, ResidualAdd):
                handles.append(module.register_forward_hook(_ratio_hook(sums[i]), with_kwargs=True))
    try:
        with fork_rng(x.device):
            out = probe(x)
            loss = (criterion or F.cross_entropy)(out.float(), y)
            loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    norms = torch.stack([_grad_norm(block.parameters(), x.device) for _, block in probe_blocks])
    ratios = [torch.stack(r).mean() if r else None for r in sums]
    present = [r for r in ratios if r is not None]
    ratio_values = iter(torch.stack(present).tolist() if present else [])
    result = []
    for i, ((name, _), norm) in enumerate(zip(blocks, norms.tolist())):
        ratio = next(ratio_values) if ratios[i] is not None else None
        result.append(BlockDiagnostics(epoch, name, i, float(norm), ratio))
    return result


def _ratio_hook(store: list[torch.Tensor]) -> Callable[..., None]:
    def hook(module: ResidualAdd, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
        shortcut = args[0] if len(args) > 0 else kwargs["shortcut"]
        branch = args[1] if len(args) > 1 else kwargs["branch"]
        with torch.no_grad():
            num = torch.linalg.vector_norm(branch.float()) * abs(module.branch_scale)
            den = torch.linalg.vector_norm(shortcut.float()) * abs(module.shortcut_scale)
            store.append(num / den)  # inf when the shortcut is all zeros

    return hook


def _grad_norm(params: Iterator[nn.Parameter], device: torch.device) -> torch.Tensor:
    squares = [p.grad.float().pow(2).sum() for p in params if p.grad is not None]
    if not squares:
        return torch.zeros((), device=device)
    return torch.stack(squares).sum().sqrt()
