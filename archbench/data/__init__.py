"""Datasets in memory as uint8 tensors and a device-resident loader with batched augmentation.

``load_dataset(name, ...)`` reads a registered dataset (``archbench.registry.DATASETS``:
cifar10, cifar100, svhn, mnist, fashion_mnist, digits, synthetic, image_folder) and carves a
seeded validation split; ``DeviceLoader`` iterates normalised, augmented batches on the
device with order and augmentation a function of ``(seed, epoch)`` only.
"""

from __future__ import annotations

from archbench.data import datasets as _datasets  # noqa: F401  (registers the built-ins)
from archbench.data.base import AUGMENTS, DatasetInfo, LoadedData, TensorSplit
from archbench.data.load import ROOT_ENV, dataset_shape, load_dataset, resolve_root
from archbench.data.loader import DeviceLoader
from archbench.data.registry import DatasetEntry, DatasetShape, RawData, ReadRequest
from archbench.errors import DataError

__all__ = [
    "AUGMENTS",
    "ROOT_ENV",
    "DataError",
    "DatasetEntry",
    "DatasetInfo",
    "DatasetShape",
    "DeviceLoader",
    "LoadedData",
    "RawData",
    "ReadRequest",
    "TensorSplit",
    "dataset_shape",
    "load_dataset",
    "resolve_root",
]
