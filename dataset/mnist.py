"""Fashion-MNIST (and its class-split halves fashion_a / fashion_b) and EMNIST from their IDX files.

The files are the published `train-images-idx3-ubyte` etc., plain or gzipped, in torchvision's
layout (`<data_folder>/FashionMNIST/raw/`, `<data_folder>/EMNIST/raw/`), where a run of the original
code leaves them; Fashion-MNIST is also read from the folder of Debian's `dataset-fashion-mnist`
package. Every header is checked (magic number, dimensions, byte count) before the pixels are used,
so a damaged or cut-off file stops with one paragraph naming it instead of giving a short data set.
Images are resized 28x28 -> 32x32 with PIL's bilinear filter and the grey replicated to three
channels, as the original's `Resize((32, 32))` + `torch.cat([x, x, x])`.
"""
import gzip
import os
import zlib

import numpy as np
from PIL import Image

from dataset.registry import DataNotFoundError, DatasetInfo, register_dataset

IDX_UNSIGNED_BYTE = 0x08            # the IDX type code of uint8 data (third byte of the magic number)
SIDE = 28
# Where `apt-get install dataset-fashion-mnist` puts the four .gz files (`dpkg -L dataset-fashion-mnist`).
DEBIAN_FASHION_FOLDER = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_HALVES = {"fashion-mnist": range(0, 10), "fashion_a": range(0, 5), "fashion_b": range(5, 10)}
FASHION_HINT = ("Get the four files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                "t10k-labels-idx1-ubyte, plain or .gz) from https://github.com/zalandoresearch/fashion-mnist into "
                "{raw}, where torchvision's FashionMNIST(download=True) also puts them, or install Debian's package "
                "(apt-get install dataset-fashion-mnist), which puts them in {debian}.")
EMNIST_HINT = ("Download gzip.zip from https://www.nist.gov/itl/products-and-services/emnist-dataset and extract "
               "the emnist-byclass-*-ubyte.gz files from its gzip/ folder into {raw} (torchvision's "
               "EMNIST(split='byclass', download=True) leaves them there, unzipped).")


def idx_error(path, problem, hint):
    return DataNotFoundError(f"{path} is not a usable IDX file: {problem}. Delete it and get the file again. {hint}")


