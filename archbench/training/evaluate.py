"""Evaluation of a net on one split: the trainer's per-epoch evaluation and ``archbench eval``
share this code, so a reloaded net's error equals the one recorded when it was trained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archbench.data import DeviceLoader, TensorSplit

EVAL_BATCH_SIZE = 256  # at least, on accelerators; no gradients, so larger than training is safe
# On CPU a smaller eval batch is faster: its activations stay in cache (resnet20 on 28x28:
# batch 128 takes ~0.85x the time of 256, 512 ~1.4x; benchmarks/README.md).
CPU_EVAL_BATCH_SIZE = 128


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that supports it (Ampere and later), else fp16 (with a gradient scaler)."""
    return (
        torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    )


#: Bounds of the evaluation batch on an accelerator, and the share of its free memory the
#: evaluation activations may take.
MAX_EVAL_BATCH_SIZE = 4096
EVAL_MEMORY_SHARE = 0.25


def eval_batch_size(net: nn.Module, device: torch.device, batch_size: int, amp: bool) -> int:
    """The evaluation batch: small on a CPU (cache), large on a GPU (no gradients, so only
    one layer's activations live at a time): as many images as a quarter of the free device
    memory holds at the net's activations per image, between the training batch (at least
    :data:`EVAL_BATCH_SIZE`) and :data:`MAX_EVAL_BATCH_SIZE`."""
    if device.type == "cpu":
        return CPU_EVAL_BATCH_SIZE
    low = max(batch_size, EVAL_BATCH_SIZE)
    spec = getattr(net, "spec", None)
    if device.type != "cuda" or spec is None:
        return low
    from archbench.models.complexity import analytic

    free, _ = torch.cuda.mem_get_info(device)
    per_image = max(1, analytic(spec).acts) * (2 if amp else 4)
    fits = int(free * EVAL_MEMORY_SHARE // per_image) // 64 * 64
    return max(low, min(MAX_EVAL_BATCH_SIZE, fits))


@torch.inference_mode()  # no autograd bookkeeping at all (no version counters)
def evaluate_loader(
    model: nn.Module,
    loader: DeviceLoader,
    num_classes: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[float, float, float]:
    """(mean cross-entropy, top-1 error, top-5 error) of ``model`` in eval mode."""
    device = loader.device
    model.eval()
    k = min(5, num_classes)
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros(2, device=device, dtype=torch.long)
    for x, y in loader:
        with autocast():
            out = model(x)
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum")
        match = out.topk(k, dim=1).indices == y[:, None]
        hits += torch.stack([match[:, 0].sum(), match.any(dim=1).sum()])
    n = loader.num_samples
    loss, top1, top5 = torch.cat([loss_sum[None], hits.float()]).tolist()
    return loss / n, 1.0 - top1 / n, 1.0 - top5 / n


def evaluate_split(
    net: nn.Module, split: TensorSplit, info: Any, recipe: Any, device: torch.device
) -> tuple[float, float, float]:
    """``net`` on ``split`` as the trainer evaluates it under ``recipe`` on ``device`` (same
    batch size, memory format and autocast): (loss, top-1 error, top-5 error)."""
    net.to(device)
    if recipe.channels_last:
        net.to(memory_format=torch.channels_last)
    amp = recipe.amp and device.type == "cuda"
    loader = DeviceLoader(
        split,
        info,
        batch_size=eval_batch_size(net, device, recipe.batch_size, amp),
        device=device,
        channels_last=recipe.channels_last,
    )

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if amp:
            return torch.autocast(device_type="cuda", dtype=amp_dtype(device))
        return contextlib.nullcontext()

    return evaluate_loader(net, loader, info.num_classes, autocast)
