"""DeviceLoader throughput: images/s of augmented, normalised batches (3x32x32, batch 128).

Compares the batched loader against the same augmentation done image by image (the way a
torchvision transform pipeline applies RandomCrop(32, padding=4) + RandomHorizontalFlip), and
against normalisation alone. Usage: python benchmarks/bench_loader.py [--device cuda] [--n N]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from archbench.data import DatasetInfo, DeviceLoader, TensorSplit


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loader(loader: DeviceLoader, epochs: int) -> float:
    """Best images/s over ``epochs`` epochs (one warm-up epoch first)."""
    for _ in loader:
        pass
    best = 0.0
    for e in range(epochs):
        loader.set_epoch(e + 1)
        _sync(loader.device)
        t = time.perf_counter()
        for _x, _y in loader:
            pass
        _sync(loader.device)
        best = max(best, loader.num_samples / (time.perf_counter() - t))
    return best


def time_per_image(split: TensorSplit, info: DatasetInfo, batch_size: int) -> float:
    """images/s of the per-image reference: pad, crop and flip one image at a time."""
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    n, p, s = len(split), info.pad, info.image_size
    t = time.perf_counter()
    order = torch.randperm(n, generator=g)
    for start in range(0, n, batch_size):
        out = []
        for i in order[start : start + batch_size].tolist():
            img = F.pad(split.images[i], (p, p, p, p))
            dy, dx = torch.randint(0, 2 * p + 1, (2,), generator=g).tolist()
            img = img[:, dy : dy + s, dx : dx + s]
            if torch.rand(1, generator=g).item() < 0.5:
                img = img.flip(-1)
            out.append((img.float() / 255 - mean) / std)
        torch.stack(out)
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=8192, help="images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.n, 3, 32, 32), generator=g, dtype=torch.uint8)
    split = TensorSplit(images, torch.randint(0, 10, (args.n,), generator=g))
    info = DatasetInfo("bench", 3, 32, 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), "crop_flip", 4)

    def loader(**kw: object) -> DeviceLoader:
        return DeviceLoader(split, info, batch_size=args.batch_size, device=device, **kw)  # type: ignore[arg-type]

    rows = {
        "normalise only (eval)": time_loader(loader(), args.epochs),
        "shuffle + normalise": time_loader(loader(train=True, augment=False), args.epochs),
        "shuffle + crop + flip + normalise": time_loader(loader(train=True), args.epochs),
        "  ... channels_last": time_loader(loader(train=True, channels_last=True), args.epochs),
        "  ... bfloat16": time_loader(loader(train=True, dtype=torch.bfloat16), args.epochs),
    }
    per_image = time_per_image(split, info, args.batch_size)
    print(
        f"DeviceLoader on {device} ({torch.get_num_threads()} threads), {args.n} images "
        f"3x32x32, batch {args.batch_size}"
    )
    for name, rate in rows.items():
        print(f"  {name:36s} {rate:12,.0f} images/s")
    print(f"  {'per-image crop + flip (reference, cpu)':36s} {per_image:12,.0f} images/s")
    ratio = rows["shuffle + crop + flip + normalise"] / per_image
    print(f"  batched augmentation is {ratio:.1f}x the per-image loop")


if __name__ == "__main__":
    main()
