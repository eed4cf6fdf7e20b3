"""``DeviceLoader``: batches from a split held on the device, augmented and normalised in batch.

Order and augmentation of an epoch are a pure function of ``(seed, epoch)``: each epoch draws,
from a dedicated CPU ``torch.Generator`` seeded with both, one permutation, then one crop
offset pair and one flip bit per position in that order. A trainer that calls
``set_epoch(e)`` after a restart therefore sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import torch

from archbench.data.augment import crop_flip, normalise, normalise_constants
from archbench.data.base import DatasetInfo, TensorSplit
from archbench.data.seeds import generator
from archbench.errors import SpecError
from archbench.validation import is_positive_int


class DeviceLoader:
    """Iterates (x, y) batches from a TensorSplit that lives on `device`; x is float (or
    bf16 when `dtype` given) normalised, augmented on the device in batch; y int64.

    ``train=True`` shuffles and (unless ``augment=False``) applies ``info.augment`` with
    ``info.pad``; ``train=False`` yields the split in order, unaugmented. ``augment=True``
    means "the dataset's standard augmentation", which for ``augment="none"`` datasets is none.
    ``shuffle`` defaults to ``train``. ``num_samples`` is the number of images one epoch
    yields (fewer than ``len(split)`` with ``drop_last``).
    """

    def __init__(
        self,
        split: TensorSplit,
        info: DatasetInfo,
        *,
        batch_size: int,
        device: torch.device | str = "cpu",
        train: bool = False,
        augment: bool | None = None,
        drop_last: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype | None = None,
        shuffle: bool | None = None,
    ) -> None:
        if not is_positive_int(batch_size):
            raise SpecError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise SpecError(f"seed must be an int >= 0, got {seed!r}")
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16, torch.float64):
            raise SpecError(
                f"dtype must be one of float32, bfloat16, float16, float64, got {dtype!r}"
            )
        if split.images.shape[1] != info.channels:
            raise SpecError(
                f"split has {split.images.shape[1]} channels but dataset {info.name!r} "
                f"has {info.channels}"
            )
        self.device = torch.device(device)
        self.split = split.to(self.device)
        self.info = info
        self.batch_size = batch_size
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        do_augment = train if augment is None else augment
        self.augment = info.augment if do_augment else "none"
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.dtype = dtype or torch.float32
        self.epoch = 0
        self._scale, self._shift = normalise_constants(info.mean, info.std, self.device)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration yields."""
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool) or epoch < 0:
            raise SpecError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        n = len(self.split)
        return (n // self.batch_size) * self.batch_size if self.drop_last else n

    def _plan(
        self,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """This epoch's order (None = in order), crop offsets (N, 2) and flips (N,)."""
        n = len(self.split)
        g = generator(self.seed, self.epoch)
        order = torch.randperm(n, generator=g).to(self.device) if self.shuffle else None
        if self.augment == "none":
            return order, None, None
        # Always draw both, so "crop" and "crop_flip" share their crops for a given seed.
        offsets = torch.randint(0, 2 * self.info.pad + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        if self.augment == "crop":
            flips = None
        return (
            order,
            offsets.to(self.device),
            None if flips is None else flips.to(self.device),
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, offsets, flips = self._plan()
        images, labels = self.split.images, self.split.labels
        size = len(self.split)
        stop = self.num_samples
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, size)
            if order is None:
                x, y = images[start:end], labels[start:end]
            else:
                idx = order[start:end]
                x, y = images.index_select(0, idx), labels.index_select(0, idx)
            if offsets is not None:
                off = offsets[start:end]
                flip = None if flips is None else flips[start:end]
                x = crop_flip(x, off[:, 0], off[:, 1], flip, self.info.pad)
            yield normalise(x, self._scale, self._shift, self.dtype, self.channels_last), y

    def __repr__(self) -> str:
        return (
            f"DeviceLoader({self.info.name}, n={len(self.split)}, batch_size={self.batch_size}, "
            f"device={self.device}, shuffle={self.shuffle}, augment={self.augment!r}, "
            f"drop_last={self.drop_last}, seed={self.seed}, epoch={self.epoch})"
        )
