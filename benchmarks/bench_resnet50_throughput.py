"""Training-step throughput: archbench's resnet50 vs torchvision's resnet50.

Forward + cross-entropy + backward (no optimizer step) on the same random batch, in train
mode. The two models' steps are interleaved (A B, B A, ...) within each round, so machine
noise hits both alike; prints images/s per round, the median and best rounds, the ratio
archbench / torchvision (goal: >= 1.00, i.e. the shared Net adds no overhead), and on CPU
also images per CPU-second of this process, which other processes on a shared machine
disturb much less than wall time.

CPU defaults are small so it runs in about a minute (batch 8 at 128x128); on CUDA the
defaults are batch 64 at 224x224. Usage:
    python benchmarks/bench_resnet50_throughput.py [--device cuda] [--batch N] [--size S]
        [--rounds R] [--steps K] [--channels-last] [--amp]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from archbench.net import build_net
from archbench.presets import get_preset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="batch size (default: 8 CPU, 64 CUDA)")
    parser.add_argument("--size", type=int, help="image size (default: 128 CPU, 224 CUDA)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, help="steps per round (default: 3 CPU, 20 CUDA)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    on_gpu = device.type == "cuda"
    batch = args.batch or (64 if on_gpu else 8)
    size = args.size or (224 if on_gpu else 128)
    steps = args.steps or (20 if on_gpu else 3)
    if on_gpu:
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(args.seed)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    models = {
        "archbench": build_net(get_preset("resnet50", input_size=size)),
        "torchvision": torchvision.models.resnet50(),
    }
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    assert n_params["archbench"] == n_params["torchvision"], n_params
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)
    step_fns = {}
    for name, model in models.items():
        model.to(device=device, memory_format=fmt).train()
        step_fns[name] = make_step(model, x, y, args.amp)
        for _ in range(args.warmup):
            step_fns[name]()
        _sync(device)

    where = (
        torch.cuda.get_device_name(device) if on_gpu else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"resnet50 forward+backward, batch {batch} at {size}x{size}, {where}, torch "
        f"{torch.__version__}, {'channels_last' if args.channels_last else 'NCHW'}"
        f"{', bf16 autocast' if args.amp else ''}; {args.rounds} rounds x {steps} steps"
    )
    # Steps alternate between the models (A B, then B A, ...), so both see the same machine.
    rates: dict[str, list[float]] = {name: [] for name in models}
    cpu_rates: dict[str, list[float]] = {name: [] for name in models}
    step_times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for r in range(args.rounds):
        wall = dict.fromkeys(models, 0.0)
        cpu = dict.fromkeys(models, 0.0)
        for k in range(steps):
            for name in order if (r * steps + k) % 2 == 0 else order[::-1]:
                w, c = time_step(step_fns[name], device)
                step_times[name].append(w)
                wall[name] += w
                cpu[name] += c
        for name in order:
            rates[name].append(batch * steps / wall[name])
            cpu_rates[name].append(batch * steps / cpu[name])
        print(
            f"round {r + 1}: "
            + "  ".join(f"{name} {rates[name][-1]:8.1f} images/s" for name in order)
        )
    ratios = [a / t for a, t in zip(rates["archbench"], rates["torchvision"])]
    a, t = statistics.median(rates["archbench"]), statistics.median(rates["torchvision"])
    print(
        f"median round: archbench {a:.1f} images/s, torchvision {t:.1f} images/s, ratio {a / t:.3f}"
    )
    # The fastest step of each is the least disturbed by other work on the machine.
    a, t = batch / min(step_times["archbench"]), batch / min(step_times["torchvision"])
    print(
        f"fastest step: archbench {a:.1f} images/s, torchvision {t:.1f} images/s, ratio {a / t:.3f}"
    )
    print(
        f"per-round ratios {min(ratios):.3f}..{max(ratios):.3f}, median "
        f"{statistics.median(ratios):.3f} (goal >= 1.00)"
    )
    if not on_gpu:
        # Images per CPU-second of this process: robust to other processes on a shared box.
        a, t = (
            statistics.median(cpu_rates["archbench"]),
            statistics.median(cpu_rates["torchvision"]),
        )
        print(
            f"per CPU-second (median): archbench {a:.2f}, torchvision {t:.2f} images/CPU-s, "
            f"ratio {a / t:.3f}"
        )


if __name__ == "__main__":
    main()
