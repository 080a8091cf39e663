"""The data set registry: what the project knows about each data set (classes, normalisation,
splits) and the function that reads its arrays, one `DatasetInfo` per set."""
from dataclasses import dataclass, field

from helper.core.errors import UserError


class DataNotFoundError(UserError):
    """The files of a data set are missing; the message says where to put them."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one data set; `mean`/`std` are per RGB channel in [0, 1]."""

    name: str
    num_classes: int
    mean: tuple
    std: tuple
    splits: tuple = ("train", "test")
    train_split: str = "train"
    eval_split: str = "test"
    classes_of: str = ""     # the data set whose class list (in order) this one shares; "" = its own
    # load(info, split, root, download) -> (data uint8 (N, 32, 32, 3) HWC, targets int64 (N,)); raises
    # DataNotFoundError saying where the files go when they are missing.
    load: object = field(default=None, compare=False, repr=False)

    @property
    def label_space(self):
        return self.classes_of or self.name


DATASETS = {}     # name -> DatasetInfo, filled by `register_dataset` in the modules that read each set


def register_dataset(info):
    """Make `info` (with its `load` function) a data set of every script; returns it.

    Called beside the function that reads the set (dataset/cifar.py, cinic.py, mnist.py, ...), so a
    data set is one entry in one file. A name is registered once.
    """
    if info.name in DATASETS:
        raise ValueError(f"data set {info.name!r} registered twice")
    if not callable(info.load):
        raise ValueError(f"data set {info.name!r} has no load function")
    DATASETS[info.name] = info
    return info


def dataset_names():
    """Sorted data set names, for argparse `choices`."""
    return sorted(DATASETS)


def same_classes(name_a, name_b):
    """Whether two data sets share one class list in one order (so their logits line up)."""
    return DATASETS[name_a].label_space == DATASETS[name_b].label_space


def check_choice(what, value, choices):
    """Raise UserError naming `what` and listing `choices` unless `value` is one of them."""
    if value not in choices:
        raise UserError(f"Unknown {what} '{value}'. Choose one of: {', '.join(choices)}.")


def get_info(name, split=None):
    """Return the `DatasetInfo` of `name`; check `split` too when given."""
    check_choice("data set", name, dataset_names())
    info = DATASETS[name]
    if split is not None:
        check_choice(f"split of {name}", split, info.splits)
    return info
