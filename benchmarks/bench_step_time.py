"""Training-step time of several nets side by side: the wall-clock cost of a design.

Each net is built from ``family:depth:width`` for one input shape and timed over a few SGD
steps on one fixed batch, interleaved over repeats (so drifting load hits every net alike),
with the main thread's CPU time on one thread by default: per-run wall times of a study
include whatever else the machine was doing, this does not. Prints params, MACs and the
median ms per step, and each net's time relative to the first.

    python benchmarks/bench_step_time.py wrn:10:9 wrn:16:6 wrn:22:5 wrn:28:4 \\
        --input 1x16x16 --batch-size 64              # wide_vs_deep's cpu profile (26K)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from archbench.models.complexity import analytic
from archbench.models.net import build_net
from archbench.models.presets import get_family


def _net_spec(text: str, channels: int, size: int, classes: int):
    try:
        family, depth, width = text.split(":")
        return get_family(family).build(
            int(depth), int(width), num_classes=classes, in_channels=channels, input_size=size
        )
    except ValueError:
        raise SystemExit(f"bench_step_time: {text!r}: expected family:depth:width") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nets", nargs="+", help="family:depth:width, e.g. wrn:16:4")
    parser.add_argument("--input", default="3x32x32", help="CxHxW (H = W)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.clock == "thread" and args.threads > 1:
        parser.error(
            "--clock thread counts the main thread only: use --clock wall with --threads > 1"
        )
    channels, size, _ = (int(v) for v in args.input.split("x"))
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    torch.manual_seed(0)
    specs = [_net_spec(text, channels, size, args.classes) for text in args.nets]
    nets = [build_net(spec) for spec in specs]
    x = torch.randn(args.batch_size, channels, size, size)
    y = torch.randint(0, args.classes, (args.batch_size,))
    times: list[list[float]] = [[] for _ in nets]
    for repeat in range(args.repeats + 1):  # the first round warms up
        for i, net in enumerate(nets):
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            start = clock()
            for _ in range(args.steps):
                loss = torch.nn.functional.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if repeat:
                times[i].append((clock() - start) / args.steps * 1000)
    print(
        f"batch {args.batch_size} of {args.input}, {args.threads} thread(s), clock {args.clock}, "
        f"median of {args.repeats} x {args.steps} steps"
    )
    first = statistics.median(times[0])
    for text, spec, ms in zip(args.nets, specs, times):
        cost = analytic(spec)
        med = statistics.median(ms)
        print(
            f"{text:<14} params {cost.params:>10,}  MACs {cost.macs:>12,}  "
            f"{med:8.1f} ms/step  x{med / first:.2f}"
        )


if __name__ == "__main__":
    main()
