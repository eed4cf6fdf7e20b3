"""Fused vs unfused seeds: training images/s of k seeds of one net, side by side.

Both through the real trainers on synthetic CIFAR-shaped data (32x32x3, 10 classes): unfused
is ``train()`` for one seed (k seeds take k times as long, one after another); fused is
``train_fused()`` for k seeds at once, counted as k x each seed's images/s. Only the training
steps are timed (``EpochMetrics.train_time_s``), not evaluation. Repeats are interleaved
(unfused, fused k=2, 4, 8, unfused, ...) so drifting load hits every variant alike; medians.

    python benchmarks/bench_fused.py     # the CPU table of benchmarks/README.md (16x16)
    python benchmarks/bench_fused.py --device cuda --nets resnet20 --k 1 4 8 --threads 1 \
        --image-size 32 --train 8192 --batch-size 128 --amp
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import torch

from archbench.data import load_dataset
from archbench.models.net import build_net
from archbench.models.presets import get_preset
from archbench.training.device import seed_everything
from archbench.training.fused import train_fused
from archbench.training.recipe import Recipe
from archbench.training.train import train


def _nets(name: str, k: int, size: int = 32) -> list[Any]:
    spec = get_preset(name, num_classes=10, in_channels=3, input_size=size)
    nets = []
    for seed in range(k):
        seed_everything(seed)
        nets.append(build_net(spec))
    return nets


def images_per_s(name: str, k: int, fused: bool, data: Any, recipe: Recipe, device: str) -> float:
    """Training images/s of ``k`` seeds of ``name``: fused together, or one unfused seed
    (which is the unfused rate of any k: the seeds run one after another)."""
    size = data.info.image_size
    if not fused:
        result = train(
            _nets(name, 1, size)[0], data, recipe, seed=0, device=device, diagnostics_every=0
        )
        return statistics.median(e.images_per_s for e in result.epochs)
    results = train_fused(
        _nets(name, k, size),
        data,
        recipe,
        seeds=tuple(range(k)),
        device=device,
        diagnostics_every=0,
    )
    return k * statistics.median(e.images_per_s for e in results[0].epochs)


def measure(
    nets: list[str],
    ks: list[int],
    threads: list[int],
    *,
    device: str = "cpu",
    train_size: int = 512,
    batch_size: int = 128,
    image_size: int = 32,
    epochs: int = 1,
    repeats: int = 3,
    amp: bool = False,
    channels_last: bool = False,
) -> list[dict[str, Any]]:
    """One row per (net, threads, k): unfused and fused images/s and their ratio."""
    data = load_dataset(
        "synthetic",
        val_size=0,
        options={"num_train": train_size, "num_test": batch_size, "image_size": image_size},
    )
    recipe = Recipe(
        epochs=epochs, batch_size=batch_size, lr=0.05, amp=amp, channels_last=channels_last
    )
    rows = []
    for name in nets:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            samples: dict[tuple[bool, int], list[float]] = {}
            images_per_s(name, min(ks), True, data, recipe, device)  # warm-up (allocator, cudnn)
            for _ in range(repeats):
                samples.setdefault((False, 1), []).append(
                    images_per_s(name, 1, False, data, recipe, device)
                )
                for k in ks:
                    samples.setdefault((True, k), []).append(
                        images_per_s(name, k, True, data, recipe, device)
                    )
            unfused = statistics.median(samples[(False, 1)])
            for k in ks:
                fused = statistics.median(samples[(True, k)])
                rows.append(
                    {
                        "net": name,
                        "threads": n_threads,
                        "k": k,
                        "unfused_img_s": round(unfused, 1),
                        "fused_img_s": round(fused, 1),
                        "ratio": round(fused / unfused, 3),
                    }
                )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| net | threads | k | unfused img/s | fused img/s (all k seeds) | fused / unfused |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['net']} | {r['threads']} | {r['k']} | {r['unfused_img_s']:.0f} | "
        f"{r['fused_img_s']:.0f} | {r['ratio']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["resnet20", "wrn_16_4"])
    parser.add_argument("--k", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="cpu")
    # The defaults are the CPU measurement of benchmarks/README.md; on a GPU give CIFAR's
    # sizes (--image-size 32 --train 8192 --batch-size 128 --amp), as gpu_check.py does.
    parser.add_argument("--train", type=int, default=128, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=16, help="16 on CPUs; CIFAR's 32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = measure(
        args.nets,
        args.k,
        args.threads,
        device=args.device,
        train_size=args.train,
        batch_size=args.batch_size,
        image_size=args.image_size,
        repeats=args.repeats,
        amp=args.amp,
    )
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
