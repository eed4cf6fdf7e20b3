"""Dataset layer: tiny files in the real formats, read through the real code path, and the
device loader's batching, normalisation, augmentation and (seed, epoch) determinism."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archbench.data import (
    DataError,
    DatasetInfo,
    DeviceLoader,
    LoadedData,
    TensorSplit,
    load_dataset,
)
from archbench.data import datasets as builtin
from archbench.data.splits import stratified_pick, stratified_quota
from archbench.errors import SpecError, UnknownNameError
from archbench.registry import DATASETS

# ---------------------------------------------------------------------------------------------
# writers for the real on-disk formats
# ---------------------------------------------------------------------------------------------


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _dump_py2_style(obj: object, path: Path, numpy1: bool = False) -> None:
    """Pickle protocol 2 like the real CIFAR files; ``numpy1`` names numpy.core as numpy < 2."""
    raw = pickle.dumps(obj, protocol=2)
    if numpy1:
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)


def write_cifar10(root: Path, per_batch: int = 12, n_test: int = 20, numpy1: bool = False):
    """<root>/cifar-10-batches-py with data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for b in range(1, 6):
        x = _images(rng, per_batch, (3072,))
        y = [int(v) for v in np.arange(per_batch) % 10]
        batch = {
            b"batch_label": f"training batch {b} of 5".encode(),
            b"labels": y,
            b"data": x,
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(per_batch)],
        }
        _dump_py2_style(batch, folder / f"data_batch_{b}", numpy1)
        xs.append(x)
        ys += y
    tx = _images(rng, n_test, (3072,))
    ty = [int(v) for v in np.arange(n_test) % 10]
    _dump_py2_style({b"batch_label": b"testing batch 1 of 1", b"labels": ty, b"data": tx}, folder / "test_batch", numpy1)  # fmt: skip
    _dump_py2_style({b"label_names": [c.encode() for c in builtin.CIFAR10_CLASSES]}, folder / "batches.meta")  # fmt: skip
    return np.concatenate(xs).reshape(-1, 3, 32, 32), np.array(ys), tx.reshape(-1, 3, 32, 32), ty


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist_style(folder: Path, gz: bool, n_train: int = 40, n_test: int = 20):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    ext = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": _images(rng, n_train, (28, 28)),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": _images(rng, n_test, (28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(folder / (name + ext), arr)
    return arrays


def info_for(n_classes: int, channels: int = 3, size: int = 8, augment="crop_flip", pad=2):
    return DatasetInfo(
        name="t", channels=channels, image_size=size, num_classes=n_classes,
        mean=(0.5,) * channels, std=(0.25,) * channels, augment=augment, pad=pad,
    )  # fmt: skip


def random_split(n: int, channels: int = 3, size: int = 8, seed: int = 0) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return TensorSplit(images, torch.arange(n))  # label = index: tells which image came out


# ---------------------------------------------------------------------------------------------
# registry and types
# ---------------------------------------------------------------------------------------------


def test_builtin_datasets_registered() -> None:
    expected = {"cifar10", "cifar100", "svhn", "mnist", "fashion_mnist", "digits"}
    assert expected | {"synthetic", "image_folder"} <= set(DATASETS.names())
    with pytest.raises(UnknownNameError, match="did you mean 'cifar10'"):
        load_dataset("cifar01")


def test_tensor_split_validates_and_moves() -> None:
    s = TensorSplit(
        torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 2], dtype=torch.int32)
    )
    assert s.labels.dtype == torch.int64 and len(s) == 3
    assert s.to("cpu") is s
    with pytest.raises(DataError, match="uint8"):
        TensorSplit(torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError, match="one label per image"):
        TensorSplit(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    nc = torch.zeros(4, 4, 1, 3, dtype=torch.uint8).permute(3, 2, 0, 1)
    assert TensorSplit(nc, torch.zeros(3, dtype=torch.int64)).images.is_contiguous()
    with pytest.raises(DataError, match="mean/std need 3 values"):
        DatasetInfo("x", 3, 8, 2, (0.5,), (0.5,), "none")


# ---------------------------------------------------------------------------------------------
# file formats
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-pickle", "numpy1-pickle"])
def test_cifar10_python_batches(tmp_path: Path, numpy1: bool) -> None:
    x, y, tx, ty = write_cifar10(tmp_path, numpy1=numpy1)
    d = load_dataset("cifar10", root=tmp_path, val_size=0, download=False)
    assert isinstance(d, LoadedData) and d.val is None
    assert d.source == str(tmp_path / "cifar-10-batches-py")
    assert d.train.images.shape == (60, 3, 32, 32) and d.train.images.dtype == torch.uint8
    assert d.test.images.shape == (20, 3, 32, 32)
    assert torch.equal(d.train.images, torch.from_numpy(x))
    assert torch.equal(d.train.labels, torch.from_numpy(y))
    assert torch.equal(d.test.images, torch.from_numpy(tx)) and d.test.labels.tolist() == ty
    assert d.info.mean == (0.4914, 0.4822, 0.4465) and d.info.augment == "crop_flip"
    assert d.info.classes[0] == "airplane"


def test_cifar_pickle_with_code_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    _dump_py2_style({b"data": Evil()}, tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(
        DataError, match=r"data_batch_3.*refusing to load global (posix|os|nt)\.system"
    ):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 200), ("test", 100)):
        _dump_py2_style(
            {
                b"data": _images(rng, n, (3072,)),
                b"fine_labels": [int(v) for v in np.arange(n) % 100],
                b"coarse_labels": [int(v) for v in np.arange(n) % 20],
            },
            folder / split,
        )
    names = [f"class{i}".encode() for i in range(100)]
    _dump_py2_style(
        {b"fine_label_names": names, b"coarse_label_names": names[:20]}, folder / "meta"
    )
    d = load_dataset("cifar100", root=tmp_path, val_size=0.1, download=False)
    assert d.info.num_classes == 100 and d.info.classes[99] == "class99"
    assert len(d.train) == 180 and len(d.val) == 20 and len(d.test) == 100
    assert int(d.train.labels.max()) == 99
    c = load_dataset(
        "cifar100", root=tmp_path, val_size=0, download=False, options={"labels": "coarse"}
    )
    assert c.info.num_classes == 20 and int(c.test.labels.max()) == 19
    with pytest.raises(SpecError, match=r"no option\(s\) 'label'.*allowed: augment, labels, pad"):
        load_dataset("cifar100", root=tmp_path, options={"label": "coarse"})


