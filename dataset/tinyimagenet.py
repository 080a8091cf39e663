"""Tiny ImageNet (200 ImageNet classes, 64x64 JPEGs) from its distributed folder tree, resized to 32x32 for the
model zoo and decoded once into a memory-mapped uint8 cache beside the images (as CINIC-10).

    tiny-imagenet-200/wnids.txt                        the 200 class ids (WordNet ids), one a line
    tiny-imagenet-200/train/<wnid>/images/*.JPEG       500 per class
    tiny-imagenet-200/val/images/*.JPEG                10,000, labelled by val/val_annotations.txt
                                                       (file name, wnid, bounding box; tab-separated)

The class index is the wnid's rank in sorted order, as torchvision's ImageFolder gives it over train/.
The test images carry no labels and are not offered; `val` is the evaluation split.
"""
import os

from dataset.cinic import decode_cached
from dataset.registry import DataNotFoundError, DatasetInfo, register_dataset

FOLDER = "tiny-imagenet-200"
NUM_CLASSES = 200
HINT = ("It is never downloaded automatically; download tiny-imagenet-200.zip from "
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip and extract it into {root}.")


def jpegs(folder):
    """Sorted names of the JPEG files in `folder`."""
    return sorted(name for name in os.listdir(folder) if name.lower().endswith((".jpeg", ".jpg")))


def damaged(base, problem):
    return DataNotFoundError(f"The Tiny ImageNet folder {base} is incomplete or damaged: {problem}. Extract "
                             f"tiny-imagenet-200.zip again (http://cs231n.stanford.edu/tiny-imagenet-200.zip).")


def class_ids(base, root):
    """The sorted wnids of wnids.txt; DataNotFoundError when the file is absent or does not list 200 classes."""
    path = os.path.join(base, "wnids.txt")
    if not os.path.isfile(path):
        raise DataNotFoundError(
            f"The Tiny ImageNet data set was not found at {base} (expected wnids.txt, "
            f"train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt). "
            + HINT.format(root=root))
    with open(path) as handle:
        wnids = sorted({line.strip() for line in handle if line.strip()})
    if len(wnids) != NUM_CLASSES:
        raise damaged(base, f"{path} lists {len(wnids)} classes, expected {NUM_CLASSES}")
    return wnids


def train_items(base, wnids):
    """(path, label) of every train JPEG; a class folder that is missing or empty is named."""
    items = []
    for label, wnid in enumerate(wnids):
        folder = os.path.join(base, "train", wnid, "images")
        names = jpegs(folder) if os.path.isdir(folder) else []
        if not names:
            raise damaged(base, f"the class folder {folder} is missing or holds no JPEG images")
        items.extend((os.path.join(folder, name), label) for name in names)
    return items


def val_items(base, wnids):
    """(path, label) of every val JPEG, labelled by val_annotations.txt; an image without a label, a label of
    an unknown class or of a missing image is named."""
    folder, annotations = os.path.join(base, "val", "images"), os.path.join(base, "val", "val_annotations.txt")
    if not (os.path.isdir(folder) and os.path.isfile(annotations)):
        raise damaged(base, f"{folder} or {annotations} is missing")
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    labels = {}
    with open(annotations) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or fields[1] not in label_of:
                raise damaged(base, f"line {number} of {annotations} does not name an image and one of the "
                                    f"classes of wnids.txt: {line.strip()!r}")
            labels[fields[0]] = label_of[fields[1]]
    names = jpegs(folder)
    unlabelled = sorted(set(names) - set(labels))
    missing = sorted(set(labels) - set(names))
    if unlabelled or missing:
        problem = (f"{len(unlabelled)} images of {folder} have no line in {annotations} (first: {unlabelled[0]})"
                   if unlabelled else
                   f"{len(missing)} images of {annotations} are not in {folder} (first: {missing[0]})")
        raise damaged(base, problem)
    return [(os.path.join(folder, name), labels[name]) for name in names]


def load_tinyimagenet(info, split, root, download):
    """(data uint8 (N, 32, 32, 3), targets int64 (N,) in 0..199) of the train or val split. Never downloads
    (`download` is ignored): the archive is 237 MB."""
    base = os.path.join(root, FOLDER)
    wnids = class_ids(base, root)
    items = train_items(base, wnids) if split == "train" else val_items(base, wnids)
    return decode_cached(base, split, items)


# The commonly used statistics of Tiny ImageNet's 64x64 train images (docs/differences.md);
# python -m scripts.dataset_stats tinyimagenet recomputes them at 32x32 from the files.
register_dataset(DatasetInfo("tinyimagenet", NUM_CLASSES, (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262),
                             splits=("train", "val"), eval_split="val", load=load_tinyimagenet))