def read_idx(path, ndim, hint):
    """The uint8 array of the IDX file `path` (plain or .gz) with `ndim` dimensions; DataNotFoundError naming
    the file when it cannot be decompressed, has another magic number, or holds more or fewer bytes than its
    header announces (a truncated download)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as err:     # BadGzipFile is an OSError; a cut-off .gz an EOFError
        raise idx_error(path, f"it cannot be read ({err})", hint) from None
    header = 4 * (ndim + 1)
    expected_magic = (IDX_UNSIGNED_BYTE << 8) | ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != expected_magic:
        found = "no magic number" if magic is None else f"magic number 0x{magic:08x}"
        raise idx_error(path, f"it has {found}, expected 0x{expected_magic:08x} (unsigned bytes in {ndim} "
                              f"dimension{'s' if ndim > 1 else ''})", hint)
    if len(raw) < header:
        raise idx_error(path, f"its header is cut off ({len(raw)} of {header} bytes)", hint)
    shape = tuple(int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(1, ndim + 1))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise idx_error(path, f"its header announces {' x '.join(map(str, shape))} = {size} bytes of data but it "
                              f"holds {len(raw) - header} (truncated or damaged)", hint)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_file(folders, name):
    """The first of `folder/name`, `folder/name.gz` over `folders` that exists, else None."""
    for folder in folders:
        for candidate in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
            if os.path.isfile(candidate):
                return candidate
    return None


def read_idx_pair(folders, images_name, labels_name, num_classes, hint):
    """(images uint8 (N, 28, 28), labels int64 (N,)) from the first folder of `folders` that holds both files
    (plain or .gz); DataNotFoundError when none does, or when the two disagree or are out of range."""
    for folder in folders:
        images_path, labels_path = find_file([folder], images_name), find_file([folder], labels_name)
        if images_path and labels_path:
            break
    else:
        return None
    images = read_idx(images_path, 3, hint)
    labels = read_idx(labels_path, 1, hint)
    if images.shape[1:] != (SIDE, SIDE):
        raise idx_error(images_path, f"its images are {images.shape[1]}x{images.shape[2]}, expected "
                                     f"{SIDE}x{SIDE}", hint)
    if len(images) != len(labels):
        raise idx_error(labels_path, f"it holds {len(labels)} labels for the {len(images)} images of "
                                     f"{images_path}", hint)
    if len(labels) and labels.max() >= num_classes:
        raise idx_error(labels_path, f"it holds label {labels.max()}, but the data set has {num_classes} "
                                     f"classes (0 .. {num_classes - 1})", hint)
    return images, labels.astype(np.int64)


def grey_to_rgb32(images):
    """uint8 (N, 28, 28) grey -> uint8 (N, 32, 32, 3): PIL bilinear resize, the grey in every channel."""
    out = np.empty((len(images), 32, 32, 3), dtype=np.uint8)
    for row, image in enumerate(images):
        out[row] = np.asarray(Image.fromarray(image).resize((32, 32), Image.BILINEAR))[:, :, None]
    return out


def idx_names(prefix, split):
    """The published IDX file names of one split: (images, labels)."""
    part = "train" if split == "train" else "t10k"
    return f"{prefix}{part}-images-idx3-ubyte", f"{prefix}{part}-labels-idx1-ubyte"


def load_fashion(info, split, root, download):
    """(data uint8 (N, 32, 32, 3), targets int64 (N,)) of a Fashion-MNIST split, keeping the classes of
    `info.name` (fashion_a: 0-4, fashion_b: 5-9, relabelled from 0). Never downloads (`download` ignored)."""
    raw = os.path.join(root, "FashionMNIST", "raw")
    hint = FASHION_HINT.format(raw=raw, debian=DEBIAN_FASHION_FOLDER)
    images_name, labels_name = idx_names("", split)
    found = read_idx_pair([raw, DEBIAN_FASHION_FOLDER], images_name, labels_name, 10, hint)
    if found is None:
        raise DataNotFoundError(f"The Fashion-MNIST data set was not found: {images_name} and {labels_name} (plain "
                                f"or .gz) are in neither {raw} nor {DEBIAN_FASHION_FOLDER}. {hint}")
    images, labels = found
    classes = FASHION_HALVES[info.name]
    keep = np.flatnonzero((labels >= classes.start) & (labels < classes.stop))
    return grey_to_rgb32(images[keep]), labels[keep] - classes.start


def load_emnist(info, split, root, download):
    """(data uint8 (N, 32, 32, 3), targets int64 (N,) in 0..61) of EMNIST's byclass split, in the files'
    orientation (transposed, as torchvision and so the original read them). Never downloads."""
    raw = os.path.join(root, "EMNIST", "raw")
    hint = EMNIST_HINT.format(raw=raw)
    images_name, labels_name = idx_names("emnist-byclass-", split)
    found = read_idx_pair([raw, os.path.join(raw, "gzip")], images_name, labels_name, info.num_classes, hint)
    if found is None:
        raise DataNotFoundError(f"The EMNIST data set was not found: {images_name} and {labels_name} (plain or "
                                f".gz) are not in {raw}. It is never downloaded automatically. {hint}")
    images, labels = found
    return grey_to_rgb32(images), labels


# Statistics of each train split as loaded here (32x32, PIL bilinear; grey, so R = G = B), from the real files:
# python -m scripts.dataset_stats fashion-mnist fashion_a fashion_b
register_dataset(DatasetInfo("fashion-mnist", 10, (0.2856,) * 3, (0.3385,) * 3, load=load_fashion))
register_dataset(DatasetInfo("fashion_a", 5, (0.3132,) * 3, (0.3481,) * 3, load=load_fashion))
register_dataset(DatasetInfo("fashion_b", 5, (0.2579,) * 3, (0.3263,) * 3, load=load_fashion))
# EMNIST byclass: the commonly used statistics of its 28x28 train images (docs/differences.md);
# python -m scripts.dataset_stats emnist recomputes them at 32x32 from the files.
register_dataset(DatasetInfo("emnist", 62, (0.1736,) * 3, (0.3317,) * 3, load=load_emnist))
