"""dataset/: formats, variants, augmentation, contrast sampling, caching, loaders."""
import os

import numpy as np
import pytest
import torch

import dataset
from dataset import DATASETS, DataNotFoundError, dataset_names, get_dataset, get_loader
from dataset.cifar import read_pickle
from dataset.small import digits_split_indices
from helper.core.errors import UserError
from tests.fakedata import trust_fake_cifar, write_fake_cifar, write_fake_cinic

SIZES = {"cifar100": (200, 100), "cifar10": (100, 50), "cinic10": (30, 30),
         "digits_a": (721, 180), "digits_b": (717, 179)}
ARRAY_SETS = list(SIZES)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One folder holding fake CIFAR-100, CIFAR-10 and CINIC-10."""
    path = tmp_path_factory.mktemp("data")
    write_fake_cifar(path, num_classes=100, n_train=200, n_test=100)
    write_fake_cifar(path, num_classes=10, n_train=100, n_test=50)
    write_fake_cinic(path, n_per_class=3)
    with pytest.MonkeyPatch.context() as mp:
        trust_fake_cifar(mp, str(path))
        yield str(path)


def load(name, root, **kwargs):
    return get_dataset(name, root=root, download=False, **kwargs)


@pytest.mark.parametrize("name", ARRAY_SETS)
def test_arrays_lengths_and_labels(name, root):
    info = DATASETS[name]
    for split, size in zip((info.train_split, info.eval_split), SIZES[name]):
        ds = load(name, root, split=split)
        assert len(ds) == size and ds.num_classes == info.num_classes and ds.info is info
        assert ds.data.dtype == np.uint8 and ds.data.shape == (size, 32, 32, 3)
        assert ds.targets.dtype == np.int64
        assert ds.targets.min() >= 0 and ds.targets.max() < info.num_classes


@pytest.mark.parametrize("name", ARRAY_SETS)
def test_variants_return_right_items(name, root):
    plain, instance, contrast = (load(name, root, variant=v, k=8)
                                 for v in ("plain", "instance", "contrast"))
    img, target = plain[3]
    assert img.dtype == torch.float32 and img.shape == (3, 32, 32)
    assert isinstance(target, int) and target == plain.targets[3]
    assert len(instance[3]) == 3 and instance[3][2] == 3
    img, target, index, contrast_idx = contrast[3]
    assert img.shape == (3, 32, 32) and target == plain.targets[3] and index == 3
    assert contrast_idx.dtype == torch.int64 and contrast_idx.shape == (9,)


def test_cifar_reader_keeps_pixels_and_labels(root):
    raw = read_pickle(os.path.join(root, "cifar-100-python", "train"))
    ds = load("cifar100", root)
    expected = np.asarray(raw["data"][5]).reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(ds.data[5], expected)
    np.testing.assert_array_equal(ds.targets, raw["fine_labels"])
    assert set(raw) >= {"coarse_labels", "filenames"}


def test_digits_statistics_match_registry():
    for name in ("digits_a", "digits_b"):
        pixels = get_dataset(name).data.reshape(-1, 3) / 255.0
        np.testing.assert_allclose(pixels.mean(0), DATASETS[name].mean, atol=1e-3)
        np.testing.assert_allclose(pixels.std(0), DATASETS[name].std, atol=1e-3)


def test_augment_none_deterministic_standard_random(root):
    """(--augment auto: tests/test_autoaugment.py)"""
    fixed = load("cifar100", root, augment="none")
    assert torch.equal(fixed[0][0], fixed[0][0])
    torch.manual_seed(0)
    randomised = load("cifar100", root, augment="standard")
    draws = [randomised[0][0] for _ in range(10)]
    assert any(not torch.equal(draws[0], other) for other in draws[1:])


def test_contrast_exact_never_shares_class(root):
    torch.manual_seed(0)
    ds = load("cifar10", root, variant="contrast", k=50, mode="exact")
    for index in range(len(ds)):
        contrast_idx = ds[index][3]
        assert contrast_idx[0] == index
        assert not np.any(ds.targets[contrast_idx[1:].numpy()] == ds.targets[index])


def test_contrast_relax_may_share_class_but_not_self(root):
    torch.manual_seed(0)
    ds = load("cifar10", root, variant="contrast", k=50, mode="relax")
    shared = 0
    for index in range(len(ds)):
        negatives = ds[index][3][1:].numpy()
        assert negatives.min() >= 0 and negatives.max() < len(ds)
        assert not np.any(negatives == index)
        shared += int(np.sum(ds.targets[negatives] == ds.targets[index]))
    assert shared > 0


@pytest.mark.parametrize("mode, k", [("exact", 90), ("relax", 99), ("exact", 5000)])
def test_contrast_k_too_large(root, mode, k):
    with pytest.raises(UserError, match=f"k={k}"):
        load("cifar10", root, variant="contrast", k=k, mode=mode)


def test_cinic_cache_written_once_and_reused(tmp_path, monkeypatch):
    base = write_fake_cinic(tmp_path, n_per_class=2, splits=("valid",))
    first = get_dataset("cinic10", split="valid", root=str(tmp_path))
    assert os.path.isfile(os.path.join(base, "valid_uint8.npy"))
    assert os.path.isfile(os.path.join(base, "valid_labels.npy"))

    def refuse(*args, **kwargs):
        raise AssertionError("PNG decoded although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr("PIL.Image.open", refuse)
        second = get_dataset("cinic10", split="valid", root=str(tmp_path))
        assert isinstance(second.data, np.memmap)
        np.testing.assert_array_equal(np.asarray(second.data), np.asarray(first.data))
        np.testing.assert_array_equal(second.targets, first.targets)
    write_fake_cinic(tmp_path, n_per_class=3, seed=1, splits=("valid",))  # adds one per class
    assert len(get_dataset("cinic10", split="valid", root=str(tmp_path))) == 30


def test_cinic_unwritable_cache_decodes_in_memory(tmp_path, monkeypatch):
    write_fake_cinic(tmp_path, n_per_class=1, splits=("test",))

    def read_only(path, array):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(dataset.cinic, "save_atomic", read_only)
    with pytest.warns(UserWarning, match="cache"):
        ds = get_dataset("cinic10", split="test", root=str(tmp_path))
    assert len(ds) == 10 and ds.data.shape == (10, 32, 32, 3)
    assert not [n for n in os.listdir(tmp_path / "CINIC-10") if n.endswith(".npy")]


@pytest.mark.parametrize("name, expected", [
    ("cifar100", "cifar-100-python"), ("cifar10", "cifar-10-batches-py"),
    ("cinic10", os.path.join("CINIC-10", "train")), ("svhn", "train_32x32.mat"),
    ("stl10", "stl10_binary"),
])
def test_missing_data_names_expected_path(tmp_path, name, expected):
    with pytest.raises(DataNotFoundError) as caught:
        get_dataset(name, root=str(tmp_path), download=False)
    assert os.path.join(str(tmp_path), expected) in str(caught.value)
    assert isinstance(caught.value, UserError)


@pytest.mark.parametrize("kwargs, listed", [
    ({"name": "imagenet"}, "cifar100"), ({"name": "cifar10", "split": "valid"}, "test"),
    ({"name": "digits_a", "variant": "pairs"}, "contrast"),
    ({"name": "digits_a", "augment": "heavy"}, "standard"),
    ({"name": "digits_a", "mode": "loose"}, "relax"),
])
def test_bad_choices_raise_user_error(kwargs, listed):
    with pytest.raises(UserError, match=listed):
        get_dataset(**kwargs)


def test_registry():
    """The paper's data sets and the digits pair are registered (tests/test_registries.py checks every entry)."""
    assert dataset_names() == sorted(DATASETS)
    assert {"cifar100", "cifar10", "cinic10", "stl10", "svhn", "digits_a", "digits_b"} <= set(DATASETS)
    assert DATASETS["cinic10"].eval_split == "valid" and DATASETS["cifar100"].eval_split == "test"
    assert DATASETS["cifar100"].num_classes == 100


