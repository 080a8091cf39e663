"""CINIC-10 from its PNG folders, decoded once into a memory-mapped uint8 cache (`decode_cached`, which
Tiny ImageNet's JPEG folders use too)."""
import os
import warnings

import numpy as np
from PIL import Image

from dataset.registry import DataNotFoundError, DatasetInfo, register_dataset
from helper.core.checkpoint import atomic_write

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
FOLDER = "CINIC-10"
_warned_read_only = set()


def list_images(split_dir):
    """Sorted (path, label) pairs of every PNG under `split_dir/<class>/`."""
    items = []
    for label, class_name in enumerate(CLASSES):
        class_dir = os.path.join(split_dir, class_name)
        if not os.path.isdir(class_dir):
            return None
        names = sorted(n for n in os.listdir(class_dir) if n.lower().endswith(".png"))
        items.extend((os.path.join(class_dir, n), label) for n in names)
    return items


def decode(items):
    """PNG paths -> uint8 (N, 32, 32, 3) RGB and int64 (N,) labels."""
    data = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    for row, (path, _) in enumerate(items):
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (32, 32):
                img = img.resize((32, 32), Image.BILINEAR)
            data[row] = np.asarray(img)
    return data, np.array([label for _, label in items], dtype=np.int64)


def save_atomic(path, array):
    """np.save to a temporary file beside `path`, then rename it over `path`."""
    atomic_write(path, lambda out: np.save(out, array))


def cache_paths(base, split):
    """(images cache, labels cache) of `split` in the data set's folder `base`."""
    return (os.path.join(base, f"{split}_uint8.npy"),
            os.path.join(base, f"{split}_labels.npy"))


def load_cache(base, split, count):
    """The memory-mapped cache when it holds exactly `count` images, else None."""
    images_path, labels_path = cache_paths(base, split)
    try:
        data = np.load(images_path, mmap_mode="r", allow_pickle=False)
        targets = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if len(data) != count or len(targets) != count or data.shape[1:] != (32, 32, 3):
        return None
    return data, targets


def load_cinic(info, split, root, download):
    """(data uint8 (N, 32, 32, 3), targets int64 (N,)) of one CINIC-10 split.

    Never downloads (`download` is ignored): the archive is 750 MB. The cache is
    rebuilt when the folder's PNG count differs from it.
    """
    split_dir = os.path.join(root, FOLDER, split)
    items = list_images(split_dir) if os.path.isdir(split_dir) else None
    if not items:
        raise DataNotFoundError(
            f"The CINIC-10 data set was not found at {split_dir} (expected "
            f"{split_dir}/<class>/*.png for the classes {', '.join(CLASSES)}). It is never "
            f"downloaded automatically; download CINIC-10.tar.gz from "
            f"https://datashare.ed.ac.uk/handle/10283/3192 and extract it so that "
            f"{os.path.join(root, FOLDER)}/{{train,valid,test}}/<class>/*.png exist."
        )
    return decode_cached(os.path.join(root, FOLDER), split, items)


def decode_cached(base, split, items):
    """(data uint8 (N, 32, 32, 3) memory-mapped, targets int64 (N,)) of the (path, label) `items`, from the
    cache in `base` when it holds as many images, else decoded and cached there (in memory when `base` is
    not writable)."""
    cached = load_cache(base, split, len(items))
    if cached is not None:
        return cached
    data, targets = decode(items)
    images_path, labels_path = cache_paths(base, split)
    try:
        save_atomic(images_path, data)
        save_atomic(labels_path, targets)
    except OSError as err:
        if (base, split) not in _warned_read_only:
            _warned_read_only.add((base, split))
            warnings.warn(f"Cannot write the {split} image cache in {base} ({err}); "
                          f"decoding the images in memory on every load.")
        return data, targets
    return np.load(images_path, mmap_mode="r", allow_pickle=False), targets


# The original code evaluates CINIC-10 transfer on its "valid" split.
register_dataset(DatasetInfo(
    "cinic10",
    10,
    (0.47889522, 0.47227842, 0.43047404),
    (0.24205776, 0.23828046, 0.25874835),
    splits=("train", "valid", "test"),
    eval_split="valid",
    classes_of="cifar10",     # CIFAR-10's ten classes, in the same (alphabetical) order
    load=load_cinic,
))
