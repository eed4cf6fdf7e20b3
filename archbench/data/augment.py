"""Batched augmentation and normalisation: whole-batch tensor ops, no per-image Python work.

A random crop of a zero-padded image followed by an optional horizontal flip reads, for output
pixel (i, j), padded pixel (dy + i, dx + j) -- or (dy + i, dx + W - 1 - j) when flipped. So the
whole batch is one ``gather`` on a linear index built from per-sample offsets; the flip folds
into the column index and costs nothing extra.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_index(
    dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor | None, h: int, w: int, padded_w: int
) -> torch.Tensor:
    """Linear index (B, h*w) into a (padded_h, padded_w) plane for each sample's crop window."""
    rows = dy[:, None] + torch.arange(h, device=dy.device)  # (B, h)
    cols_fwd = torch.arange(w, device=dx.device)
    cols = (
        dx[:, None] + cols_fwd
        if flip is None
        else dx[:, None] + torch.where(flip[:, None], (w - 1) - cols_fwd, cols_fwd)
    )  # (B, w)
    return (rows[:, :, None] * padded_w + cols[:, None, :]).reshape(dy.shape[0], h * w)


def crop_flip(
    images: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor | None,
    pad: int,
) -> torch.Tensor:
    """Zero-pad ``images`` (B, C, H, W) by ``pad``, crop (H, W) at (dy, dx), flip where ``flip``.

    ``dy``/``dx`` are int64 offsets in ``[0, 2 * pad]`` (``pad`` = the centre, no shift);
    ``flip`` is a bool mask or None. Works for any dtype; the result is contiguous.
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    ph, pw = padded.shape[-2:]
    index = crop_index(dy, dx, flip, h, w, pw)
    out = padded.reshape(b, c, ph * pw).gather(2, index[:, None, :].expand(b, c, h * w))
    return out.view(b, c, h, w)


def normalise(
    images: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    dtype: torch.dtype,
    channels_last: bool = False,
) -> torch.Tensor:
    """``(images / 255 - mean) / std`` as one multiply-add: ``images * scale + shift``.

    ``scale = 1 / (255 * std)`` and ``shift = -mean / std``, shaped (1, C, 1, 1) float32. The
    arithmetic runs in float32 and is cast to ``dtype`` at the end. (In-place mul/add on a
    fresh float copy: on CPU a broadcasting ``addcmul`` from uint8 is ~10x slower.)
    """
    out = images.to(torch.float32).mul_(scale).add_(shift)
    if dtype != torch.float32:
        out = out.to(dtype)
    # converting the float result is cheaper on CPU than converting uint8 (unvectorised)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def normalise_constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (scale, shift) pair for :func:`normalise`, shaped (1, C, 1, 1) on ``device``."""
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * s)).to(torch.float32).view(1, -1, 1, 1)
    shift = (-m / s).to(torch.float32).view(1, -1, 1, 1)
    return scale.to(device), shift.to(device)
