"""The prepared GPU check (issue 18): one script, under 8 minutes on one H200, one summary.

Sections, each written to the summary as soon as it ends (a run cut short still reports):

1. ``pytest -m gpu``: the CUDA tests (trainer with bf16/channels_last/compile, fused seeds,
   resume, four workers on one GPU).
2. The bf16 matrix-multiply rate (8192^3 products), the ceiling for section 4.
3. Training images/s of CIFAR-shaped (32x32x3) ResNet-20, ResNet-56 and WRN-28-10, unfused
   and fused (k = 1, 4, 8), bf16 + channels_last (``bench_fused.measure``).
4. The WRN-28-10 bf16 training step's share of the matrix rate (3 x 2 x MACs per image).
5. One vs four worker processes training ResNet-20 on one GPU (total images/s).
6. A short ``gpu``-profile run of ``degradation.yaml`` on Fashion-MNIST at 28x28 through
   ``archbench run --workers 4 --fuse-seeds`` (1 epoch), and from the measured rates an
   estimate of the full profile (8 variants x 3 seeds x 164 epochs of CIFAR-10) on one GPU.

On the device machine (no Optuna, SQLAlchemy or fvcore there, no network) carry the wheels
and Fashion-MNIST that ``benchmarks/gpu_prepare.sh`` puts into the ignored ``.whl/``::

    bash benchmarks/gpu_prepare.sh                      # here, once
    # device run, carry [".whl"]:
    python3 benchmarks/gpu_check.py --install .whl --out $OUT

``--dry-run`` runs every section on the CPU at toy sizes (seconds; tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
#: The degradation ``gpu`` profile: 8 variants (plain and ResNet, depths 20/32/44/56),
#: 3 seeds, 164 epochs over 45,000 CIFAR-10 training images; evaluation of 5k + 10k images
#: every epoch adds about (15k / 45k) / 3 of a training epoch's work (forward only).
DEGRADATION = {"depths": (20, 32, 44, 56), "families": 2, "seeds": 3, "epochs": 164}
TRAIN_IMAGES, EVAL_SHARE = 45_000, 1 + (15_000 / 45_000) / 3


def install(wheels: Path) -> None:
    """pip-install the carried wheels into /tmp/site and put it on the path (and children's)."""
    target = Path(tempfile.gettempdir()) / "site"
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if files:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
             "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(target), *files],
            check=True,
        )  # fmt: skip
        sys.path.insert(0, str(target))
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(target), str(ROOT), os.environ.get("PYTHONPATH", "")]
        )
    fashion = wheels / "fashion-mnist"
    if fashion.is_dir() and not FASHION.exists():
        FASHION.mkdir(parents=True, exist_ok=True)
        for f in fashion.iterdir():
            shutil.copy(f, FASHION / f.name)


