"""Tiny data sets written in the real on-disk formats, for tests that need no download."""
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