def test_digits_split_deterministic_and_disjoint():
    from sklearn.datasets import load_digits

    labels = load_digits().target
    split = digits_split_indices(labels)
    again = digits_split_indices(labels)
    np.testing.assert_array_equal(split["train"], again["train"])
    assert not set(split["train"]) & set(split["test"])
    assert len(split["train"]) + len(split["test"]) == len(labels)
    a, b = get_dataset("digits_a"), get_dataset("digits_b")
    np.testing.assert_array_equal(a.data, get_dataset("digits_a").data)
    assert set(a.targets) == set(b.targets) == set(range(5))


def loader_order(ds, **kwargs):
    return torch.cat([batch[2] for batch in get_loader(ds, 16, num_workers=0, **kwargs)])


def test_loader_order_follows_seed_and_epoch(root):
    ds = load("cifar10", root, variant="instance")
    same = loader_order(ds, train=True, seed=3, epoch=1)
    assert torch.equal(same, loader_order(ds, train=True, seed=3, epoch=1))
    assert not torch.equal(same, loader_order(ds, train=True, seed=3, epoch=2))
    assert sorted(same.tolist()) == list(range(len(ds)))
    assert loader_order(ds, train=False).tolist() == list(range(len(ds)))
    reverse = list(range(len(ds)))[::-1]
    assert loader_order(ds, train=True, sampler=reverse).tolist() == reverse


class _MakesFolder:
    """Unpickling this calls os.mkdir(path): a stand-in for a planted file that runs code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_planted_cifar_pickle_is_refused_before_it_runs(tmp_path, monkeypatch):
    import pickle
    write_fake_cifar(tmp_path, num_classes=100, n_train=20, n_test=10)
    trust_fake_cifar(monkeypatch, str(tmp_path))                 # the genuine fake files would load
    marker = str(tmp_path / "created_by_the_pickle")
    planted = tmp_path / "cifar-100-python" / "train"
    planted.write_bytes(pickle.dumps(_MakesFolder(marker), protocol=2))
    with pytest.raises(DataNotFoundError, match="cifar-100-python.train is damaged or is not the published"):
        get_dataset("cifar100", root=str(tmp_path), download=False)
    assert not os.path.exists(marker)
    load("cifar100", str(tmp_path), split="test")               # the untouched file still passes its check
    pickle.loads(planted.read_bytes())                            # what an unchecked read would have done
    assert os.path.isdir(marker)


def test_per_class_keeps_the_first_images_of_each_class_and_refuses_too_many(root):
    whole = load("cifar10", root)
    subset = load("cifar10", root, per_class=3, variant="contrast", k=8)   # 10 per class in the fake set
    assert len(subset) == 30 and np.bincount(subset.targets).tolist() == [3] * 10
    keep = np.sort(np.concatenate([np.flatnonzero(whole.targets == c)[:3] for c in range(10)]))
    np.testing.assert_array_equal(subset.data, whole.data[keep])             # in the files' order
    assert subset[29][2] == 29 and subset[29][3].max() < 30                  # indices and negatives within it
    with pytest.raises(UserError, match=r"--train_per_class 11: cifar10's train split has 10 images"):
        load("cifar10", root, per_class=11)
