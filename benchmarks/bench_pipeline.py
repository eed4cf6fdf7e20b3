"""Pipeline overhead: one training epoch through ``archbench.training.train`` vs a bare PyTorch loop.

Both train the same architecture from the same init (a fresh net and optimizer per measured
epoch) with the same SGD optimizer on the same number of images and batch size. The bare loop steps through batches made before the clock starts
(forward, backward, step, nothing else); ``train`` includes everything it does per step: its
device loader (shuffle + augmentation on the device), the learning-rate update, running
loss/error sums and the finiteness checks. ``train``'s number is its own ``images_per_s``
(training steps only). Repeats are interleaved (bare, train, train, bare, ...) so drifting
load hits both alike; ratios of the best and of the median runs. Goal: >= 0.97 on CPU, >= 0.95
on GPU.

``--clock thread`` (CPU, one thread) counts the main thread's CPU time instead of wall time,
for both loops (``train``'s timer is pointed at ``time.thread_time``): on a machine shared
with other jobs, wall time measures their load more than our code.

``--via cli`` measures the ``archbench train`` command instead of the function: each repeat
runs ``archbench train MODEL --epochs 1 --diagnostics-every 0 --json FILE`` in this process
(same preset, dataset subset, seed and recipe; its per-epoch table printing included) and
takes the ``images_per_s`` it reports. ``--dataset fashion_mnist`` trains on Fashion-MNIST
(1x28x28, the CPU experiments' data) instead of synthetic 3x32x32 images.

Also measured: the cost of one diagnostics call (deep copy + forward/backward on one batch),
as a share of this epoch and of a 391-step CIFAR-10 epoch (batch 128).

    python benchmarks/bench_pipeline.py                      # CPU: resnet20, 2048 images
    python benchmarks/bench_pipeline.py --clock thread       # CPU, robust to other load
    python benchmarks/bench_pipeline.py --via cli --dataset fashion_mnist --model resnet20 \
        --batch-size 64 --clock thread                       # archbench train, CPU workload
    python benchmarks/bench_pipeline.py --device cuda --images 50000 --amp --channels-last
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
import types
from pathlib import Path

import torch

import archbench.training.train
from archbench.data import DeviceLoader, load_dataset
from archbench.models.net import build_net
from archbench.models.presets import get_preset
from archbench.training.device import derive_seed, select_device
from archbench.training.diagnostics import block_diagnostics
from archbench.training.recipe import Recipe, build_optimizer
from archbench.training.train import seed_everything, train

CIFAR_STEPS = 391  # 50k images / batch 128


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=None, help="CPU 2048, GPU 50000")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (wall clock)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--via", choices=("function", "cli"), default="function")
    parser.add_argument("--dataset", default="synthetic", help="synthetic or a registered one")
    parser.add_argument("--data-root", help="dataset folder (fashion_mnist: Debian's by default)")
    args = parser.parse_args()

    device = select_device(args.device)
    if args.clock == "thread":
        if device.type != "cpu":
            parser.error("--clock thread measures CPU time: use it with --device cpu")
        args.threads = 1  # all the work on the main thread, whose CPU time we count
        archbench.training.train.time = types.SimpleNamespace(perf_counter=time.thread_time)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cudnn.benchmark = True
    images = args.images or (2048 if device.type == "cpu" else 50_000)
    if args.dataset == "synthetic":
        data = load_dataset(
            "synthetic",
            val_size=0,
            options={"num_train": images, "num_test": 64, "image_size": 32},
        )
    else:  # as `archbench train --train-subset --test-subset --val-size 0` loads it
        data = load_dataset(
            args.dataset, root=args.data_root, val_size=0, train_subset=images, test_subset=64
        )
    info = data.info
    spec = get_preset(
        args.model,
        num_classes=info.num_classes,
        in_channels=info.channels,
        input_size=info.image_size,
    )
    if args.via == "cli" and args.dataset == "synthetic" and images > 5000:
        parser.error("--via cli on synthetic data: at most 5000 images (its default set)")
    recipe = Recipe(
        epochs=1,
        batch_size=args.batch_size,
        lr=0.02,
        schedule="constant",
        amp=args.amp,
        channels_last=args.channels_last,
    )
    amp = args.amp and device.type == "cuda"
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    def fresh_net() -> torch.nn.Module:
        seed_everything(0)
        return build_net(spec).to(device, memory_format=memory_format)

    # The bare loop: batches made up front (same loader, same seed), then only the steps.
    # Every measured epoch, of either loop, starts from a fresh net and optimizer (built
    # before the clock starts), as each `archbench train` call does: a warm, trained net
    # against a fresh one measured the difference between them, not the pipeline.
    loader = DeviceLoader(
        data.train,
        info,
        batch_size=args.batch_size,
        device=device,
        train=True,
        drop_last=True,
        seed=derive_seed(0, "data"),
        channels_last=args.channels_last,
    )
    batches = list(loader)
    n_images = loader.num_samples
    criterion = torch.nn.CrossEntropyLoss()

    def bare_epoch() -> float:
        net = fresh_net()
        opt = build_optimizer(net, recipe)
        net.train()
        sync(device)
        t0 = clock()
        for x, y in batches:
            with torch.autocast("cuda", torch.bfloat16) if amp else contextlib.nullcontext():
                loss = criterion(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        return n_images / (clock() - t0)

    pipe_net = fresh_net()  # the diagnostics measurement below
    epoch_times: list[float] = []

    def pipeline_epoch() -> float:
        net = fresh_net()
        result = train(net, data, recipe, device=device, diagnostics_every=0, progress=False)
        assert result.final is not None and result.env["train_images_per_epoch"] == n_images
        epoch_times.append(result.final.train_time_s)
        return result.final.images_per_s

    def cli_epoch() -> float:
        from archbench.cli import main as archbench

        with tempfile.TemporaryDirectory() as tmp:
            out = f"{tmp}/result.json"
            argv = ["train", args.model, "--dataset", args.dataset, "--device", str(device)]
            argv += ["--epochs", "1", "--batch-size", str(args.batch_size), "--lr", "0.02"]
            argv += ["--schedule", "constant", "--seed", "0", "--val-size", "0"]
            argv += ["--train-subset", str(images), "--test-subset", "64"]
            argv += ["--diagnostics-every", "0", "--json", out]
            argv += ["--amp"] if args.amp else []
            argv += ["--channels-last"] if args.channels_last else []
            argv += ["--data-root", args.data_root] if args.data_root else []
            with contextlib.redirect_stdout(io.StringIO()):  # its table, not ours
                code = archbench(argv)
            assert code == 0, f"archbench train exited with {code}"
            final = json.loads(Path(out).read_text())["final"]
        assert final["images_per_s"] > 0
        epoch_times.append(final["train_time_s"])
        return float(final["images_per_s"])

    measured = cli_epoch if args.via == "cli" else pipeline_epoch

    print(
        f"{args.model} ({sum(p.numel() for p in pipe_net.parameters()):,} params) on "
        f"{n_images} {info.name} {info.channels}x{info.image_size}x{info.image_size} images, "
        f"batch {args.batch_size}, {len(batches)} steps; device {device}; measured: "
        f"{'archbench train (CLI)' if args.via == 'cli' else 'train()'}"
        + (f", {torch.get_num_threads()} thread(s)" if device.type == "cpu" else "")
        + (", bf16 autocast" if amp else "")
        + (", channels_last" if args.channels_last else "")
        + f"; clock: {'main-thread CPU time' if args.clock == 'thread' else 'wall'}"
    )
    bare_epoch(), measured()  # warm-up: allocator, kernels, cuDNN autotuning
    epoch_times.clear()
    bare: list[float] = []
    pipe: list[float] = []
    for r in range(args.repeats):
        order = [(bare, bare_epoch), (pipe, measured)]
        for store, fn in order if r % 2 == 0 else order[::-1]:
            store.append(fn())
    print(f"{'bare loop':<15} images/s: {', '.join(f'{v:.1f}' for v in bare)}")
    what = "archbench train" if args.via == "cli" else "train()"
    print(f"{what:<15} images/s: {', '.join(f'{v:.1f}' for v in pipe)}")
    # Other load only ever slows a run down: the best run is the cleanest estimate on a
    # shared machine, the median the typical one.
    for label, pick in (("best", max), ("median", statistics.median)):
        b, p = pick(bare), pick(pipe)
        print(f"{label:>6}: bare {b:9.1f}  train {p:9.1f}  ratio train/bare {p / b:.3f}")
    print(f"goal: ratio >= {0.97 if device.type == 'cpu' else 0.95}")

    # Diagnostics: one call per epoch when diagnostics_every=1.
    x, y = batches[0]
    block_diagnostics(pipe_net, x, y, epoch=0)  # warm-up
    costs = []
    for _ in range(args.repeats):
        sync(device)
        t0 = clock()
        block_diagnostics(pipe_net, x, y, epoch=0)
        sync(device)
        costs.append(clock() - t0)
    cost, epoch_time = min(costs), min(epoch_times)
    step = epoch_time / len(batches)
    print(
        f"diagnostics: {1000 * cost:.1f} ms per call = {cost / step:.2f} training steps; "
        f"{100 * cost / epoch_time:.2f}% of this {len(batches)}-step epoch, "
        f"{100 * cost / (step * CIFAR_STEPS):.2f}% of a {CIFAR_STEPS}-step CIFAR-10 epoch"
    )


if __name__ == "__main__":
    main()
