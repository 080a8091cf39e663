"""CIFAR-10/100 from torchvision's on-disk pickles, each checked against its published md5 sum first.

Unpickling runs whatever code the file names, so a planted `cifar-100-python/train` would run
under every script that reads CIFAR. The sums below are the ones the CIFAR page and torchvision's
CIFAR10/CIFAR100 classes publish; a file whose sum differs is refused before it is unpickled.
"""
import hashlib
import os
import pickle

import numpy as np

from dataset.registry import DataNotFoundError, DatasetInfo, register_dataset

# name -> (folder, files per split, label key, meta file, archive name)
LAYOUT = {
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]},
                 "fine_labels", "meta", "cifar-100-python.tar.gz"),
    "cifar10": ("cifar-10-batches-py",
                {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                "labels", "batches.meta", "cifar-10-python.tar.gz"),
}


# "<folder>/<file>" -> md5 of the published file (the same table as torchvision's CIFAR10 / CIFAR100).
PUBLISHED_MD5 = {
    "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
    "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
    "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
}


def file_md5(path):
    """The md5 of a file's bytes, as the published sums give it."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def read_checked(root, folder, file_name, archive):
    """`read_pickle` of `root/folder/file_name` once its md5 equals the published one, else DataNotFoundError."""
    path = os.path.join(root, folder, file_name)
    expected = PUBLISHED_MD5[f"{folder}/{file_name}"]
    found = file_md5(path)
    if found != expected:
        raise DataNotFoundError(
            f"{path} is damaged or is not the published CIFAR file (md5 {found}, expected {expected}), so it "
            f"was not read: unpickling an unknown file can run code. Delete {os.path.join(root, folder)} and "
            f"download again (torchvision does it when the network allows), or get {archive} from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {root}.")
    return read_pickle(path)


def read_pickle(path):
    """One CIFAR pickle as a dict with str keys (the real files are Python 2 pickles); unchecked: see read_checked."""
    with open(path, "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in raw.items()}


def missing_files(name, root):
    """Paths of `name` under `root` that do not exist (empty when all are there)."""
    folder, split_files, _, meta, _ = LAYOUT[name]
    names = [meta] + [f for files in split_files.values() for f in files]
    return [p for p in (os.path.join(root, folder, n) for n in names) if not os.path.isfile(p)]


def try_download(name, root):
    """Let torchvision download and extract the archive; False when that fails."""
    from torchvision import datasets

    cls = datasets.CIFAR100 if name == "cifar100" else datasets.CIFAR10
    try:
        cls(root=root, train=True, download=True)
    except Exception:  # no network, proxy, disk full: reported as missing data below
        return False
    return True


def load_cifar(info, split, root, download):
    """(data uint8 (N, 32, 32, 3) HWC, targets int64 (N,)) of one CIFAR split."""
    name = info.name
    folder, split_files, label_key, _, archive = LAYOUT[name]
    if missing_files(name, root) and download:
        try_download(name, root)
    if missing_files(name, root):
        expected = os.path.join(root, folder)
        raise DataNotFoundError(
            f"The {name} data set was not found at {expected} (missing: "
            f"{', '.join(os.path.basename(p) for p in missing_files(name, root))}). It is "
            f"downloaded automatically by torchvision when the network allows, or get "
            f"{archive} from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
            f"into {root}."
        )
    images, labels = [], []
    for file_name in split_files[split]:
        entry = read_checked(root, folder, file_name, archive)
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
    data = np.ascontiguousarray(np.concatenate(images).transpose(0, 2, 3, 1))
    return data, np.concatenate(labels)


register_dataset(DatasetInfo("cifar100", 100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), load=load_cifar))
register_dataset(DatasetInfo("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), load=load_cifar))
