"""One entry point for every data set of the project.

`get_dataset(name, split, variant, augment, ...)` returns an array-backed dataset
(`data` uint8 (N, 32, 32, 3), `targets` int64 (N,)) whose items are normalised
float images (3, 32, 32) with their label, plus the index ("instance") and the
contrast indices ("contrast"); `get_loader` wraps it in a DataLoader.
"""
from dataset.cifar import load_cifar
from dataset.cinic import load_cinic
from dataset.device_loader import DeviceLoader, device_loader_for, eval_loader, fits_on_device
from dataset.loader import get_loader
from dataset.registry import (
    DATASETS, DataNotFoundError, DatasetInfo, check_choice, dataset_names, get_info, same_classes,
)
from dataset.small import load_digits_set, load_stl10, load_svhn
from dataset.transforms import AUGMENTS, build_transform
from dataset.variants import MODES, VARIANTS, wrap_arrays

# name -> function(info, split, root, download) -> (data, targets)
LOADERS = {
    "cifar100": load_cifar,
    "cifar10": load_cifar,
    "cinic10": load_cinic,
    "digits_a": load_digits_set,
    "digits_b": load_digits_set,
    "svhn": load_svhn,
    "stl10": load_stl10,
}


def get_dataset(name, split="train", variant="plain", augment="none", root="./data",
                k=4096, mode="exact", download=True):
    """The `split` of data set `name` as a `torch.utils.data.Dataset`.

    variant: "plain" -> (img, target); "instance" -> (img, target, index);
    "contrast" -> (img, target, index, contrast_idx (k+1,) int64), negatives drawn
    from other classes ("exact") or any other sample ("relax").
    augment: "standard", "none" or "auto" (see `build_transform`).
    Raises UserError for unknown names and DataNotFoundError for missing files.
    """
    info = get_info(name, split)
    check_choice("dataset variant", variant, VARIANTS)
    check_choice("contrast mode", mode, MODES)
    transform = build_transform(info, augment)
    data, targets = LOADERS[name](info, split, root, download)
    return wrap_arrays(data, targets, info, transform, variant, k, mode)


__all__ = [
    "AUGMENTS", "DATASETS", "DataNotFoundError", "DatasetInfo", "DeviceLoader", "MODES", "VARIANTS",
    "build_transform", "dataset_names", "device_loader_for", "eval_loader", "fits_on_device", "get_dataset", "get_info",
    "get_loader", "same_classes",
]
