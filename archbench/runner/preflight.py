"""Pre-trial checks: everything about a spec and its runner options that can be known before
a study is created, checked the same way by ``archbench validate``, ``run`` and ``worker``.

:func:`preflight` raises a :class:`~archbench.errors.SpecError` (one line naming the key, the
value and what is allowed) and writes nothing: not the store, not the data root, not the
checkpoint folder. It checks

- the runner options (heartbeat, threads, results folder);
- the device (``cuda`` on a machine without one, ``gpu0``);
- the storage: a supported URL or path, an existing folder (at most one missing level, which
  ``run`` creates and says so), an existing file that really is a SQLite database
  (:func:`archbench.runner.storage_checks.check_storage`);
- the data: loaded as a worker would load it, but never downloaded; files that are absent
  pass only when they can be downloaded (their host answers), else the message says where it
  looked and how to get them. ``val_size`` must leave a training set;
- memory: every enumerable variant's weights, gradients and momentum (from its exact
  parameter count) plus its saved activations at the batch size (from its exact activation
  count) plus the device-resident data must fit the device's memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from archbench.errors import ArchbenchError, DataNotFoundError, SpecError
from archbench.runner.spec import ExperimentSpec
from archbench.runner.storage_checks import check_storage
from archbench.runner.variants import dataset_shape

log = logging.getLogger(__name__)

#: Bytes per parameter while training: fp32 weights, their gradients, SGD's momentum buffer.
BYTES_PER_PARAM = 12
#: Tensors of a conv/linear output's size kept for the backward pass: the output itself (the
#: norm's input) and the normalised, activated tensor (the next layer's input). A lower bound:
#: residual adds and concatenations keep more, so only nets that surely cannot fit are refused.
SAVED_PER_ACT = 2
#: Seconds to wait for a dataset's download host before calling it unreachable.
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class MemoryEstimate:
    """Lower bound of the memory one training run takes on its device, in bytes."""

    params: int
    acts_per_image: int
    batch_size: int
    bytes_per_act: int
    data_bytes: int
    runs: int = 1  # trainings sharing the device at once (workers placed on it)

    @property
    def param_bytes(self) -> int:
        return self.params * BYTES_PER_PARAM

    @property
    def act_bytes(self) -> int:
        return self.acts_per_image * self.batch_size * self.bytes_per_act * SAVED_PER_ACT

    @property
    def total(self) -> int:
        return self.runs * (self.param_bytes + self.act_bytes + self.data_bytes)

    def describe(self) -> str:
        shared = (
            f" for {self.runs} trainings at once on the device (workers x fused seeds), each"
            if self.runs > 1
            else ""
        )
        return (
            f"at least {human_bytes(self.total)}{shared}: {self.params:,} params x "
            f"{BYTES_PER_PARAM} B "
            f"(weights, gradients, momentum) = {human_bytes(self.param_bytes)}, "
            f"{self.acts_per_image:,} activations per image x batch {self.batch_size} x "
            f"{self.bytes_per_act * SAVED_PER_ACT} B = {human_bytes(self.act_bytes)}"
            + (f", data {human_bytes(self.data_bytes)}" if self.data_bytes else "")
        )


@dataclass(frozen=True)
class Preflight:
    """What the checks found: the device, the storage, and notes worth telling the user."""

    device: Any  # torch.device
    storage: Any  # archbench.store.storage.ResolvedStorage
    memory_limit: int
    largest: MemoryEstimate | None
    data_summary: str
    notes: tuple[str, ...] = field(default_factory=tuple)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover - the loop always returns


# -- options and device -----------------------------------------------------------------------


def check_options(options: Any) -> None:
    """Runner options a library caller (not argparse) may have got wrong."""
    for key, flag, low in (
        ("heartbeat_interval", "--heartbeat", 1),
        ("grace_period", "grace_period", 1),
        ("max_retry", "max_retry", 0),
    ):
        value = getattr(options, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpecError(f"{flag} must be an integer >= {low}, got {value!r}")
    threads = options.threads
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise SpecError(f"--threads must be an integer >= 1, got {threads!r}")
    if options.results_dir:
        path = Path(options.results_dir).expanduser()
        if path.exists() and not path.is_dir():
            raise SpecError(f"--results-dir {str(path)!r} is a file; give a folder for checkpoints")
    if getattr(options, "loggers", ()):
        from archbench.tracking import parse_targets

        parse_targets(options.loggers)  # kind known, its package installed, target's form


def check_device(preference: str) -> Any:
    """The torch device for ``--device``, or a one-line error naming what is allowed."""
    from archbench.training.device import select_device

    try:
        return select_device(preference)
    except SpecError as exc:
        raise SpecError(f"--device: {exc}") from None


def memory_limit(device: Any) -> int:
    """Total memory of ``device`` in bytes (CPU: physical memory, or the cgroup's limit)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory())
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(cgroup).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


# -- data -------------------------------------------------------------------------------------

#: Where torchvision downloads each built-in dataset from (its first mirror), for the probe.
_DOWNLOAD_SOURCES = {
    "cifar10": ("CIFAR10", "url"),
    "cifar100": ("CIFAR100", "url"),
    "mnist": ("MNIST", "mirrors"),
    "fashion_mnist": ("FashionMNIST", "mirrors"),
    "svhn": ("SVHN", "split_list"),
}


def download_url(name: str) -> str | None:
    """The URL torchvision would download dataset ``name`` from, if known."""
    source = _DOWNLOAD_SOURCES.get(name)
    if source is None:
        return None
    import torchvision.datasets as tvd

    value = getattr(getattr(tvd, source[0]), source[1], None)
    if isinstance(value, dict):  # SVHN: {split: [url, file, md5]}
        value = value["train"][0]
    if isinstance(value, list | tuple):
        value = value[0]
    return value if isinstance(value, str) else None


def unreachable(url: str) -> str | None:
    """Why ``url``'s host cannot be reached now (``None``: it answered a TCP connection)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"no connection to {host}: {exc.strerror or exc}"


def check_data(spec: ExperimentSpec) -> tuple[Any | None, tuple[str, ...]]:
    """Load the spec's data as a worker would, without downloading; (data or None, notes).

    ``None`` means the files are absent but their download host answers: the first trial
    downloads them.
    """
    from archbench.data import load_dataset

    ds = spec.dataset
    val = ds.val_size
    if ds.train_subset is not None and val >= 1 and val >= ds.train_subset:
        raise SpecError(
            f"dataset.val_size {val:g} is not smaller than dataset.train_subset "
            f"{ds.train_subset}: the validation split would be as large as the training set; "
            "use a fraction (e.g. 0.1) or a smaller count"
        )
    try:
        data = load_dataset(ds.name, **ds.load_kwargs(), download=False)
    except DataNotFoundError as exc:
        url = download_url(ds.name) if exc.downloadable else None
        why = unreachable(url) if url else "it cannot be downloaded automatically"
        if why is None:
            return None, (f"dataset {ds.name!r} is not present; the first trial downloads it",)
        raise SpecError(
            f"dataset: {ds.name!r} is not present and cannot be downloaded ({why}). "
            f"Looked in: {exc.places}. To get it: {exc.how}"
        ) from None
    except ArchbenchError as exc:
        raise SpecError(f"dataset: {exc}") from None
    except (MemoryError, RuntimeError) as exc:  # e.g. synthetic num_train: 10**10
        detail = " ".join(str(exc).split())[:200]
        raise SpecError(f"dataset: {ds.name!r} cannot be loaded into memory ({detail})") from None
    return data, ()


def check_shape(spec: ExperimentSpec, data: Any) -> None:
    """The nets are built (and budgets solved) for the dataset's registered shape; data that
    loads with another shape would fail every trial."""
    info = data.info
    actual = (info.num_classes, info.channels, info.image_size)
    nominal = dataset_shape(spec)
    if actual != nominal:
        raise SpecError(
            f"dataset: {spec.dataset.name!r} loads as {actual[0]} classes of {actual[1]}x"
            f"{actual[2]}x{actual[2]} images, but the variants are built for {nominal[0]} classes "
            f"of {nominal[1]}x{nominal[2]}x{nominal[2]} (its registered shape); set "
            "dataset.image_size, or give data of the registered shape"
        )


def data_bytes(data: Any) -> int:
    """Bytes of the uint8 images and int64 labels a worker keeps on the device."""
    splits = [s for s in (data.train, data.val, data.test) if s is not None]
    return sum(s.images.numel() + 8 * s.labels.numel() for s in splits)


# -- memory -----------------------------------------------------------------------------------


def estimate_memory(
    spec: Any, batch_size: int, *, amp: bool = False, data: int = 0
) -> MemoryEstimate:
    """Lower bound of one training run's memory from the exact analytic counts of ``spec``."""
    from archbench.models.complexity import analytic

    counts = analytic(spec)
    return MemoryEstimate(counts.params, counts.acts, batch_size, 2 if amp else 4, data)


def check_fits(estimate: MemoryEstimate, device: Any, limit: int, what: str, fix: str) -> None:
    if estimate.total > limit:
        raise SpecError(
            f"{what} cannot fit: training needs {estimate.describe()}; {device} has "
            f"{human_bytes(limit)} in all. {fix}"
        )


def _variant_words(variant: Any) -> str:
    config = variant.config
    if config.get("preset"):
        return f"variant {variant.label!r} (preset {config['preset']})"
    width = variant.budget.width if variant.budget else config.get("width")
    parts = [f"family {config.get('family')}"]
    parts += [f"{k} {v}" for k, v in (("depth", config.get("depth")), ("width", width)) if v]
    return f"variant {variant.label!r} ({', '.join(parts)})"


def check_memory(
    spec: ExperimentSpec,
    device: Any,
    limit: int,
    data: int,
    train_images: int | None = None,
    runs: int = 1,
) -> MemoryEstimate | None:
    """Every enumerable variant (and the largest batch size of the space) must fit, ``runs``
    times over: the workers placed on one device may all train the largest at once. A batch
    is never larger than the training set (``train_images``, when known): the loader then
    makes one batch of all of it."""
    from archbench.runner.variants import resolve_all

    batches = [spec.recipe.batch_size]
    if spec.space is not None and "batch_size" in spec.space.recipe:
        dist = spec.space.recipe["batch_size"]
        batches += list(dist.choices) if dist.choices is not None else [dist.high]
    batch = max(int(b) for b in batches)
    if train_images is not None and train_images > 0:
        batch = min(batch, train_images)
    amp = bool(spec.recipe.amp) and device.type == "cuda"
    largest = None
    for variant in resolve_all(spec, dataset_shape(spec)):
        estimate = dataclasses.replace(
            estimate_memory(variant.spec, batch, amp=amp, data=data), runs=runs
        )
        check_fits(
            estimate,
            device,
            limit,
            _variant_words(variant),
            "Reduce its depth or width, or recipe.batch_size"
            + (", or put fewer workers on a device (--workers, --gpus)" if runs > 1 else "")
            + (" or fuse fewer seeds." if runs > 1 else "."),
        )
        if largest is None or estimate.total > largest.total:
            largest = estimate
    return largest


def _fused_seeds(spec: ExperimentSpec) -> int:
    """The seeds one fused trial holds at once: the spec's list, or with a question its
    round's (``min_seeds`` at the first look, ``per_round`` after it; a configuration added
    after the first look catches up with more at once, up to ``max_seeds``)."""
    q = spec.question
    if q is None:
        return len(spec.seeds)
    return min(q.max_seeds, max(q.min_seeds, q.per_round))


# -- all of it --------------------------------------------------------------------------------


def preflight(
    spec: ExperimentSpec,
    options: Any,
    *,
    where: str | None = None,
    placement: list[str] | None = None,
) -> Preflight:
    """Every pre-trial check, cheapest first; raises :class:`SpecError` prefixed by ``where``.

    ``placement``: the device of each local worker (``run --workers N``); every device is
    checked, its memory for all the workers placed on it. ``Preflight.device`` is the first.
    """
    prefix = f"{where}: " if where else ""
    try:
        check_options(options)
        devices = [check_device(d) for d in (placement or [options.device])]
        device = devices[0]
        storage, notes = check_storage(options.storage or spec.storage)
        data, data_notes = check_data(spec)
        if data is not None:
            check_shape(spec, data)
        size = data_bytes(data) if data is not None else 0
        largest = limit = None
        for dev in dict.fromkeys(devices):  # each device once, in order
            dev_limit = memory_limit(dev)
            # (CPU workers share the machine's memory as GPU workers share a device.)
            # Fused seeds train together: each worker holds all its trial's seeds at once.
            fused = _fused_seeds(spec) if getattr(options, "fuse_seeds", False) else 1
            estimate = check_memory(
                spec,
                dev,
                dev_limit,
                size,
                len(data.train) if data is not None else None,
                runs=devices.count(dev) * fused,
            )
            if limit is None:
                largest, limit = estimate, dev_limit
    except SpecError as exc:
        raise SpecError(f"{prefix}{exc}") from None
    summary = data.summary() if data is not None else f"{spec.dataset.name} (to be downloaded)"
    return Preflight(device, storage, limit, largest, summary, (*notes, *data_notes))


def describe_check(spec: Any, device: Any = None) -> None:
    """``archbench describe`` builds the model on the CPU: refuse one whose weights and one
    image's activations cannot fit, before allocating them."""
    import torch

    from archbench.models.complexity import analytic

    device = device or torch.device("cpu")
    counts = analytic(spec)
    need = 4 * (counts.params + counts.acts)
    limit = memory_limit(device)
    if need > limit:
        raise SpecError(
            f"model {spec.name or 'spec'!r} cannot fit: {counts.params:,} params and "
            f"{counts.acts:,} activations take at least {human_bytes(need)} at batch 1; "
            f"{device} has {human_bytes(limit)} in all. Give a smaller depth or width"
        )


__all__ = [
    "MemoryEstimate",
    "Preflight",
    "check_data",
    "check_device",
    "check_memory",
    "check_options",
    "check_storage",
    "describe_check",
    "estimate_memory",
    "preflight",
]