def test_svhn_mat(tmp_path: Path) -> None:
    import scipy.io

    rng = np.random.default_rng(3)
    folder = tmp_path / "svhn"
    folder.mkdir()
    arrays = {}
    for split, n in (("train", 30), ("test", 10), ("extra", 20)):
        x = _images(rng, 32, (32, 3, n))  # (H, W, C, N) as in the .mat files
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # digit 0 stored as 10
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        arrays[split] = (x, y)
    d = load_dataset("svhn", root=tmp_path, val_size=0, download=False)
    x, y = arrays["train"]
    assert d.train.images.shape == (30, 3, 32, 32)
    assert torch.equal(d.train.images[4], torch.from_numpy(x[:, :, :, 4]).permute(2, 0, 1))
    assert d.train.labels.tolist() == [v % 10 for v in y.reshape(-1).tolist()]
    assert d.train.labels[9] == 0  # the "10" became 0
    assert d.info.augment == "crop"  # no flips for digits
    assert len(d.test) == 10
    with_extra = load_dataset("svhn", root=tmp_path, val_size=0, options={"extra": True})
    assert len(with_extra.train) == 50 and torch.equal(with_extra.train.images[:30], d.train.images)
    wrn = load_dataset("svhn", root=tmp_path, options={"augment": "none", "pad": 0})
    assert (wrn.info.augment, wrn.info.pad) == ("none", 0)
    with pytest.raises(SpecError, match="option augment must be one of"):
        load_dataset("svhn", root=tmp_path, options={"augment": "flip"})


