"""What the project knows about each data set: classes, normalisation, splits."""
from dataclasses import dataclass

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

    @property
    def label_space(self):
        return self.classes_of or self.name


DATASETS = {
    info.name: info
    for info in (
        DatasetInfo("cifar100", 100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
        DatasetInfo("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        # The original code evaluates CINIC-10 transfer on its "valid" split.
        DatasetInfo(
            "cinic10",
            10,
            (0.47889522, 0.47227842, 0.43047404),
            (0.24205776, 0.23828046, 0.25874835),
            splits=("train", "valid", "test"),
            eval_split="valid",
            classes_of="cifar10",     # CIFAR-10's ten classes, in the same (alphabetical) order
        ),
        # Digits statistics: computed once from the train split of each set
        # (scikit-learn's load_digits, 32x32 bilinear, grey so R = G = B).
        DatasetInfo("digits_a", 5, (0.3049, 0.3049, 0.3049), (0.3266, 0.3266, 0.3266)),
        DatasetInfo("digits_b", 5, (0.3055, 0.3055, 0.3055), (0.3205, 0.3205, 0.3205)),
        DatasetInfo("svhn", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        DatasetInfo("stl10", 10, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    )
}


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
