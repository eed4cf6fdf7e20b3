"""``load_dataset``: find and read a registered dataset, carve validation, take subsets, resize."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archbench.data.base import AUGMENTS, DatasetInfo, LoadedData, TensorSplit
from archbench.data.registry import DatasetEntry, DatasetShape, ReadRequest
from archbench.data.seeds import generator
from archbench.data.splits import resize_uint8, stratified_pick
from archbench.errors import DataError, SpecError
from archbench.registry import DATASETS
from archbench.validation import did_you_mean, is_positive_int

log = logging.getLogger(__name__)

ROOT_ENV = "ARCHBENCH_DATA_ROOT"
DEFAULT_ROOT = Path("data")
# Options every dataset accepts: they override the dataset's standard augmentation.
COMMON_OPTIONS = ("augment", "pad")


def resolve_root(root: str | Path | None) -> tuple[Path, str]:
    """The data root and where it came from: the argument, $ARCHBENCH_DATA_ROOT, or ./data."""
    if root is not None:
        return Path(root).expanduser().absolute(), "the root argument"
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().absolute(), ROOT_ENV
    return DEFAULT_ROOT.absolute(), "the default ./data"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _val_count(val_size: int | float, pool: int, name: str) -> int:
    if _is_int(val_size):
        n = int(val_size)
    elif isinstance(val_size, float) and 0.0 <= val_size < 1.0:
        n = round(val_size * pool)
    else:
        raise SpecError(
            f"val_size must be an int count >= 0 or a float fraction in [0, 1), got {val_size!r}"
        )
    if n < 0:
        raise SpecError(f"val_size must be >= 0, got {val_size!r}")
    if n == 0 and val_size > 0:
        raise SpecError(
            f"dataset {name!r}: val_size {val_size!r} of {pool} training images gives 0 "
            "validation images; use a count >= 1 or a fraction above "
            f"{0.5 / pool:.2g} (0 for no validation split)"
        )
    return n


def _check_subset(value: int | None, what: str) -> None:
    if value is not None and not is_positive_int(value):
        raise SpecError(f"{what} must be None or a positive int, got {value!r}")


def _options(name: str, entry: DatasetEntry, options: Mapping[str, Any] | None) -> tuple[
    dict[str, Any], dict[str, Any]
]:  # fmt: skip
    """Split user options into the dataset's own (defaults filled in) and common overrides."""
    given = dict(options or {})
    common = {k: given.pop(k) for k in COMMON_OPTIONS if k in given}
    unknown = sorted(set(given) - set(entry.options))
    if unknown:
        allowed = sorted([*entry.options, *COMMON_OPTIONS])
        raise SpecError(
            f"dataset {name!r} has no option(s) {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(allowed)})" + did_you_mean(unknown, allowed)
        )
    if "augment" in common and common["augment"] not in AUGMENTS:
        raise SpecError(
            f"option augment must be one of {', '.join(map(repr, AUGMENTS))}, "
            f"got {common['augment']!r}"
        )
    if "pad" in common and (not _is_int(common["pad"]) or common["pad"] < 0):
        raise SpecError(f"option pad must be an int >= 0, got {common['pad']!r}")
    return {**entry.options, **given}, common


def _entry(name: str) -> DatasetEntry:
    entry = DATASETS.get(name)
    if not isinstance(entry, DatasetEntry):
        raise DataError(
            f"dataset {name!r} is registered as {type(entry).__name__}, not DatasetEntry"
        )
    return entry


def check_options(name: str, options: Mapping[str, Any] | None) -> None:
    """Raise (naming the option and the allowed ones) for unknown or bad dataset options."""
    _options(name, _entry(name), options)


