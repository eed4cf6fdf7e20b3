"""Seeded, class-stratified picks (validation carving, subsets) and one-off uint8 resizing."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stratified_quota(counts: torch.Tensor, n: int) -> torch.Tensor:
    """How many of each class a pick of ``n`` out of ``counts.sum()`` takes: proportional,
    remainders to the largest fractional parts (ties: lower label), exact integer arithmetic."""
    total = int(counts.sum())
    scaled = counts.to(torch.int64) * n
    base = scaled // total
    rest = n - int(base.sum())
    if rest:
        frac = scaled % total
        # stable sort on -frac: equal fractions keep label order
        order = torch.sort(-frac, stable=True).indices
        base[order[:rest]] += 1
    return base


def stratified_pick(
    labels: torch.Tensor, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``n`` of ``len(labels)`` indices with the class proportions kept.

    One seeded permutation decides which images of each class are taken (the first ones of
    each class in permuted order), so the pick depends only on the labels, ``n`` and the
    generator's seed. Returns (picked, rest), each sorted ascending.
    """
    labels = labels.cpu()
    total = labels.shape[0]
    if not 0 <= n <= total:
        raise ValueError(f"cannot pick {n} of {total}")
    perm = torch.randperm(total, generator=generator)
    counts = torch.bincount(labels)
    quota = stratified_quota(counts, n)
    permuted = labels[perm]
    by_class = torch.sort(permuted, stable=True).indices  # positions grouped by class
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(total, dtype=torch.int64)
    rank[by_class] = torch.arange(total) - starts[permuted[by_class]]
    keep = rank < quota[permuted]
    return perm[keep].sort().values, perm[~keep].sort().values


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Bilinear resize of uint8 (N, C, H, W) to (N, C, size, size), rounded back to uint8.

    Antialiased when shrinking. Runs in float32 chunks to bound memory.
    """
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    out = torch.empty(n, c, size, size, dtype=torch.uint8, device=images.device)
    shrink = size < max(h, w)
    for i in range(0, n, chunk):
        x = images[i : i + chunk].to(torch.float32)
        y = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
        )
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out
