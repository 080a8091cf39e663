"""Array-backed datasets: plain, instance (with index) and contrast (with negatives)."""
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from dataset.registry import check_choice
from helper.core.distributed import get_rank, get_world_size, is_distributed
from helper.core.errors import UserError

VARIANTS = ("plain", "instance", "contrast")
MODES = ("exact", "relax")


class ArrayDataset(Dataset):
    """Images held as one uint8 array; items are `(img, target)`.

    data: uint8 (N, 32, 32, 3), HWC like torchvision CIFAR (may be memory-mapped);
    targets: int64 (N,) labels 0..C-1; img: float tensor (3, 32, 32) after `transform`.
    """

    def __init__(self, data, targets, info, transform):
        if len(data) != len(targets):
            raise ValueError(f"{len(data)} images but {len(targets)} labels")
        self.data = data
        self.targets = np.asarray(targets, dtype=np.int64)
        self.info = info
        self.num_classes = info.num_classes
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def image(self, index):
        """The transformed image `index`: float tensor (3, 32, 32)."""
        return self.transform(Image.fromarray(np.asarray(self.data[index])))

    def __getitem__(self, index):
        return self.image(index), int(self.targets[index])


class InstanceDataset(ArrayDataset):
    """Items are `(img, target, index)`: the index names the instance (memory banks)."""

    def __getitem__(self, index):
        return self.image(index), int(self.targets[index]), index


class NegativeSampler:
    """Draws k negative indices per sample with torch's RNG, with replacement.

    "exact": negatives come from other classes only. Indices are sorted by class
    once; a uniform draw over the N - n_c other-class positions skips the block
    of the positive's class. "relax": any sample but the positive itself.
    """

    def __init__(self, targets, k, mode):
        check_choice("contrast mode", mode, MODES)
        targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
        self.k, self.mode, self.size = k, mode, len(targets)
        self.order = torch.argsort(targets, stable=True)
        counts = torch.bincount(targets)
        self.class_start = torch.cumsum(counts, 0) - counts
        self.class_count = counts
        self.targets = targets
        if mode == "exact":
            present = counts[counts > 0]
            available = int((self.size - present).min())
            what = "samples of other classes for some class"
        else:
            available = self.size - 1
            what = "other samples"
        if k >= available:
            raise UserError(
                f"The contrast set needs k={k} negatives per sample, but there are only "
                f"{available} {what} ({mode} mode); choose k smaller than {available}."
            )

    def __call__(self, index):
        """int64 tensor (k + 1,): `index` first, then k negatives."""
        if self.mode == "exact":
            label = self.targets[index]
            start, count = self.class_start[label], self.class_count[label]
            draw = torch.randint(self.size - int(count), (self.k,))
            negatives = self.order[draw + (draw >= start).long() * count]
        else:
            draw = torch.randint(self.size - 1, (self.k,))
            negatives = draw + (draw >= index).long()
        return torch.cat([torch.tensor([index], dtype=torch.int64), negatives])

    def to(self, device):
        """This sampler with its tables on `device`, for `batch` there (DeviceLoader)."""
        moved = object.__new__(NegativeSampler)
        moved.__dict__.update({key: value.to(device) if torch.is_tensor(value) else value
                               for key, value in self.__dict__.items()})
        return moved

    def batch(self, index, generator=None):
        """Vectorised `__call__`: index int64 (B,) on the tables' device -> (B, k + 1).

        Same distribution as k calls per row; "exact" scales a uniform float by
        each row's N - n_c (float64, so the floor stays below the bound).
        """
        shape, device = (len(index), self.k), self.targets.device
        if self.mode == "exact":
            label = self.targets[index]
            start, count = self.class_start[label, None], self.class_count[label, None]
            uniform = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
            draw = (uniform * (self.size - count)).long()
            negatives = self.order[draw + (draw >= start).long() * count]
        else:
            draw = torch.randint(self.size - 1, shape, generator=generator, device=device)
            negatives = draw + (draw >= index[:, None]).long()
        return torch.cat([index[:, None], negatives], dim=1)


class ContrastDataset(ArrayDataset):
    """Items are `(img, target, index, contrast_idx)`; see `NegativeSampler`."""

    def __init__(self, data, targets, info, transform, k=4096, mode="exact"):
        super().__init__(data, targets, info, transform)
        self.sampler = NegativeSampler(self.targets, k, mode)

    def __getitem__(self, index):
        img, target = super().__getitem__(index)
        return img, target, index, self.sampler(index)


def first_per_class(data, targets, per_class, what, flag="--train_per_class"):
    """(data, targets) of the first `per_class` images of each class, in their order: the same subset for
    every seed and run. A class with fewer images is a UserError naming `what` and the `flag` that asked."""
    targets = np.asarray(targets, dtype=np.int64)
    labels, counts = np.unique(targets, return_counts=True)
    if per_class < 1 or counts.min() < per_class:
        raise UserError(f"{flag} {per_class}: {what} has {counts.min()} images in its smallest class "
                        f"(class {labels[counts.argmin()]}); choose between 1 and {counts.min()}.")
    keep = np.sort(np.concatenate([np.flatnonzero(targets == label)[:per_class] for label in labels]))
    return data[keep], targets[keep]


def wrap_arrays(data, targets, info, transform, variant, k, mode):
    """Build the dataset class that `variant` names around the arrays."""
    if variant == "plain":
        return ArrayDataset(data, targets, info, transform)
    if variant == "instance":
        return InstanceDataset(data, targets, info, transform)
    if variant == "contrast":
        return ContrastDataset(data, targets, info, transform, k=k, mode=mode)
    raise AssertionError(variant)  # get_dataset checked it


def eval_shard(dataset):
    """Every world_size-th sample from this rank's: no padding, so summed metrics count each sample once.

    A plain array data set stays one (a copy of its rows), so the GPU loader can still serve it.
    """
    if not is_distributed():
        return dataset
    rows = range(get_rank(), len(dataset), get_world_size())
    if type(dataset) is ArrayDataset:
        rows = np.asarray(rows)
        return ArrayDataset(dataset.data[rows], dataset.targets[rows], dataset.info, dataset.transform)
    return Subset(dataset, rows)
