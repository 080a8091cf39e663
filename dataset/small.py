"""Digits (scikit-learn, embedded) and SVHN / STL-10 (torchvision files, never downloaded)."""
import os

import numpy as np

from dataset.registry import DataNotFoundError, DatasetInfo, register_dataset
from dataset.transforms import resize_to_32

DIGIT_CLASSES = {"digits_a": range(0, 5), "digits_b": range(5, 10)}
TRAIN_FRACTION = 0.8


def digits_split_indices(labels):
    """{"train": idx, "test": idx} over all 10 digits: 80/20 per class, RandomState(0)."""
    rng = np.random.RandomState(0)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        cut = int(round(TRAIN_FRACTION * len(members)))
        train.append(members[:cut])
        test.append(members[cut:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def load_digits_set(info, split, root, download):
    """(data uint8 (N, 32, 32, 3), targets int64 (N,) in 0..4); `root` is ignored.

    scikit-learn's 8x8 digits (values 0..16) scaled to 0..255, resized
    bilinearly to 32x32 and replicated to three channels.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    chosen = digits_split_indices(labels)[split]
    classes = DIGIT_CLASSES[info.name]
    chosen = chosen[np.isin(labels[chosen], list(classes))]
    grey = digits.images[chosen].astype(np.float32) * (255.0 / 16.0)
    rgb = np.repeat(grey[:, None], 3, axis=1)
    return resize_to_32(rgb), labels[chosen] - classes.start


def open_torchvision(cls, name, expected, hint, **kwargs):
    """Instantiate a torchvision data set with download=False; DataNotFoundError if absent.

    torchvision also checks md5 sums, so a damaged file reads as missing too.
    """
    message = (f"The {name} data set was not found (or failed its checksum) at {expected}. "
               f"It is never downloaded automatically; {hint}")
    if not os.path.exists(expected):
        raise DataNotFoundError(message)
    try:
        return cls(download=False, **kwargs)
    except RuntimeError as err:
        raise DataNotFoundError(message) from err


def load_svhn(info, split, root, download):
    """SVHN via torchvision (labels 0..9) as HWC uint8 arrays."""
    from torchvision.datasets import SVHN

    source = open_torchvision(
        SVHN, "SVHN", os.path.join(root, f"{split}_32x32.mat"),
        f"download {split}_32x32.mat from http://ufldl.stanford.edu/housenumbers/ into {root}.",
        root=root, split=split)
    return np.ascontiguousarray(source.data.transpose(0, 2, 3, 1)), source.labels.astype(np.int64)


def load_stl10(info, split, root, download):
    """STL-10 labelled splits via torchvision, 96x96 resized to 32x32."""
    from torchvision.datasets import STL10

    source = open_torchvision(
        STL10, "STL-10", os.path.join(root, "stl10_binary", f"{split}_X.bin"),
        f"download stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ and "
        f"extract it into {root}.", root=root, split=split)
    return resize_to_32(source.data), source.labels.astype(np.int64)


# Digits statistics: computed once from the train split of each set
# (scikit-learn's load_digits, 32x32 bilinear, grey so R = G = B).
register_dataset(DatasetInfo("digits_a", 5, (0.3049, 0.3049, 0.3049), (0.3266, 0.3266, 0.3266), load=load_digits_set))
register_dataset(DatasetInfo("digits_b", 5, (0.3055, 0.3055, 0.3055), (0.3205, 0.3205, 0.3205), load=load_digits_set))
register_dataset(DatasetInfo("svhn", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), load=load_svhn))
register_dataset(DatasetInfo("stl10", 10, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), load=load_stl10))
