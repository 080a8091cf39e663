"""CIFAR-10/100 from torchvision's on-disk pickles, read without md5 checks."""
import os
import pickle

import numpy as np

from dataset.registry import DataNotFoundError

# name -> (folder, files per split, label key, meta file, archive name)
LAYOUT = {
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]},
                 "fine_labels", "meta", "cifar-100-python.tar.gz"),
    "cifar10": ("cifar-10-batches-py",
                {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                "labels", "batches.meta", "cifar-10-python.tar.gz"),
}


def read_pickle(path):
    """One CIFAR pickle as a dict with str keys (the real files are Python 2 pickles)."""
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
        entry = read_pickle(os.path.join(root, folder, file_name))
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
    data = np.ascontiguousarray(np.concatenate(images).transpose(0, 2, 3, 1))
    return data, np.concatenate(labels)
