"""Training-step throughput: archbench's resnet50 vs torchvision's resnet50.

Forward + cross-entropy + backward (no optimizer step) on the same random batch, in train
mode. Each round runs one step of every model, the order rotating from round to round, so
machine noise hits all alike; the throughput ratio archbench / torchvision is computed per
round (goal: >= 1.00, i.e. the shared Net adds no overhead) and reported as its median with
the interquartile range and a bootstrap 95% interval of the median. On CPU it also reports
images per CPU-second of this process, which other processes on a shared machine disturb
much less than wall time.

Besides ``archbench`` (as built) and ``torchvision``, ``--variants`` can add archbench
variants that isolate one difference from torchvision's code:

* ``archbench_outofplace``: every ``ResidualAdd`` with ``inplace=False`` (``shortcut +
  branch`` into a new tensor instead of torchvision's ``out += identity``);
* ``archbench_tvforward``: the same modules called as torchvision's ``ResNet._forward_impl``
  does (no ``nn.Sequential``/``ModuleList`` iteration, no head ``Identity`` dropout,
  ``torch.flatten``);
* ``torchvision_copy``: a second torchvision resnet50, the A/A control: its ratio to
  ``torchvision`` shows how far from 1.00 the noise and the position in a round alone go.

CPU defaults: one thread (steadier; ``--threads 0`` keeps torch's default), batch 8 at
128x128, 40 rounds. CUDA defaults: batch 64 at 224x224. Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_resnet50_throughput.py [--device cuda]
        [--batch N] [--size S] [--rounds R] [--threads T] [--variants NAME ...]
        [--channels-last] [--amp]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from archbench.models.blocks.base import ResidualAdd
from archbench.models.net import Net, build_net
from archbench.models.presets import get_preset

VARIANTS = ("archbench_outofplace", "archbench_tvforward", "torchvision_copy")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchvisionOrderForward(nn.Module):
    """An archbench resnet50 ``Net`` called in torchvision's ``_forward_impl`` order."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net
        self.blocks = [block for _, block in net.blocks()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem, head = self.net.stem, self.net.head
        x = stem.pool(stem.relu(stem.bn(stem.conv(x))))
        for block in self.blocks:
            x = block(x)
        return head.fc(torch.flatten(head.pool(x), 1))


def build_models(size: int, variants: list[str]) -> dict[str, nn.Module]:
    models: dict[str, nn.Module] = {
        "archbench": build_net(get_preset("resnet50", input_size=size)),
        "torchvision": torchvision.models.resnet50(),
    }
    for name in variants:
        if name == "torchvision_copy":
            models[name] = torchvision.models.resnet50()
            continue
        net = build_net(get_preset("resnet50", input_size=size))
        if name == "archbench_outofplace":
            for module in net.modules():
                if isinstance(module, ResidualAdd):
                    module.inplace = False
            models[name] = net
        elif name == "archbench_tvforward":
            models[name] = TorchvisionOrderForward(net)
        else:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return models


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool) -> Callable[[], None]:
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x), y)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def time_step(step: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one step."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def bootstrap_median(values: list[float], seed: int = 0, n: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


def summarise(label: str, ratios: list[float]) -> str:
    q1, med, q3 = quartiles(ratios)
    lo, hi = bootstrap_median(ratios)
    return (
        f"{label}: median {med:.3f} (IQR {q1:.3f}..{q3:.3f}, 95% CI of median {lo:.3f}..{hi:.3f}, "
        f"range {min(ratios):.3f}..{max(ratios):.3f}, {len(ratios)} rounds)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="batch size (default: 8 CPU, 64 CUDA)")
    parser.add_argument("--size", type=int, help="image size (default: 128 CPU, 224 CUDA)")
    parser.add_argument("--rounds", type=int, help="rounds (default: 40 CPU, 100 CUDA)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch default)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--variants", nargs="*", default=[], choices=VARIANTS)
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    on_gpu = device.type == "cuda"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    batch = args.batch or (64 if on_gpu else 8)
    size = args.size or (224 if on_gpu else 128)
    rounds = args.rounds or (100 if on_gpu else 40)
    if on_gpu:
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(args.seed)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    models = build_models(size, args.variants)
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    assert len(set(n_params.values())) == 1, n_params
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)
    steps = {}
    for name, model in models.items():
        model.to(device=device, memory_format=fmt).train()
        steps[name] = make_step(model, x, y, args.amp)
        for _ in range(args.warmup):
            steps[name]()
        _sync(device)

    where = (
        torch.cuda.get_device_name(device) if on_gpu else f"CPU, {torch.get_num_threads()} threads"
    )
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(
        f"resnet50 forward+backward, batch {batch} at {size}x{size}, {where}, torch "
        f"{torch.__version__}, {'channels_last' if args.channels_last else 'NCHW'}"
        f"{', bf16 autocast' if args.amp else ''}; {rounds} rounds, one step per model each, "
        f"order rotating{load}"
    )
    names = list(models)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            w, c = time_step(steps[name], device)
            wall[name].append(w)
            cpu[name].append(c)
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")

    print(f"\n{'model':22s} {'median images/s':>16s} {'best images/s':>14s}")
    for name in names:
        med, best = batch / statistics.median(wall[name]), batch / min(wall[name])
        print(f"{name:22s} {med:16.2f} {best:14.2f}")
    print("\nthroughput ratio vs torchvision, per round (goal for archbench: >= 1.00)")
    for name in names:
        if name == "torchvision":
            continue
        ratios = [t / a for a, t in zip(wall[name], wall["torchvision"])]
        print("  " + summarise(f"{name} wall", ratios))
        if not on_gpu:
            ratios = [t / a for a, t in zip(cpu[name], cpu["torchvision"])]
            print("  " + summarise(f"{name} CPU-time", ratios))
        best = min(wall["torchvision"]) / min(wall[name])
        print(f"  {name}: ratio of the fastest steps {best:.3f}")
    if "archbench_outofplace" in models:
        ratios = [o / a for a, o in zip(wall["archbench"], wall["archbench_outofplace"])]
        print("  " + summarise("archbench (in-place add) vs archbench_outofplace wall", ratios))


if __name__ == "__main__":
    main()
