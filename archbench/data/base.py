"""The data types every dataset produces: ``DatasetInfo``, ``TensorSplit``, ``LoadedData``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from archbench.errors import DataError

Augment = Literal["crop_flip", "crop", "none"]
AUGMENTS: tuple[str, ...] = ("crop_flip", "crop", "none")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the loader need to know about a dataset.

    ``mean``/``std`` are per channel on the [0, 1] scale; ``augment`` is the dataset's standard
    training augmentation (``pad`` pixels of zero padding, random crop back to size, and for
    ``crop_flip`` a random horizontal flip).
    """

    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment
    pad: int = 4
    classes: tuple[str, ...] = ()  # class names by label, when known

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DataError(
                f"dataset {self.name!r}: mean/std need {self.channels} values (one per channel), "
                f"got {len(self.mean)}/{len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise DataError(f"dataset {self.name!r}: std must be positive, got {self.std}")
        if self.augment not in AUGMENTS:
            raise DataError(
                f"dataset {self.name!r}: augment {self.augment!r} is not one of "
                f"{', '.join(map(repr, AUGMENTS))}"
            )
        if self.pad < 0:
            raise DataError(f"dataset {self.name!r}: pad must be >= 0, got {self.pad}")
        if self.classes and len(self.classes) != self.num_classes:
            raise DataError(
                f"dataset {self.name!r}: {len(self.classes)} class names for "
                f"{self.num_classes} classes"
            )


@dataclass(frozen=True)
class TensorSplit:
    """One split held in memory: ``images`` uint8 (N, C, H, W) contiguous, ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(
                f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"labels must be 1-D with one label per image ({images.shape[0]}), "
                f"got {tuple(labels.shape)}"
            )
        if labels.dtype != torch.int64:
            object.__setattr__(self, "labels", labels.to(torch.int64))
        if not images.is_contiguous():
            object.__setattr__(self, "images", images.contiguous())

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> TensorSplit:
        """This split on ``device`` (itself when it is already there)."""
        device = torch.device(device)
        if self.images.device == device and self.labels.device == device:
            return self
        return TensorSplit(self.images.to(device), self.labels.to(device))

    def take(self, indices: torch.Tensor) -> TensorSplit:
        """The images and labels at ``indices`` (in that order)."""
        indices = indices.to(self.images.device)
        return TensorSplit(self.images[indices], self.labels[indices])

    def class_counts(self, num_classes: int) -> torch.Tensor:
        """How many images each label has (int64, length ``num_classes``)."""
        return torch.bincount(self.labels.cpu(), minlength=num_classes)


@dataclass(frozen=True)
class LoadedData:
    """A dataset in memory: train, an optional validation split carved from train, and test."""

    info: DatasetInfo
    train: TensorSplit
    val: TensorSplit | None
    test: TensorSplit
    source: str  # where it was loaded from: a path, "download", "synthetic", "sklearn"

    def summary(self) -> str:
        """One line: name, split sizes, image shape and source."""
        val = len(self.val) if self.val is not None else 0
        i = self.info
        return (
            f"{i.name}: train {len(self.train)}, val {val}, test {len(self.test)}, "
            f"{i.channels}x{i.image_size}x{i.image_size}, {i.num_classes} classes, "
            f"augment {i.augment} (pad {i.pad}), from {self.source}"
        )