@pytest.mark.parametrize(
    ("name", "sub", "gz"),
    [("mnist", "MNIST/raw", True), ("mnist", "mnist", False),
     ("fashion_mnist", "FashionMNIST/raw", False), ("fashion_mnist", "fashion-mnist", True)],
)  # fmt: skip
def test_idx_formats(tmp_path: Path, name: str, sub: str, gz: bool) -> None:
    arrays = write_mnist_style(tmp_path / sub, gz=gz)
    d = load_dataset(name, root=tmp_path, val_size=0, download=False)
    assert d.source == str(tmp_path / sub)
    assert d.train.images.shape == (40, 1, 28, 28) and d.test.images.shape == (20, 1, 28, 28)
    assert torch.equal(d.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert d.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert d.info.augment == ("crop" if name == "mnist" else "crop_flip")


def test_idx_corrupt_file_names_it(tmp_path: Path) -> None:
    write_mnist_style(tmp_path / "mnist", gz=False)
    bad = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: IDX header says \(20,\)"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    colours = {"cat": (255, 0, 0), "dog": (0, 0, 255), "eel": (0, 255, 0)}
    for split, n in (("train", 4), ("val", 2)):
        for cls, rgb in colours.items():
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = np.zeros((12, 16, 3), dtype=np.uint8) + np.array(rgb, dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    d = load_dataset("image_folder", options={"path": str(tmp_path)}, image_size=8, val_size=0)
    assert d.info.classes == ("cat", "dog", "eel") and d.info.num_classes == 3
    assert d.train.images.shape == (12, 3, 8, 8) and len(d.test) == 6
    assert d.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert d.train.images[5, :, 3, 3].tolist() == [0, 0, 255]  # a dog is blue after resizing
    # default size: the first image's shorter side; root works as the folder too
    d2 = load_dataset("image_folder", root=tmp_path, val_size=0, options={"channels": 1})
    assert d2.train.images.shape == (12, 1, 12, 12) and d2.info.channels == 1
    with pytest.raises(DataError, match=r"Looked in: .*train.*test.*val"):
        load_dataset("image_folder", root=tmp_path / "nope")
    # The shape without reading the data: class folders counted, one image opened.
    from archbench.data.load import dataset_shape

    shape = dataset_shape("image_folder", options={"path": str(tmp_path)})
    assert shape == (3, 3, 12) == (d2.info.num_classes, 3, d2.info.image_size)
    grey = dataset_shape("image_folder", root=tmp_path, image_size=8, options={"channels": 1})
    assert grey == (3, 1, 8)
    with pytest.raises(DataError, match=r"Looked in: .*train.*test.*val"):
        dataset_shape("image_folder", root=tmp_path / "nope")


def test_dataset_shape_follows_the_options() -> None:
    from archbench.data.load import dataset_shape

    opts = {"num_classes": 4, "channels": 2, "image_size": 12}
    assert dataset_shape("synthetic", options=opts) == (4, 2, 12)
    assert dataset_shape("synthetic", options=opts, image_size=16) == (4, 2, 16)
    assert dataset_shape("cifar100", options={"labels": "coarse"}) == (20, 3, 32)
    assert dataset_shape("mnist", image_size=32) == (10, 1, 32)
    with pytest.raises(SpecError, match="has no option"):
        dataset_shape("digits", options={"labels": "coarse"})


def test_digits_fixed_stratified_test_split() -> None:
    a = load_dataset("digits", val_size=0.1, split_seed=0)
    b = load_dataset("digits", val_size=0.1, split_seed=5)
    assert a.source == "sklearn" and a.info.image_size == 8 and a.info.augment == "none"
    assert len(a.train) + len(a.val) + len(a.test) == 1797 and len(a.test) == 359
    assert torch.equal(a.test.images, b.test.images)  # split_seed does not move the test set
    assert not torch.equal(a.val.images, b.val.images)  # ... but moves the validation carve
    assert int(a.train.images.max()) == 255 and int(a.train.images.min()) == 0
    counts = a.test.class_counts(10)
    assert int(counts.max() - counts.min()) <= 2  # stratified (digits has ~180 per class)


def test_synthetic_is_seeded_and_learnable() -> None:
    opts = {"num_train": 600, "num_test": 200, "num_classes": 4, "channels": 2, "image_size": 12}
    a = load_dataset("synthetic", val_size=0, options=opts)
    b = load_dataset("synthetic", val_size=0, options=opts)
    c = load_dataset("synthetic", val_size=0, options={**opts, "seed": 1})
    bigger = load_dataset("synthetic", val_size=0, options={**opts, "num_train": 700})
    assert a.train.images.shape == (600, 2, 12, 12) and a.info.num_classes == 4
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert torch.equal(a.test.images, bigger.test.images)  # test set independent of num_train
    assert a.train.class_counts(4).tolist() == [150] * 4
    x = a.train.images.float().flatten(1)
    prototypes = torch.stack([x[a.train.labels == k].mean(0) for k in range(4)])
    pred = torch.cdist(a.test.images.float().flatten(1), prototypes).argmin(1)
    accuracy = (pred == a.test.labels).float().mean().item()
    assert accuracy > 0.5  # a class signal exists (chance is 0.25)
    with pytest.raises(SpecError, match="synthetic option num_classes must be an int >= 2"):
        load_dataset("synthetic", options={"num_classes": 1})


@pytest.mark.skipif(
    not (builtin.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist_from_debian(tmp_path: Path) -> None:
    d = load_dataset("fashion_mnist", root=tmp_path, val_size=0, download=False)
    assert d.source == str(builtin.DEBIAN_FASHION_MNIST)
    assert len(d.train) == 60000 and len(d.test) == 10000
    assert d.train.class_counts(10).tolist() == [6000] * 10
    assert d.train.labels[0] == 9 and d.test.labels[0] == 9  # both start with an ankle boot
    x = d.train.images.float() / 255
    assert abs(x.mean().item() - d.info.mean[0]) < 1e-3
    assert abs(x.std().item() - d.info.std[0]) < 1e-3


# ---------------------------------------------------------------------------------------------
# where data comes from
# ---------------------------------------------------------------------------------------------


def test_missing_data_error_lists_every_place(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(builtin, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", root=tmp_path, download=False)
    msg = str(err.value)
    for place in ("FashionMNIST/raw", "fashion-mnist", "debian"):
        assert str(tmp_path / place) in msg
    assert "download=False" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "ARCHBENCH_DATA_ROOT" in msg and "--data-root" in msg and "\n" not in msg


def test_env_root_is_used(tmp_path: Path, monkeypatch) -> None:
    write_mnist_style(tmp_path / "MNIST" / "raw", gz=True)
    monkeypatch.setenv("ARCHBENCH_DATA_ROOT", str(tmp_path))
    d = load_dataset("mnist", download=False, val_size=0)
    assert d.source == str(tmp_path / "MNIST" / "raw")
    monkeypatch.delenv("ARCHBENCH_DATA_ROOT")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"the default \./data"):
        load_dataset("mnist", download=False)


def test_download_goes_through_torchvision(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets as tvd

    calls = []

    class Offline:
        def __init__(self, root: str, download: bool, **kw) -> None:
            calls.append((root, download))
            raise RuntimeError("Error downloading:\nTried https://x/, got:\n<urlopen error>")

    monkeypatch.setattr(tvd, "CIFAR10", Offline)
    with pytest.raises(DataError, match=r"with torchvision into .* failed \(RuntimeError") as err:
        load_dataset("cifar10", root=tmp_path)
    assert "\n" not in str(err.value) and "connect to the internet" in str(err.value)
    assert calls == [(str(tmp_path), True)]

    class Works:  # stands in for a successful download: the real files appear under root
        def __init__(self, root: str, download: bool, **kw) -> None:
            write_cifar10(Path(root))

    monkeypatch.setattr(tvd, "CIFAR10", Works)
    d = load_dataset("cifar10", root=tmp_path / "fresh", val_size=0)
    assert d.source == "download" and len(d.train) == 60


# ---------------------------------------------------------------------------------------------
# validation carve, subsets, resize
# ---------------------------------------------------------------------------------------------


def _rows(split: TensorSplit) -> set[bytes]:
    return {bytes(img.numpy().tobytes()) for img in split.images}


def test_val_split_disjoint_fixed_by_seed_and_stratified(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=40)  # 200 train images, 20 per class
    full = load_dataset("cifar10", root=tmp_path, val_size=0, download=False).train
    a = load_dataset("cifar10", root=tmp_path, val_size=0.2, download=False)
    b = load_dataset("cifar10", root=tmp_path, val_size=0.2, download=False)
    c = load_dataset("cifar10", root=tmp_path, val_size=40, split_seed=1, download=False)
    assert len(a.val) == 40 and len(a.train) == 160
    assert _rows(a.val).isdisjoint(_rows(a.train))
    assert _rows(a.val) | _rows(a.train) == _rows(full)
    assert torch.equal(a.val.images, b.val.images)
    assert _rows(c.val) != _rows(a.val)
    assert a.val.class_counts(10).tolist() == [4] * 10
    with pytest.raises(SpecError, match="val_size must be"):
        load_dataset("cifar10", root=tmp_path, val_size=1.5, download=False)


def test_subsets_are_seeded_balanced_and_outside_val(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=40)
    d = load_dataset("cifar10", root=tmp_path, val_size=0.25, train_subset=80, test_subset=10, download=False)  # fmt: skip
    assert len(d.train) == 80 and len(d.val) == 20 and len(d.test) == 10
    assert d.train.class_counts(10).tolist() == [8] * 10
    assert d.test.class_counts(10).tolist() == [1] * 10
    assert _rows(d.train).isdisjoint(_rows(d.val))
    with pytest.raises(SpecError, match="exceed the 200 training images"):
        load_dataset("cifar10", root=tmp_path, val_size=50, train_subset=160, download=False)


def test_stratified_pick_quota_is_exact() -> None:
    counts = torch.tensor([5, 3, 2])
    assert stratified_quota(counts, 5).tolist() == [3, 1, 1]  # 2.5, 1.5, 1.0
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    picked, rest = stratified_pick(labels, 5, torch.Generator().manual_seed(0))
    assert sorted(picked.tolist() + rest.tolist()) == list(range(10))
    assert torch.bincount(labels[picked], minlength=3).tolist() == [3, 1, 1]


def test_resize_on_load(tmp_path: Path) -> None:
    write_mnist_style(tmp_path / "mnist", gz=False)
    d = load_dataset("mnist", root=tmp_path, image_size=32, val_size=10, download=False)
    assert d.info.image_size == 32
    for split in (d.train, d.val, d.test):
        assert split.images.shape[1:] == (1, 32, 32) and split.images.dtype == torch.uint8
    original = load_dataset("mnist", root=tmp_path, val_size=0, download=False).test.images
    ref = F.interpolate(original.float(), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(d.test.images, ref.round().clamp(0, 255).to(torch.uint8))


# ---------------------------------------------------------------------------------------------
# DeviceLoader
# ---------------------------------------------------------------------------------------------


def _denormalise(x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return ((x.float() * std + mean) * 255).round().to(torch.uint8)


def _all_crops(
    image: torch.Tensor, pad: int, flips: bool
) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every crop of one zero-padded image, computed image by image (the reference)."""
    _, h, w = image.shape
    padded = F.pad(image, (pad, pad, pad, pad))
    out = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out[(dy, dx, False)] = crop
            if flips:
                out[(dy, dx, True)] = crop.flip(-1)
    return out


def test_loader_batches_and_drop_last() -> None:
    split, info = random_split(10), info_for(10)
    loader = DeviceLoader(split, info, batch_size=4)
    sizes = [x.shape[0] for x, _ in loader]
    assert sizes == [4, 4, 2] and len(loader) == 3 and loader.num_samples == 10
    dropping = DeviceLoader(split, info, batch_size=4, train=True, drop_last=True)
    assert [x.shape[0] for x, _ in dropping] == [4, 4]
    assert len(dropping) == 2 and dropping.num_samples == 8


def test_eval_loader_in_order_unaugmented_and_normalised() -> None:
    split, info = random_split(9), info_for(9)
    loader = DeviceLoader(split, info, batch_size=4)
    xs, ys = zip(*loader)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == list(range(9))
    expected = (split.images.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-5)


def test_normalised_train_batches_have_dataset_stats() -> None:
    d = load_dataset("synthetic", val_size=0, options={"num_train": 512, "image_size": 16})
    x = torch.cat([xb for xb, _ in DeviceLoader(d.train, d.info, batch_size=128)])
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=2e-3, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), atol=2e-3, rtol=0)


@pytest.mark.parametrize("mode", ["crop_flip", "crop"])
def test_augmentation_matches_per_image_reference(mode: str) -> None:
    pad = 2
    split, info = random_split(64, size=6), info_for(64, size=6, augment=mode, pad=pad)
    loader = DeviceLoader(split, info, batch_size=16, train=True, seed=3)
    seen_offsets, seen_flips = set(), set()
    for x, y in loader:
        out = _denormalise(x, info)
        for img, label in zip(out, y.tolist()):
            matches = [
                key
                for key, ref in _all_crops(split.images[label], pad, mode == "crop_flip").items()
                if torch.equal(img, ref)
            ]
            assert len(matches) == 1, f"image {label} is no crop/flip of its source"
            seen_offsets.add(matches[0][:2])
            seen_flips.add(matches[0][2])
    assert len(seen_offsets) > 10  # offsets actually vary (25 possible)
    assert seen_flips == ({False, True} if mode == "crop_flip" else {False})
    assert sorted(torch.cat([y for _, y in loader]).tolist()) == list(range(64))


def test_augment_flag_and_none_dataset() -> None:
    split = random_split(8)
    plain = DeviceLoader(split, info_for(8), batch_size=8, train=True, augment=False)
    x, y = next(iter(plain))
    assert torch.equal(_denormalise(x, info_for(8)), split.images[y])  # shuffled, not augmented
    assert y.tolist() != list(range(8))
    none_info = info_for(8, augment="none")
    x, y = next(iter(DeviceLoader(split, none_info, batch_size=8, train=True, augment=True)))
    assert torch.equal(_denormalise(x, none_info), split.images[y])


def _epoch(loader: DeviceLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def test_order_and_augmentation_depend_only_on_seed_and_epoch() -> None:
    split, info = random_split(50), info_for(50)

    def make(seed: int = 7) -> DeviceLoader:
        return DeviceLoader(split, info, batch_size=16, train=True, seed=seed)

    first = make()
    epochs = [_epoch(first, e) for e in range(3)]
    resumed = make()  # a restarted trainer: fresh loader, jump straight to epoch 2
    for (xa, ya), (xb, yb) in zip(epochs[2], _epoch(resumed, 2)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(epochs[0][0][1], epochs[1][0][1])  # epochs differ in order
    x0 = {int(lab): img for xb, yb in epochs[0] for img, lab in zip(xb, yb)}
    x1 = {int(lab): img for xb, yb in epochs[1] for img, lab in zip(xb, yb)}
    assert sum(not torch.equal(x0[i], x1[i]) for i in range(50)) > 40  # ... and in crops
    other_seed = _epoch(make(8), 0)
    assert not torch.equal(other_seed[0][1], epochs[0][0][1])
    torch.manual_seed(123)  # the global RNG plays no part
    assert all(torch.equal(a[0], b[0]) for a, b in zip(_epoch(make(), 0), epochs[0]))


def test_channels_last_and_bf16() -> None:
    split, info = random_split(6), info_for(6)
    ref = next(iter(DeviceLoader(split, info, batch_size=6, train=True, seed=1)))[0]
    x, _ = next(
        iter(DeviceLoader(split, info, batch_size=6, train=True, seed=1, channels_last=True, dtype=torch.bfloat16))
    )  # fmt: skip
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x.float(), ref, atol=2e-2, rtol=1e-2)
    with pytest.raises(SpecError, match="batch_size must be a positive int"):
        DeviceLoader(split, info, batch_size=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loader_on_cuda_matches_cpu() -> None:
    split, info = random_split(300, size=16), info_for(300, size=16, pad=4)
    cpu = DeviceLoader(split, info, batch_size=128, train=True, seed=5)
    gpu = DeviceLoader(split, info, batch_size=128, train=True, seed=5, device="cuda")
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.device.type == "cuda"
        assert torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-5)
