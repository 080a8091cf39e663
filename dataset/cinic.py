"""CINIC-10 from its PNG folders, decoded once into a memory-mapped uint8 cache keyed by the images' names,
sizes and modification times (`decode_cached`, which Tiny ImageNet's JPEG folders use too)."""
import hashlib
import json
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
    """Sorted (path, label) pairs of every PNG under `split_dir/<class>/`; a missing class folder is a
    `DataNotFoundError` naming it."""
    missing = [c for c in CLASSES if not os.path.isdir(os.path.join(split_dir, c))]
    if missing:
        raise DataNotFoundError(
            f"The CINIC-10 split {split_dir} lacks the class folder{'s' * (len(missing) > 1)} "
            f"{', '.join(os.path.join(split_dir, c) for c in missing)} (each of {', '.join(CLASSES)} needs one, "
            f"holding its PNGs). Extract CINIC-10.tar.gz from https://datashare.ed.ac.uk/handle/10283/3192 "
            f"again so that every class folder exists.")
    items = []
    for label, class_name in enumerate(CLASSES):
        class_dir = os.path.join(split_dir, class_name)
        names = sorted(n for n in os.listdir(class_dir) if n.lower().endswith(".png"))
        items.extend((os.path.join(class_dir, n), label) for n in names)
    return items


def decode(items):
    """Image paths -> uint8 (N, 32, 32, 3) RGB and int64 (N,) labels; an image that cannot be decoded is a
    `DataNotFoundError` naming it."""
    data = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    for row, (path, _) in enumerate(items):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (32, 32):
                    img = img.resize((32, 32), Image.BILINEAR)
                data[row] = np.asarray(img)
        except (OSError, ValueError, SyntaxError) as err:   # PIL's errors for empty, cut short or non-PNG files
            raise DataNotFoundError(
                f"The image {path} could not be read ({type(err).__name__}: {err}); it is empty, cut short or "
                f"not an image file. Replace it from the data set's archive (CINIC-10.tar.gz, "
                f"tiny-imagenet-200.zip) or delete it.") from None
    return data, np.array([label for _, label in items], dtype=np.int64)


def files_key(items):
    """The SHA-1 of the PNGs' names, sizes and modification times: it changes when any image is added,
    removed, replaced or edited, so a decode cache is never reused for other images."""
    listing = []
    for path, label in items:
        stat = os.stat(path)
        listing.append([os.path.basename(path), label, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha1(json.dumps(listing).encode()).hexdigest()


def save_atomic(path, array):
    """np.save to a temporary file beside `path`, then rename it over `path`."""
    atomic_write(path, lambda out: np.save(out, array))


def cache_paths(base, split):
    """(images cache, labels cache, key of the images they were decoded from) of `split` in the data set's
    folder `base`."""
    return (os.path.join(base, f"{split}_uint8.npy"),
            os.path.join(base, f"{split}_labels.npy"),
            os.path.join(base, f"{split}_files.sha1"))


def load_cache(base, split, count, key):
    """The memory-mapped cache when it was decoded from the images of `key` (`files_key`) and holds `count`
    images, else None."""
    images_path, labels_path, key_path = cache_paths(base, split)
    try:
        with open(key_path, encoding="ascii") as f:
            if f.read().strip() != key:
                return None
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
    rebuilt when any PNG's name, size or modification time differs from those it was decoded from.
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
    cache in `base` when it was decoded from these very files, else decoded and cached there (in memory when
    `base` is not writable)."""
    key = files_key(items)
    cached = load_cache(base, split, len(items), key)
    if cached is not None:
        return cached
    data, targets = decode(items)
    images_path, labels_path, key_path = cache_paths(base, split)
    try:
        if os.path.exists(key_path):
            os.remove(key_path)             # first: a kill while the arrays are rewritten leaves no valid key
        save_atomic(images_path, data)
        save_atomic(labels_path, targets)
        atomic_write(key_path, lambda out: out.write(key.encode()))
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
