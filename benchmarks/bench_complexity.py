"""Complexity counting and budget solving speed.

For every registered preset: the analytic count (meta device, cold cache) and the fvcore
count (``measure``: the stem, each distinct block and the head traced on CPU at batch 1) with
their wall times, then totals; ``--full-trace`` also times fvcore on the whole net in one
trace (``measure(..., full_trace=True)``, the old way) and checks both give the same result.
Then the budget solve time per CIFAR family (native input <= 64 px): ``solve_width`` for 1.5x
the family's default params and MACs, cold cache each time, median of ``--repeats``.

Goals: every preset counted in < 30 s in total; a CIFAR budget solve in < 0.1 s.
Usage: python benchmarks/bench_complexity.py [--skip-fvcore] [--full-trace] [--repeats 5]
    [--only REGEX]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

import torch

from archbench.models.budget import data_shape, solve_width
from archbench.models.complexity import analytic, clear_cache, measure
from archbench.models.presets import get_family, get_preset
from archbench.registry import FAMILIES, PRESETS


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.1f} ms"


def bench_presets(names: list[str], fvcore: bool, full_trace: bool) -> None:
    header = f"{'preset':24s} {'params':>12s} {'MACs':>15s} {'analytic':>11s} {'fvcore':>11s}"
    print(header + (f" {'full trace':>11s}" if full_trace else ""))
    total_a = total_f = total_full = 0.0
    for name in names:
        spec = get_preset(name)
        clear_cache()
        t = time.perf_counter()
        counts = analytic(spec)
        ta = time.perf_counter() - t
        total_a += ta
        tf_text = full_text = "-"
        if fvcore:
            t = time.perf_counter()
            traced = measure(spec)
            tf = time.perf_counter() - t
            total_f += tf
            tf_text = f"{tf:9.2f} s"
            if (traced.params, traced.macs) != (counts.params, counts.macs):
                tf_text += "  MISMATCH"
            if full_trace:
                t = time.perf_counter()
                whole = measure(spec, full_trace=True)
                tw = time.perf_counter() - t
                total_full += tw
                full_text = f"{tw:9.2f} s" + ("" if whole == traced else "  DIFFERS")
        line = f"{name:24s} {counts.params:12,d} {counts.macs:15,d} {_ms(ta):>11s} {tf_text:>11s}"
        print(line + (f" {full_text:>11s}" if full_trace else ""))
    print(f"\n{len(names)} presets: analytic total {total_a:.2f} s", end="")
    if fvcore:
        verdict = "meets" if total_f < 30 else "MISSES"
        print(f", fvcore total {total_f:.1f} s ({verdict} the 30 s goal)", end="")
        if full_trace:
            print(f", full-trace total {total_full:.1f} s", end="")
    print()


def bench_budget(repeats: int) -> None:
    cifar = [n for n in FAMILIES.names() if data_shape(get_family(n))["input_size"] <= 64]
    print(f"\nbudget solve (solve_width, 1.5x default, cold cache, median of {repeats})")
    print(
        f"{'family':26s} {'metric':7s} {'width':>6s} {'rel err':>8s} {'builds':>6s} {'time':>11s}"
    )
    worst = 0.0
    for name in cifar:
        fam = get_family(name)
        base = fam.build(**data_shape(fam))
        for metric in ("params", "macs"):
            clear_cache()
            counts = analytic(base)
            target = int(1.5 * (counts.params if metric == "params" else counts.macs))
            times = []
            for _ in range(repeats):
                clear_cache()
                t = time.perf_counter()
                match = solve_width(name, target, metric=metric, tolerance=1.0)
                times.append(time.perf_counter() - t)
            median = statistics.median(times)
            worst = max(worst, median)
            print(
                f"{name:26s} {metric:7s} {match.width:6d} {match.rel_error:+8.2%} "
                f"{match.evaluations:6d} {_ms(median):>11s}"
            )
    if "resnet" in FAMILIES:  # depth hardly matters: counts build at most 2 blocks per stage
        for depth in (110, 1202):
            times = []
            for _ in range(repeats):
                clear_cache()
                t = time.perf_counter()
                match = solve_width("resnet", "1.7M", depth=depth, tolerance=1.0)
                times.append(time.perf_counter() - t)
            median = statistics.median(times)
            worst = max(worst, median)
            label = f"resnet (depth {depth})"
            print(
                f"{label:26s} {'params':7s} {match.width:6d} {match.rel_error:+8.2%} "
                f"{match.evaluations:6d} {_ms(median):>11s}"
            )
    verdict = "meets" if worst < 0.1 else "MISSES"
    print(f"slowest CIFAR solve: {worst * 1e3:.1f} ms ({verdict} the 100 ms goal)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-fvcore", action="store_true", help="analytic counts only")
    parser.add_argument(
        "--full-trace", action="store_true", help="also time (and compare) one whole-net trace"
    )
    parser.add_argument("--repeats", type=int, default=5, help="budget solve repeats")
    parser.add_argument("--only", default="", help="regex: presets to count")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    # The first meta-device op imports torch._dynamo (seconds): time it apart.
    t = time.perf_counter()
    analytic(get_preset("resnet20"))
    print(
        f"first analytic count in this process (one-time imports): {time.perf_counter() - t:.2f} s"
    )
    names = [n for n in PRESETS.names() if re.search(args.only, n)]
    bench_presets(names, fvcore=not args.skip_fvcore, full_trace=args.full_trace)
    bench_budget(args.repeats)


if __name__ == "__main__":
    main()