class Summary:
    def __init__(self, out: Path, dry_run: bool) -> None:
        self.out = out
        self.data: dict[str, Any] = {"dry_run": dry_run, "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, value: Any) -> None:
        self.data["sections"][name] = value
        (self.out / "gpu_summary.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / "gpu_summary.md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = ["# GPU check summary", ""]
        for name, value in self.data["sections"].items():
            lines += [f"## {name}", "", "```", json.dumps(value, indent=1, default=str), "```", ""]
        return "\n".join(lines)


def section(summary: Summary, name: str, fn: Any, *args: Any) -> Any:
    t0 = time.perf_counter()
    try:
        value = fn(*args)
    except Exception as exc:  # one broken section must not lose the others
        value = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    if isinstance(value, dict):
        value["seconds"] = round(time.perf_counter() - t0, 1)
    summary.put(name, value)
    print(f"[gpu_check] {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return value


# -- the sections ---------------------------------------------------------------------------


def run_pytest(dry_run: bool) -> dict[str, Any]:
    files = ["tests/test_gpu.py"] if dry_run else ["tests/test_gpu.py", "tests/test_train.py"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return {"exit_code": proc.returncode, "result": tail}


def matmul_rate(device: str, n: int) -> dict[str, Any]:
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    seconds = (time.perf_counter() - t0) / reps
    return {"n": n, "dtype": str(dtype), "tflops": round(2 * n**3 / seconds / 1e12, 6)}


def throughput(device: str, nets: list[str], ks: list[int], train: int, dry: bool) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_fused import measure

    rows = measure(
        nets, ks, [1], device=device, train_size=train, batch_size=32 if dry else 128,
        image_size=16 if dry else 32, repeats=1 if dry else 2, amp=not dry,
        channels_last=not dry,
    )  # fmt: skip
    return {"rows": rows}


def wrn_share(device: str, net: str, rows: list[dict[str, Any]], matmul: dict) -> dict:
    from archbench.models.complexity import analytic
    from archbench.models.presets import get_preset

    size = 16 if device == "cpu" else 32
    macs = analytic(get_preset(net, num_classes=10, in_channels=3, input_size=size)).macs
    rate = next(r["unfused_img_s"] for r in rows if r["net"] == net)
    best = max(r["fused_img_s"] for r in rows if r["net"] == net)
    flops = 3 * 2 * macs  # forward + backward (2x forward), 2 FLOP per multiply-add
    return {
        "net": net,
        "macs_per_image": macs,
        "unfused_tflops": round(rate * flops / 1e12, 2),
        "share_of_matmul": round(rate * flops / 1e12 / matmul["tflops"], 3),
        "best_fused_share": round(best * flops / 1e12 / matmul["tflops"], 3),
    }


def _worker(args: tuple[str, str, int, int, int]) -> float:
    device, net, size, train, batch = args
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_fused import images_per_s

    from archbench.data import load_dataset
    from archbench.training.recipe import Recipe

    data = load_dataset(
        "synthetic", val_size=0,
        options={"num_train": train, "num_test": batch, "image_size": size},
    )  # fmt: skip
    recipe = Recipe(epochs=2, batch_size=batch, lr=0.05, amp=device != "cpu",
                    channels_last=device != "cpu")  # fmt: skip
    return images_per_s(net, 1, False, data, recipe, device)


def workers_on_one_gpu(device: str, net: str, n: int, train: int, dry: bool) -> dict[str, Any]:
    size, batch = (16, 32) if dry else (32, 128)
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for count in (1, n):
        with ctx.Pool(count) as pool:
            rates = pool.map(_worker, [(device, net, size, train, batch)] * count)
        out[f"{count}_workers_img_s"] = round(sum(rates), 1)
    out["ratio"] = round(out[f"{n}_workers_img_s"] / out["1_workers_img_s"], 3)
    return out


def profile_run(dry: bool, workers: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp())
    if dry:
        extra = ["--profile", "smoke", "--device", "cpu"]
    else:
        extra = ["--profile", "gpu", "--dataset", "fashion_mnist", "--set", "recipe.epochs=1"]
    cmd = [
        sys.executable, "-m", "archbench", "run", "experiments/degradation.yaml", *extra,
        "--storage", str(tmp / "d.db"), "--workers", str(workers), "--fuse-seeds", "--quiet",
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    result: dict[str, Any] = {"exit_code": proc.returncode, "wall_s": round(wall, 1)}
    if proc.returncode != 0:
        result["stderr"] = proc.stderr[-500:]
        return result
    from archbench.store import ResultsStore

    runs = ResultsStore(str(tmp / "d.db")).runs(experiment="degradation")
    result["runs"] = len(runs)
    result["val_err_by_variant"] = runs.groupby("name")["val_err"].mean().round(4).to_dict()
    result["run_wall_s_by_variant"] = runs.groupby("name")["wall_time_s"].mean().round(1).to_dict()
    return result


def estimate_degradation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Hours for the degradation ``gpu`` profile on one GPU, seeds fused (k = 4 rate for 3
    seeds, a slight overestimate of its speed per seed), time per image linear in depth
    between the measured ResNet-20 and ResNet-56 (plain nets cost the same)."""

    def per_image(net: str) -> float:
        fused = [r for r in rows if r["net"] == net]
        best = max(fused, key=lambda r: r["fused_img_s"])
        return 1.0 / best["fused_img_s"]  # seconds per image, all seeds together

    t20, t56 = per_image("resnet20"), per_image("resnet56")
    seconds = 0.0
    for depth in DEGRADATION["depths"]:
        t = t20 + (t56 - t20) * (depth - 20) / 36
        # One configuration: its 3 seeds fused, so images = 3 x 45k per epoch.
        seconds += DEGRADATION["families"] * DEGRADATION["seeds"] * TRAIN_IMAGES * t
    seconds *= DEGRADATION["epochs"] * EVAL_SHARE
    return {
        "hours_one_gpu_fused": round(seconds / 3600, 2),
        "assumes": estimate_degradation.__doc__,
    }


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes, seconds")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --dry-run")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    parser.add_argument("--install", help="folder of carried wheels (and fashion-mnist/)")
    parser.add_argument(
        "--skip", nargs="*", default=[], help="skip sections: pytest, workers, profile"
    )
    args = parser.parse_args(argv)
    # This checkout first, for this process and the ones it starts (pytest, workers, run).
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    if args.install:
        install(Path(args.install))
    sys.path.insert(0, str(ROOT))
    import torch

    dry = args.dry_run
    if not dry and args.device is None and not torch.cuda.is_available():
        print("[gpu_check] no CUDA device here: running --dry-run (CPU, toy sizes)", flush=True)
        dry = True
    device = args.device or ("cpu" if dry else "cuda")
    summary = Summary(Path(args.out), dry)

    summary.put(
        "environment",
        {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "bf16": bool(device.startswith("cuda") and torch.cuda.is_bf16_supported()),
        },
    )
    nets = ["resnet20"] if dry else ["resnet20", "resnet56", "wrn_28_10"]
    ks = [1, 2] if dry else [1, 4, 8]
    if "pytest" not in args.skip:
        section(summary, "pytest -m gpu", run_pytest, dry)
    matmul = section(summary, "bf16 matmul rate", matmul_rate, device, 128 if dry else 8192)
    bench = section(summary, "images/s fused vs unfused", throughput, device, nets, ks,
                    64 if dry else 8192, dry)  # fmt: skip
    rows = bench.get("rows", [])
    wrn = "resnet20" if dry else "wrn_28_10"
    if rows and "tflops" in matmul:
        section(summary, "bf16 training share of matmul rate", wrn_share, device, wrn, rows,
                matmul)  # fmt: skip
    if "workers" not in args.skip:
        section(summary, "workers on one device", workers_on_one_gpu, device, "resnet20",
                2 if dry else 4, 64 if dry else 8192, dry)  # fmt: skip
    if "profile" not in args.skip:
        section(summary, "degradation gpu profile, 1 epoch", profile_run, dry, 2 if dry else 4)
    if rows and not dry:
        section(summary, "degradation gpu profile estimate", estimate_degradation, rows)
    print(f"[gpu_check] summary: {summary.out / 'gpu_summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