def dataset_shape(
    name: str,
    *,
    root: str | Path | None = None,
    image_size: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> DatasetShape:
    """(num_classes, channels, image_size) of a dataset as ``load_dataset`` would return it,
    without reading it: from the registered info, or the entry's probe (an image folder
    counts its class folders and opens one image)."""
    entry = _entry(name)
    own, _common = _options(name, entry, options)
    base_root, origin = resolve_root(root)
    return entry.shape(ReadRequest(name, base_root, origin, False, own, image_size))


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    val_size: int | float = 0.1,
    train_subset: int | None = None,
    test_subset: int | None = None,
    image_size: int | None = None,
    split_seed: int = 0,
    download: bool = True,
    options: Mapping[str, Any] | None = None,
) -> LoadedData:
    """Load a registered dataset into memory as uint8 tensors.

    - Files are looked for under ``root``, else ``$ARCHBENCH_DATA_ROOT``, else ``./data`` (and
      per-dataset places such as Debian's ``/usr/share/datasets/fashion-mnist``); if absent
      and ``download``, torchvision downloads them into that root. Otherwise ``DataError``
      lists every place looked and how to get the data.
    - ``val_size``: images carved from the official training set for validation, a count or
      a fraction (0 -> ``val=None``): of the full training set, or, when ``train_subset`` is
      given, of ``train_subset`` (so small CPU runs get a small validation set too). The carve
      is stratified by class, fixed by ``split_seed`` and never overlaps the training data.
    - ``train_subset``/``test_subset``: class-stratified seeded subsets (training subset taken
      from what remains after the validation carve).
    - ``image_size``: resize once at load (bilinear, uint8 -> uint8), e.g. MNIST 28 -> 32.
    - ``options``: dataset-specific (see ``DATASETS.entry(name).obj.options``) plus
      ``augment`` ("crop_flip" | "crop" | "none") and ``pad`` overriding the standard
      augmentation.
    """
    entry = _entry(name)
    _check_arguments(image_size, split_seed, train_subset, test_subset)
    own, common = _options(name, entry, options)
    base_root, origin = resolve_root(root)
    raw = entry.read(ReadRequest(name, base_root, origin, download, own, image_size))
    info: DatasetInfo = dataclasses.replace(raw.info, **common) if common else raw.info
    _check_labels(raw.train, info, "train")
    _check_labels(raw.test, info, "test")
    n_val, n_train = _split_counts(name, len(raw.train), val_size, train_subset)
    train, val, test = _carve(raw.train, raw.test, n_val, n_train, test_subset, split_seed)
    if image_size is not None and image_size != info.image_size:
        train, test = _resize(train, image_size), _resize(test, image_size)
        val = _resize(val, image_size) if val is not None else None
        info = dataclasses.replace(info, image_size=image_size)
    data = LoadedData(info, train, val, test, raw.source)
    log.info("loaded %s", data.summary())
    return data


def _check_arguments(
    image_size: int | None, split_seed: int, train_subset: int | None, test_subset: int | None
) -> None:
    """``load_dataset``'s arguments that need no data to check."""
    if image_size is not None and not is_positive_int(image_size):
        raise SpecError(f"image_size must be None or a positive int, got {image_size!r}")
    if not _is_int(split_seed) or split_seed < 0:
        raise SpecError(f"split_seed must be an int >= 0, got {split_seed!r}")
    _check_subset(train_subset, "train_subset")
    _check_subset(test_subset, "test_subset")


def _split_counts(
    name: str, n_full: int, val_size: int | float, train_subset: int | None
) -> tuple[int, int]:
    """(validation, training) image counts carved from ``n_full`` training images."""
    n_val = _val_count(val_size, train_subset if train_subset is not None else n_full, name)
    n_train = train_subset if train_subset is not None else n_full - n_val
    if train_subset is None and n_train < 1:
        raise SpecError(
            f"dataset {name!r}: val_size {val_size!r} ({n_val} images) is not smaller than the "
            f"{n_full} training images it is carved from; no training images would be left"
        )
    if n_val + n_train > n_full or n_train < 1:
        raise SpecError(
            f"dataset {name!r}: val_size {val_size!r} ({n_val} images) plus train_subset "
            f"{train_subset!r} ({n_train}) exceed the {n_full} training images"
        )
    return n_val, n_train


def _carve(
    train_full: TensorSplit,
    test: TensorSplit,
    n_val: int,
    n_train: int,
    test_subset: int | None,
    split_seed: int,
) -> tuple[TensorSplit, TensorSplit | None, TensorSplit]:
    """(train, val, test): the stratified validation carve, then the training subset from
    what remains, and the test subset; each from its own stream of ``split_seed``."""
    val = None
    pool = train_full
    if n_val:
        val_idx, rest_idx = stratified_pick(train_full.labels, n_val, generator(split_seed, 0))
        val, pool = train_full.take(val_idx), train_full.take(rest_idx)
    train = pool
    if n_train < len(pool):
        idx, _ = stratified_pick(pool.labels, n_train, generator(split_seed, 1))
        train = pool.take(idx)
    if test_subset is not None and test_subset < len(test):
        idx, _ = stratified_pick(test.labels, test_subset, generator(split_seed, 2))
        test = test.take(idx)
    return train, val, test


def _resize(split: TensorSplit, size: int) -> TensorSplit:
    return TensorSplit(resize_uint8(split.images, size), split.labels)


def _check_labels(split: TensorSplit, info: DatasetInfo, which: str) -> None:
    if len(split) == 0:
        raise DataError(f"dataset {info.name!r}: the {which} split is empty")
    lo, hi = int(split.labels.min()), int(split.labels.max())
    if lo < 0 or hi >= info.num_classes:
        raise DataError(
            f"dataset {info.name!r}: {which} labels span {lo}..{hi}, "
            f"expected 0..{info.num_classes - 1}"
        )
    if tuple(split.images.shape[1:]) != (info.channels, info.image_size, info.image_size):
        raise DataError(
            f"dataset {info.name!r}: {which} images are {tuple(split.images.shape[1:])}, "
            f"info says {(info.channels, info.image_size, info.image_size)}"
        )
