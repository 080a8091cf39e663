"""One entry point for every data set of the project.

Each data set is one `register_dataset(DatasetInfo(..., load=...))` beside the function that
reads it (dataset/cifar.py, cinic.py, mnist.py, small.py, tinyimagenet.py); importing this package
registers them all.

`get_dataset(name, split, variant, augment, ...)` returns an array-backed dataset
(`data` uint8 (N, 32, 32, 3), `targets` int64 (N,)) whose items are normalised
float images (3, 32, 32) with their label, plus the index ("instance") and the
contrast indices ("contrast"); `get_loader` wraps it in a DataLoader.
"""
from dataset import cifar, cinic, mnist, small, tinyimagenet  # noqa: F401  (importing them registers their data sets)
from dataset.device_loader import DeviceLoader, device_loader_for, eval_loader, fits_on_device
from dataset.loader import get_loader
from dataset.registry import (
    DATASETS, DataNotFoundError, DatasetInfo, check_choice, dataset_names, get_info, register_dataset, same_classes,
)
from dataset.transforms import AUGMENTS, build_transform
from dataset.variants import MODES, VARIANTS, first_per_class, wrap_arrays


def get_dataset(name, split="train", variant="plain", augment="none", root="./data",
                k=4096, mode="exact", download=True, per_class=None,
                per_class_flag="--train_per_class"):
    """The `split` of data set `name` as a `torch.utils.data.Dataset`.

    variant: "plain" -> (img, target); "instance" -> (img, target, index);
    "contrast" -> (img, target, index, contrast_idx (k+1,) int64), negatives drawn
    from other classes ("exact") or any other sample ("relax").
    augment: "standard", "none" or "auto" (see `build_transform`).
    per_class: keep only the first `per_class` images of each class, in the files' order (None: all);
    `per_class_flag` is the flag that asked, for the message when a class has fewer.
    Raises UserError for unknown names and DataNotFoundError for missing files.
    """
    info = get_info(name, split)
    check_choice("dataset variant", variant, VARIANTS)
    check_choice("contrast mode", mode, MODES)
    transform = build_transform(info, augment)
    data, targets = info.load(info, split, root, download)
    if per_class is not None:
        data, targets = first_per_class(data, targets, per_class, f"{name}'s {split} split", per_class_flag)
    return wrap_arrays(data, targets, info, transform, variant, k, mode)


__all__ = [
    "AUGMENTS", "DATASETS", "DataNotFoundError", "DatasetInfo", "DeviceLoader", "MODES", "VARIANTS",
    "build_transform", "dataset_names", "device_loader_for", "eval_loader", "fits_on_device", "get_dataset", "get_info",
    "get_loader", "register_dataset", "same_classes",
]
