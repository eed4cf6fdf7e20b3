"""The built-in datasets, registered in ``archbench.registry.DATASETS``.

Normalisation statistics are the standard published per-channel values (computed over each
full official training set); datasets whose content depends on options (``digits``,
``synthetic``, ``image_folder``) compute theirs from their training split at load time.

Augmentation choices: CIFAR-10/100 and Fashion-MNIST use pad 4 + random crop + horizontal
flip; MNIST and SVHN use pad 4 + random crop without flips, because a mirrored digit is a
different (or no) digit -- the WRN paper trains SVHN without augmentation at all, pass
``options={"augment": "none"}`` to reproduce that; ``digits`` (8x8) uses none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archbench.data import sources
from archbench.data.augment import crop_index
from archbench.data.base import DatasetInfo, TensorSplit
from archbench.data.registry import (
    DatasetEntry,
    DatasetShape,
    RawData,
    ReadRequest,
    channel_stats,
    locate,
    not_found,
    split_from_numpy,
)
from archbench.data.seeds import generator
from archbench.errors import DataError, SpecError
from archbench.registry import DATASETS

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0  # fixed forever: the digits "test" split must not move with split_seed

DIGIT_NAMES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def _torchvision(cls_name: str, **kwargs: Any) -> Callable[[Path], None]:
    """Call a torchvision dataset class with download=True (imported lazily: it is slow)."""

    def run(root: Path) -> None:
        import torchvision.datasets as tvd

        getattr(tvd, cls_name)(root=str(root), download=True, **kwargs)

    return run


def _then(run: Callable[[Path], None], folder: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def download(root: Path) -> Path:
        run(root)
        return folder(root)

    return download


def _files_in(names: tuple[str, ...]) -> Callable[[Path], list[Path] | None]:
    def probe(folder: Path) -> list[Path] | None:
        paths = [folder / n for n in names]
        return paths if all(p.is_file() for p in paths) else None

    return probe


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# ---------------------------------------------------------------------------------------------

CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def read_cifar10(req: ReadRequest) -> RawData:
    paths, folder, downloaded = locate(
        req,
        [req.root / "cifar-10-batches-py", req.root],
        _files_in(CIFAR10_FILES),
        files="data_batch_1..5 and test_batch (the CIFAR-10 python version)",
        download=_then(_torchvision("CIFAR10"), lambda r: r / "cifar-10-batches-py"),
    )
    train = sources.read_cifar_batches(paths[:5], "labels")
    test = sources.read_cifar_batches(paths[5:], "labels")
    return RawData(
        CIFAR10_INFO, split_from_numpy(*train), split_from_numpy(*test),
        "download" if downloaded else str(folder),
    )  # fmt: skip


def read_cifar100(req: ReadRequest) -> RawData:
    paths, folder, downloaded = locate(
        req,
        [req.root / "cifar-100-python", req.root],
        _files_in(("train", "test")),
        files="train and test (the CIFAR-100 python version)",
        download=_then(_torchvision("CIFAR100"), lambda r: r / "cifar-100-python"),
    )
    coarse = _cifar100_coarse(req)
    key = "coarse_labels" if coarse else "fine_labels"
    train = sources.read_cifar_batches(paths[:1], key)
    test = sources.read_cifar_batches(paths[1:], key)
    num_classes = 20 if coarse else 100
    names = sources.read_label_names(folder / "meta", key.replace("labels", "label_names"))
    info = DatasetInfo(
        **{**CIFAR100_INFO.__dict__, "num_classes": num_classes,
           "classes": names if len(names) == num_classes else ()}
    )  # fmt: skip
    return RawData(
        info, split_from_numpy(*train), split_from_numpy(*test),
        "download" if downloaded else str(folder),
    )  # fmt: skip


def _cifar100_coarse(req: ReadRequest) -> bool:
    if req.options["labels"] not in ("fine", "coarse"):
        raise SpecError(
            f"cifar100 option labels must be 'fine' or 'coarse', got {req.options['labels']!r}"
        )
    return req.options["labels"] == "coarse"


def probe_cifar100(req: ReadRequest) -> DatasetShape:
    return DatasetShape(20 if _cifar100_coarse(req) else 100, 3, req.image_size or 32)


# Published statistics of the 50k training images. The std is the per-pixel std over the whole
# set; the often-copied (0.2023, 0.1994, 0.2010) is a mean of per-image stds, not this.
CIFAR10_INFO = DatasetInfo(
    name="cifar10", channels=3, image_size=32, num_classes=10,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    augment="crop_flip", pad=4, classes=CIFAR10_CLASSES,
)  # fmt: skip
CIFAR100_INFO = DatasetInfo(
    name="cifar100", channels=3, image_size=32, num_classes=100,
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
    augment="crop_flip", pad=4,
)  # fmt: skip

# ---------------------------------------------------------------------------------------------
# SVHN
# ---------------------------------------------------------------------------------------------

SVHN_INFO = DatasetInfo(
    name="svhn", channels=3, image_size=32, num_classes=10,
    mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
    augment="crop", pad=4, classes=DIGIT_NAMES,
)  # fmt: skip


def read_svhn(req: ReadRequest) -> RawData:
    extra = bool(req.options["extra"])
    names = ("train_32x32.mat", "test_32x32.mat", *(("extra_32x32.mat",) if extra else ()))

    def fetch(root: Path) -> Path:
        for split in ("train", "test", *(("extra",) if extra else ())):
            _torchvision("SVHN", split=split)(root / "svhn")
        return root / "svhn"

    paths, folder, downloaded = locate(
        req,
        [req.root / "svhn", req.root / "SVHN", req.root],
        _files_in(names),
        files=" and ".join(names) + " (the cropped-digits format)",
        download=fetch,
    )
    train_x, train_y = sources.read_svhn_mat(paths[0])
    if extra:  # the 531k "extra" images, as the WRN paper trains on train + extra
        extra_x, extra_y = sources.read_svhn_mat(paths[2])
        train_x, train_y = np.concatenate([train_x, extra_x]), np.concatenate([train_y, extra_y])
    test = sources.read_svhn_mat(paths[1])
    return RawData(
        SVHN_INFO, split_from_numpy(train_x, train_y), split_from_numpy(*test),
        "download" if downloaded else str(folder),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)
# ---------------------------------------------------------------------------------------------

MNIST_INFO = DatasetInfo(
    name="mnist", channels=1, image_size=28, num_classes=10,
    mean=(0.1307,), std=(0.3081,), augment="crop", pad=4, classes=DIGIT_NAMES,
)  # fmt: skip
FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist", channels=1, image_size=28, num_classes=10,
    mean=(0.2860,), std=(0.3530,), augment="crop_flip", pad=4, classes=FASHION_CLASSES,
)  # fmt: skip


def _read_idx_dataset(
    req: ReadRequest, info: DatasetInfo, candidates: list[Path], tv_class: str, tv_folder: str,
    extra_how: tuple[str, ...] = (),
) -> RawData:  # fmt: skip
    files, folder, downloaded = locate(
        req,
        candidates,
        sources.find_idx_files,
        files="train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        "t10k-labels-idx1-ubyte (each optionally .gz)",
        download=_then(_torchvision(tv_class), lambda r: r / tv_folder / "raw"),
        extra_how=extra_how,
    )
    train = sources.read_idx_split(files["train_images"], files["train_labels"])
    test = sources.read_idx_split(files["test_images"], files["test_labels"])
    return RawData(
        info, split_from_numpy(*train), split_from_numpy(*test),
        "download" if downloaded else str(folder),
    )  # fmt: skip


def read_mnist(req: ReadRequest) -> RawData:
    return _read_idx_dataset(
        req, MNIST_INFO, [req.root / "MNIST" / "raw", req.root / "mnist"], "MNIST", "MNIST"
    )


def read_fashion_mnist(req: ReadRequest) -> RawData:
    return _read_idx_dataset(
        req,
        FASHION_MNIST_INFO,
        [req.root / "FashionMNIST" / "raw", req.root / "fashion-mnist", DEBIAN_FASHION_MNIST],
        "FashionMNIST",
        "FashionMNIST",
        extra_how=("on Debian/Ubuntu: apt-get install dataset-fashion-mnist",),
    )


# ---------------------------------------------------------------------------------------------
# sklearn digits (8x8, bundled with scikit-learn)
# ---------------------------------------------------------------------------------------------


def read_digits(req: ReadRequest) -> RawData:
    """The 1797 8x8 digits; sklearn has no test split, so a fixed stratified 20% is held out."""
    from sklearn.datasets import load_digits

    from archbench.data.splits import stratified_pick

    digits = load_digits()
    # 17 grey levels 0..16 -> 0..255 (exact multiples of 255/16, rounded).
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    full = split_from_numpy(images, digits.target)
    n_test = round(DIGITS_TEST_FRACTION * len(full))
    test_idx, train_idx = stratified_pick(full.labels, n_test, generator(DIGITS_TEST_SEED))
    train, test = full.take(train_idx), full.take(test_idx)
    mean, std = channel_stats(train.images)
    info = DatasetInfo(
        name="digits", channels=1, image_size=8, num_classes=10, mean=mean, std=std,
        augment="none", pad=0, classes=DIGIT_NAMES,
    )  # fmt: skip
    return RawData(info, train, test, "sklearn")


# ---------------------------------------------------------------------------------------------
# synthetic: seeded images with a learnable signal
# ---------------------------------------------------------------------------------------------

SYNTHETIC_OPTIONS = {
    "num_train": 5000,
    "num_test": 1000,
    "num_classes": 10,
    "channels": 3,
    "image_size": 32,
    "seed": 0,
    "noise": 1.0,  # per-pixel noise std relative to the class pattern's std
    "shift": 4,  # the pattern appears at a random offset of up to +-shift pixels
}


def _int_option(opts: dict[str, Any], key: str, low: int) -> int:
    value = opts[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise SpecError(f"synthetic option {key} must be an int >= {low}, got {value!r}")
    return value


def probe_synthetic(req: ReadRequest) -> DatasetShape:
    opts = dict(req.options)
    size = req.image_size or _int_option(opts, "image_size", 4)
    k, c = _int_option(opts, "num_classes", 2), _int_option(opts, "channels", 1)
    return DatasetShape(k, c, size)


def read_synthetic(req: ReadRequest) -> RawData:
    """Each class is a smooth random pattern, shown at a random offset under pixel noise.

    The same ``seed`` gives the same patterns and images; train and test are drawn from
    separate streams, so ``num_train`` does not change the test set.
    """
    opts = dict(req.options)
    if req.image_size is not None:
        opts["image_size"] = req.image_size
    n_train, n_test = _int_option(opts, "num_train", 1), _int_option(opts, "num_test", 1)
    k, c = _int_option(opts, "num_classes", 2), _int_option(opts, "channels", 1)
    size, seed = _int_option(opts, "image_size", 4), _int_option(opts, "seed", 0)
    shift = _int_option(opts, "shift", 0)
    noise = opts["noise"]
    if not isinstance(noise, int | float) or isinstance(noise, bool) or noise < 0:
        raise SpecError(f"synthetic option noise must be a number >= 0, got {noise!r}")
    full = size + 2 * shift
    g = generator(seed, 0)
    coarse = torch.randn(k, c, 4, 4, generator=g, dtype=torch.float32)
    patterns = torch.nn.functional.interpolate(
        coarse, size=(full, full), mode="bicubic", align_corners=False
    )
    patterns = (patterns - patterns.mean(dim=(1, 2, 3), keepdim=True)) / patterns.std(
        dim=(1, 2, 3), keepdim=True
    )

    def draw(n: int, stream: int) -> TensorSplit:
        gs = generator(seed, stream)
        labels = (torch.arange(n) % k)[torch.randperm(n, generator=gs)]
        images = torch.empty(n, c, size, size, dtype=torch.uint8)
        for i in range(0, n, 4096):  # chunks keep the float work small for large n
            y = labels[i : i + 4096]
            b = y.shape[0]
            off = torch.randint(0, 2 * shift + 1, (b, 2), generator=gs)
            index = crop_index(off[:, 0], off[:, 1], None, size, size, full)
            x = (
                patterns[y]
                .reshape(b, c, full * full)
                .gather(2, index[:, None, :].expand(b, c, size * size))
            )
            x = x.view(b, c, size, size)
            x.add_(torch.randn(x.shape, generator=gs), alpha=noise)
            images[i : i + b] = x.mul_(40).add_(128).round_().clamp_(0, 255)
        return TensorSplit(images, labels)

    train, test = draw(n_train, 1), draw(n_test, 2)
    mean, std = channel_stats(train.images)
    info = DatasetInfo(
        name="synthetic", channels=c, image_size=size, num_classes=k, mean=mean, std=std,
        augment="crop_flip", pad=4,
    )  # fmt: skip
    return RawData(info, train, test, "synthetic")


# ---------------------------------------------------------------------------------------------
# image_folder: <path>/train/<class>/*.png and <path>/test (or val)/<class>/*.png
# ---------------------------------------------------------------------------------------------


def _image_folder(req: ReadRequest) -> tuple[Path, Path, Path]:
    """(folder, train dir, test dir) of an image folder; raises naming where it looked."""
    path = Path(req.options["path"]) if req.options["path"] is not None else req.root
    channels = req.options["channels"]
    if channels not in (1, 3):
        raise SpecError(f"image_folder option channels must be 1 or 3, got {channels!r}")
    train_dir = path / "train"
    test_dir = next((path / s for s in ("test", "val") if (path / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        looked = [f"{path / s}" for s in ("train", "test", "val")]
        raise not_found(
            req,
            looked,
            f"An image folder needs {train_dir} and {path / 'test'} (or {path / 'val'}), each "
            "with one sub-folder of images per class",
            [
                "pass options={'path': FOLDER} or root= (CLI: --data-root) pointing at FOLDER "
                "with train/<class>/*.png and test/<class>/*.png"
            ],
        )
    return path, train_dir, test_dir


def _image_size(req: ReadRequest, first: Path) -> int:
    """``image_size`` if given, else the first training image's shorter side."""
    if req.image_size is not None:
        return req.image_size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(first) as im:
            return min(im.size)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {first}: {exc}") from None


