"""How a dataset is registered: ``DatasetEntry`` (nominal info + a reader) and the reader's
request/result types. Third-party datasets register the same way as the built-ins::

    from archbench.registry import DATASETS
    DATASETS.add("mine", DatasetEntry(info=..., read=my_reader, options={"size": 32}))

A reader gets a :class:`ReadRequest` and returns the full official train and test splits as
:class:`RawData`; ``load_dataset`` does validation carving, subsets and resizing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch

from archbench.data.base import DatasetInfo, TensorSplit
from archbench.errors import DataError, DataNotFoundError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ReadRequest:
    """What a reader is asked for: where to look, whether it may download, its options."""

    name: str
    root: Path  # the data root (argument, $ARCHBENCH_DATA_ROOT or ./data)
    root_origin: str  # which of those it came from, for messages
    download: bool
    options: Mapping[str, Any]  # the entry's options, defaults filled in
    image_size: int | None  # readers that must pick a size (image folders) honour it


@dataclass(frozen=True)
class RawData:
    """A reader's result: the official train and test splits and where they came from."""

    info: DatasetInfo
    train: TensorSplit
    test: TensorSplit
    source: str


class DatasetShape(NamedTuple):
    """What a net for a dataset must be built for, in the order ``resolve`` takes it."""

    num_classes: int
    channels: int
    image_size: int


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its nominal info (computed stats are filled in at load time for
    datasets whose info depends on options), the function that reads it and, for datasets
    whose shape depends on their options or files, the function that tells that shape
    without reading the data."""

    info: DatasetInfo
    read: Callable[[ReadRequest], RawData]
    options: Mapping[str, Any] = field(default_factory=dict)  # allowed options -> defaults
    locations: str = ""  # where it is looked for, for listings
    probe: Callable[[ReadRequest], DatasetShape] | None = None

    def shape(self, req: ReadRequest) -> DatasetShape:
        """(classes, channels, size) the data will have when read with ``req``."""
        if self.probe is not None:
            return self.probe(req)
        # Without a probe: the nominal info, with the shape options a dataset may declare.
        opts, info = req.options, self.info
        return DatasetShape(
            int(opts.get("num_classes", info.num_classes)),
            int(opts.get("channels", info.channels)),
            int(req.image_size or opts.get("image_size", info.image_size)),
        )


def split_from_numpy(images: np.ndarray, labels: np.ndarray) -> TensorSplit:
    """A TensorSplit from numpy arrays (copied into torch-owned contiguous memory)."""
    return TensorSplit(
        torch.from_numpy(np.array(images, dtype=np.uint8, order="C")),
        torch.from_numpy(np.array(labels, dtype=np.int64)),
    )


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], ...]:
    """Per-channel (mean, std) of uint8 images (N, C, H, W) on the [0, 1] scale."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, images.shape[0], chunk):
        # float32 per chunk (pairwise summation keeps it exact enough), float64 across chunks
        x = images[i : i + chunk].to(torch.float32)
        total += x.sum(dim=(0, 2, 3)).double()
        total_sq += x.mul_(x).sum(dim=(0, 2, 3)).double()
    count = images.shape[0] * images.shape[2] * images.shape[3]
    if count == 0:
        raise DataError("cannot compute normalisation statistics of an empty split")
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0)
    std = var.sqrt().clamp_min(1e-3 * 255)  # a constant channel must not divide by zero
    return tuple(round(v / 255, 6) for v in mean.tolist()), tuple(
        round(v / 255, 6) for v in std.tolist()
    )


def not_found(
    req: ReadRequest,
    looked: list[str],
    reason: str,
    how: list[str],
    *,
    local_how: int | None = None,
    downloadable: bool = False,
) -> DataNotFoundError:
    """The one error for a dataset that is nowhere: every place looked and how to get it.

    ``how[:local_how]`` are the ways that need no download (pre-trial checks show only those).
    """
    places = "; ".join(looked) if looked else "nowhere"
    places += f" (data root {req.root} from {req.root_origin})"
    return DataNotFoundError(
        f"dataset {req.name!r} not found. Looked in: {places}. {reason}. To get it: "
        + "; or ".join(how),
        places=places,
        how="; or ".join(how[:local_how]),
        downloadable=downloadable,
    )


def locate(
    req: ReadRequest,
    candidates: list[Path],
    probe: Callable[[Path], T | None],
    *,
    files: str,
    download: Callable[[Path], Path] | None,
    extra_how: tuple[str, ...] = (),
) -> tuple[T, Path, bool]:
    """Find a dataset's files: the first candidate folder ``probe`` accepts, else download.

    Returns (probe result, folder, downloaded). ``files`` describes what a folder must hold.
    """
    looked = []
    for folder in candidates:
        found = probe(folder)
        if found is not None:
            log.info("dataset %s: reading %s", req.name, folder)
            return found, folder, False
        looked.append(str(folder))
    if download is None:
        reason = "It cannot be downloaded automatically"
    elif not req.download:
        reason = "Download is off (download=False)"
    else:
        log.info("dataset %s: not found locally, downloading into %s", req.name, req.root)
        try:
            folder = download(req.root)
        except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError, ...
            detail = " ".join(str(exc).split())  # torchvision's messages span several lines
            reason = (
                f"Downloading with torchvision into {req.root} failed "
                f"({type(exc).__name__}: {detail})"
            )
        else:
            found = probe(folder)
            if found is not None:
                return found, folder, True
            reason = f"torchvision downloaded into {req.root} but {folder} lacks {files}"
    how = [
        f"put {files} in one of those folders",
        "point root= (CLI: --data-root) or ARCHBENCH_DATA_ROOT at a folder that has them",
        *extra_how,
    ]
    local = len(how)
    if download is not None and req.download:
        how.append("connect to the internet and try again (torchvision downloads them)")
    elif download is not None:
        how.append("run with download=True and internet access (torchvision downloads them)")
    raise not_found(req, looked, reason, how, local_how=local, downloadable=download is not None)
