"""Tiny data sets written in the real on-disk formats, for tests that need no download."""
import gzip
import os
import pickle

import numpy as np
from PIL import Image

CINIC_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")


def _labels(rng, count, num_classes):
    """int labels covering every class when count allows, in random order."""
    labels = np.arange(count) % num_classes
    return rng.permutation(labels).tolist()


def _dump(path, entry):
    """Pickle `entry` with bytes keys, as the real Python 2 CIFAR files read back."""
    with open(path, "wb") as handle:
        pickle.dump({key.encode(): value for key, value in entry.items()}, handle, protocol=2)


def _batch(rng, count, num_classes, label_key):
    """One CIFAR batch dict: data (count, 3072) uint8 in CHW order plus labels."""
    entry = {
        "data": rng.randint(0, 256, size=(count, 3 * 32 * 32), dtype=np.uint8),
        label_key: _labels(rng, count, num_classes),
        "filenames": [f"img_{i}.png".encode() for i in range(count)],
    }
    if num_classes == 100:
        entry["coarse_labels"] = [label // 5 for label in entry["fine_labels"]]
    return entry


def write_fake_cifar(root, num_classes=100, n_train=200, n_test=100, seed=0):
    """Write torchvision's CIFAR-100 (or CIFAR-10 when num_classes=10) layout under `root`.

    CIFAR-10 train is spread over data_batch_1..5; returns the data folder path.
    """
    if num_classes not in (10, 100):
        raise ValueError("num_classes must be 10 or 100")
    rng = np.random.RandomState(seed)
    if num_classes == 100:
        folder = os.path.join(root, "cifar-100-python")
        os.makedirs(folder, exist_ok=True)
        _dump(os.path.join(folder, "train"), _batch(rng, n_train, 100, "fine_labels"))
        _dump(os.path.join(folder, "test"), _batch(rng, n_test, 100, "fine_labels"))
        _dump(os.path.join(folder, "meta"), {
            "fine_label_names": [f"fine_{i}".encode() for i in range(100)],
            "coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
        })
        return folder
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    for number, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _dump(os.path.join(folder, f"data_batch_{number}"), _batch(rng, len(part), 10, "labels"))
    _dump(os.path.join(folder, "test_batch"), _batch(rng, n_test, 10, "labels"))
    _dump(os.path.join(folder, "batches.meta"), {
        "label_names": [name.encode() for name in CINIC_CLASSES], "num_vis": 3072,
        "num_cases_per_batch": max(1, n_train // 5),
    })
    return folder


def trust_fake_cifar(monkeypatch, root):
    """Let the real CIFAR loader accept the fake files under `root`: their md5 sums replace the published
    ones in dataset.cifar.PUBLISHED_MD5 for the duration of the test (the check itself still runs)."""
    from dataset.cifar import PUBLISHED_MD5, file_md5
    for key in PUBLISHED_MD5:
        path = os.path.join(root, *key.split("/"))
        if os.path.isfile(path):
            monkeypatch.setitem(PUBLISHED_MD5, key, file_md5(path))


def write_fake_cinic(root, n_per_class=3, seed=0, splits=("train", "valid", "test")):
    """Write `root/CINIC-10/<split>/<class>/*.png` (32x32 RGB); returns the CINIC-10 path."""
    rng = np.random.RandomState(seed)
    base = os.path.join(root, "CINIC-10")
    for split in splits:
        for class_name in CINIC_CLASSES:
            class_dir = os.path.join(base, split, class_name)
            os.makedirs(class_dir, exist_ok=True)
            for i in range(n_per_class):
                pixels = rng.randint(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(class_dir, f"{split}_{i}.png"))
    return base


def write_idx(path, array):
    """Write uint8 `array` (1 or 3 dimensions) as an IDX file (gzipped when `path` ends with .gz)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fake_idx_set(folder, prefix, num_classes, n_train_per_class, n_test_per_class, gz=True, seed=0):
    """The four IDX files `<prefix>{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` of 28x28 noise images in
    `folder`, every class `n_*_per_class` times in random order; returns {"train": (images, labels), "test": ...}."""
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    written = {}
    for split, part, per_class in (("train", "train", n_train_per_class), ("test", "t10k", n_test_per_class)):
        labels = np.array(_labels(rng, per_class * num_classes, num_classes), dtype=np.uint8)
        images = rng.randint(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(os.path.join(folder, f"{prefix}{part}-images-idx3-ubyte{suffix}"), images)
        write_idx(os.path.join(folder, f"{prefix}{part}-labels-idx1-ubyte{suffix}"), labels)
        written[split] = images, labels
    return written


def write_fake_fashion_mnist(root, n_train_per_class=3, n_test_per_class=2, gz=True, seed=0):
    """Fashion-MNIST in torchvision's layout, `root/FashionMNIST/raw/`; returns write_fake_idx_set's arrays."""
    folder = os.path.join(root, "FashionMNIST", "raw")
    return write_fake_idx_set(folder, "", 10, n_train_per_class, n_test_per_class, gz, seed)


def write_fake_emnist(root, n_train_per_class=1, n_test_per_class=1, gz=False, seed=0):
    """EMNIST byclass (62 classes) in torchvision's layout, `root/EMNIST/raw/emnist-byclass-*`."""
    folder = os.path.join(root, "EMNIST", "raw")
    return write_fake_idx_set(folder, "emnist-byclass-", 62, n_train_per_class, n_test_per_class, gz, seed)


def fake_wnid(label):
    """A WordNet-like id; the labels' order differs from the ids' sorted order, as in the real wnids.txt."""
    return f"n{(label * 7919) % 1000:08d}"


def write_fake_tinyimagenet(root, n_train=1, n_val=1, num_classes=200, seed=0):
    """`root/tiny-imagenet-200/` as distributed: wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and
    val/val_annotations.txt. Every image of the class ranked r in sorted wnid order is the flat colour
    (r, 255 - r, 128) at 64x64, so a loader's labels can be checked from its pixels; returns the folder."""
    rng = np.random.RandomState(seed)
    base = os.path.join(root, "tiny-imagenet-200")
    wnids = [fake_wnid(label) for label in range(num_classes)]
    rank = {wnid: r for r, wnid in enumerate(sorted(wnids))}
    os.makedirs(os.path.join(base, "val", "images"), exist_ok=True)
    with open(os.path.join(base, "wnids.txt"), "w") as handle:
        handle.write("".join(f"{wnid}\n" for wnid in rng.permutation(wnids)))

    def save(path, wnid):
        r = rank[wnid]
        Image.fromarray(np.full((64, 64, 3), (r, 255 - r, 128), dtype=np.uint8)).save(path, "JPEG", quality=95)

    for wnid in wnids:
        folder = os.path.join(base, "train", wnid, "images")
        os.makedirs(folder, exist_ok=True)
        for i in range(n_train):
            save(os.path.join(folder, f"{wnid}_{i}.JPEG"), wnid)
    lines = []
    for i, wnid in enumerate(wnids * n_val):
        name = f"val_{i}.JPEG"
        save(os.path.join(base, "val", "images", name), wnid)
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
    with open(os.path.join(base, "val", "val_annotations.txt"), "w") as handle:
        handle.write("".join(lines))
    return base
