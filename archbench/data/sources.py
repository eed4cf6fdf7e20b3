"""Readers for the on-disk formats: CIFAR python pickles, SVHN .mat, IDX ubyte, image folders.

Each reader returns numpy arrays (images uint8 (N, C, H, W), labels int64) and raises
:class:`~archbench.errors.DataError` naming the file when it is missing or malformed.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import logging
import math
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from archbench.errors import DataError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# CIFAR python batches (a pickle format; read with an allow-list unpickler)
# ---------------------------------------------------------------------------------------------

# The CIFAR batches are pickled dicts of bytes, lists and numpy arrays. Pickle can run any
# callable it names, so only the globals needed to rebuild those objects are allowed.
_PICKLE_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),  # numpy < 2 pickles (the real CIFAR files)
        ("numpy._core.multiarray", "_reconstruct"),  # numpy >= 2 pickles
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 encode bytes this way
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
    }
)


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds builtins and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} (only numpy arrays are allowed)"
            )
        if module.startswith("numpy.core."):
            # numpy 2 renamed numpy.core to numpy._core (the old name warns); numpy 1 lacks it.
            with contextlib.suppress(ImportError):
                renamed = "numpy._core." + module.removeprefix("numpy.core.")
                return getattr(importlib.import_module(renamed), name)
        return getattr(importlib.import_module(module), name)


def load_safe_pickle(path: Path) -> Any:
    """Unpickle ``path`` (Python 2 pickles load with bytes keys) allowing only numpy arrays."""
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read {path} as a CIFAR python batch: {exc}") from None


def _batch_key(batch: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    keys = ", ".join(repr(k) for k in batch)
    raise DataError(f"{path} has no {key!r} entry (keys: {keys})")


def read_cifar_batches(paths: Sequence[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate CIFAR python batches: (N, 3, 32, 32) uint8 images and int64 labels."""
    images, labels = [], []
    for path in paths:
        batch = load_safe_pickle(path)
        if not isinstance(batch, dict):
            raise DataError(f"{path} is not a CIFAR python batch (a dict), got {type(batch)}")
        data = np.asarray(_batch_key(batch, "data", path))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(
                f"{path}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}"
            )
        lab = np.asarray(_batch_key(batch, label_key, path), dtype=np.int64)
        if lab.shape != (data.shape[0],):
            raise DataError(f"{path}: {len(lab)} labels for {data.shape[0]} images")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def read_label_names(path: Path, key: str) -> tuple[str, ...]:
    """Class names from a CIFAR ``meta``/``batches.meta`` file (empty when absent)."""
    if not path.is_file():
        return ()
    meta = load_safe_pickle(path)
    names = meta.get(key.encode(), meta.get(key, ())) if isinstance(meta, dict) else ()
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


# ---------------------------------------------------------------------------------------------
# SVHN (MATLAB v5 files, as distributed and as torchvision downloads them)
# ---------------------------------------------------------------------------------------------


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (32, 32, 3, N) and ``y`` (N, 1) with digit 0 stored as 10 -> (N, 3, 32, 32), labels."""
    import scipy.io  # imported here: scipy is slow to import and only SVHN needs it

    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (ValueError, TypeError, NotImplementedError, OSError) as exc:
        raise DataError(f"cannot read {path} as an SVHN .mat file: {exc}") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} has no 'X' and 'y' variables (keys: {sorted(mat)})")
    x, y = mat["X"], mat["y"]
    if x.ndim != 4 or x.shape[2] != 3:
        raise DataError(f"{path}: 'X' must be (H, W, 3, N), got {x.shape}")
    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    if labels.shape[0] != x.shape[3]:
        raise DataError(f"{path}: {labels.shape[0]} labels for {x.shape[3]} images")
    labels[labels == 10] = 0
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{path}: labels must be 1..10, got {labels.min()}..{labels.max()}")
    images = np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)), dtype=np.uint8)
    return images, labels


# ---------------------------------------------------------------------------------------------
# IDX ubyte (MNIST, Fashion-MNIST), gzipped or not
# ---------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (``.gz`` is decompressed) into an array of its declared shape."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(
            f"{path}: IDX header says {dims} ({count * dtype.itemsize} bytes of data), "
            f"file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)


_IDX_NAMES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four MNIST-style IDX files in ``folder`` (uncompressed preferred), or None."""
    found: dict[str, Path] = {}
    for role, stems in _IDX_NAMES.items():
        for stem in stems:
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    found.setdefault(role, folder / name)
        if role not in found:
            return None
    return found


def read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One MNIST-style split: (N, 1, H, W) uint8 images and int64 labels."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected uint8 (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape} labels for {images.shape[0]} images in {images_path}"
        )
    return images[:, None], labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Image folders: <path>/<split>/<class>/<image>
# ---------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)


def image_folder_classes(folder: Path) -> tuple[list[str], Path]:
    """Sorted class names (sub-folders) and the first image, as :func:`list_image_folder`
    orders them, without listing every file."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    for c in classes:
        images = sorted(
            p
            for p in (folder / c).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if images:
            return classes, images[0]
    raise DataError(
        f"{folder} has no images with extensions {', '.join(IMAGE_EXTENSIONS)} in its class folders"
    )


def list_image_folder(folder: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """Sorted class names (sub-folders) and (image path, class name) pairs, sorted by path."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    files = [
        (p, c)
        for c in classes
        for p in sorted((folder / c).rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not files:
        raise DataError(
            f"{folder} has no images with extensions {', '.join(IMAGE_EXTENSIONS)} "
            f"in its class folders"
        )
    return classes, files


def read_image(path: Path, size: int | None, mode: str) -> np.ndarray:
    """One image as uint8 (C, S, S): shorter side resized to ``size`` (bilinear), centre crop.

    ``size=None`` keeps the image as it is (it must then be square).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            w, h = im.size
            if size is not None and (w, h) != (size, size):
                scale = size / min(w, h)
                nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
                im = im.resize((nw, nh), Image.Resampling.BILINEAR)
                left, top = (nw - size) // 2, (nh - size) // 2
                im = im.crop((left, top, left + size, top + size))
            elif w != h:
                raise DataError(f"{path} is {w}x{h}; pass image_size to resize non-square images")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    return arr[None] if arr.ndim == 2 else np.transpose(arr, (2, 0, 1))


def read_image_split(
    files: Sequence[tuple[Path, str]], class_index: dict[str, int], size: int, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``files`` into one (N, C, size, size) uint8 array and their labels."""
    channels = 1 if mode == "L" else 3
    images = np.empty((len(files), channels, size, size), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    for i, (path, cls) in enumerate(files):
        images[i] = read_image(path, size, mode)
        labels[i] = class_index[cls]
        if (i + 1) % 10000 == 0:
            log.info("decoded %d/%d images", i + 1, len(files))
    return images, labels