def probe_image_folder(req: ReadRequest) -> DatasetShape:
    """Count the class folders of train/ and open its first image, reading nothing else."""
    _path, train_dir, _test_dir = _image_folder(req)
    classes, first = sources.image_folder_classes(train_dir)
    return DatasetShape(len(classes), req.options["channels"], _image_size(req, first))


def read_image_folder(req: ReadRequest) -> RawData:
    """Decode a whole image folder into memory at one square size (shorter side, centre crop).

    The size is ``image_size`` if given, else the first training image's shorter side. Large
    folders (ImageNet scale) do not fit this in-memory design; use a DataLoader pipeline.
    """
    path, train_dir, test_dir = _image_folder(req)
    channels = req.options["channels"]
    classes, train_files = sources.list_image_folder(train_dir)
    test_classes, test_files = sources.list_image_folder(test_dir)
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataError(
            f"{test_dir} has classes {unknown} that {train_dir} lacks (train classes: {classes})"
        )
    mode = "L" if channels == 1 else "RGB"
    size = _image_size(req, train_files[0][0])
    index = {c: i for i, c in enumerate(classes)}
    train = split_from_numpy(*sources.read_image_split(train_files, index, size, mode))
    test = split_from_numpy(*sources.read_image_split(test_files, index, size, mode))
    mean, std = channel_stats(train.images)
    info = DatasetInfo(
        name="image_folder", channels=channels, image_size=size, num_classes=len(classes),
        mean=mean, std=std, augment="crop_flip", pad=max(1, size // 8), classes=tuple(classes),
    )  # fmt: skip
    return RawData(info, train, test, str(path))


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------


def _register() -> None:
    entries = [
        ("cifar10", "CIFAR-10: 50k/10k 32x32 colour images, 10 classes",
         DatasetEntry(CIFAR10_INFO, read_cifar10, {}, "<root>/cifar-10-batches-py")),
        ("cifar100", "CIFAR-100: 50k/10k 32x32 colour images, 100 (or 20 coarse) classes",
         DatasetEntry(CIFAR100_INFO, read_cifar100, {"labels": "fine"},
                      "<root>/cifar-100-python", probe_cifar100)),
        ("svhn", "SVHN cropped digits: 73k/26k 32x32 colour (+531k extra), 10 classes",
         DatasetEntry(SVHN_INFO, read_svhn, {"extra": False}, "<root>/svhn or <root>")),
        ("mnist", "MNIST: 60k/10k 28x28 grey handwritten digits",
         DatasetEntry(MNIST_INFO, read_mnist, {}, "<root>/MNIST/raw or <root>/mnist")),
        ("fashion_mnist", "Fashion-MNIST: 60k/10k 28x28 grey clothing images, 10 classes",
         DatasetEntry(FASHION_MNIST_INFO, read_fashion_mnist, {},
                      f"<root>/FashionMNIST/raw, <root>/fashion-mnist or {DEBIAN_FASHION_MNIST}")),
        ("digits", "sklearn digits: 1797 8x8 grey digits, fixed stratified 80/20 split",
         DatasetEntry(
             DatasetInfo("digits", 1, 8, 10, (0.5,), (0.5,), "none", 0, DIGIT_NAMES),
             read_digits, {}, "bundled with scikit-learn")),
        ("synthetic", "seeded random images with a learnable class signal (tests, speed runs)",
         DatasetEntry(
             DatasetInfo("synthetic", 3, 32, 10, (0.5,) * 3, (0.25,) * 3, "crop_flip", 4),
             read_synthetic, SYNTHETIC_OPTIONS, "generated", probe_synthetic)),
        ("image_folder", "a folder with train/ and test/ (or val/) sub-folders of class folders",
         DatasetEntry(
             DatasetInfo("image_folder", 3, 32, 2, (0.5,) * 3, (0.25,) * 3, "crop_flip", 4),
             read_image_folder, {"path": None, "channels": 3}, "options path, or root",
             probe_image_folder)),
    ]  # fmt: skip
    for name, description, entry in entries:
        DATASETS.add(name, entry, description=description)


_register()
