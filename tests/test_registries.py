"""Every entry of the data set registry, and one-entry registration of a data set and an MI estimator.

The tests are parametrised over the registries themselves, so a newly registered entry is tested without
editing a list (docs/extending.md); every model is built and checked by tests/test_models.py (over
`available_models()`) and every estimator by tests/test_mi.py (over `ESTIMATORS`).
"""
import numpy as np
import pytest
import torch

import dataset.registry
from dataset import DATASETS, DataNotFoundError, DatasetInfo, dataset_names, get_dataset, register_dataset
from helper.sweep import mi
from helper.sweep.mi import ESTIMATOR_REGISTRY, ESTIMATORS, Estimator, register_estimator
from helper.sweep.mi_cases import latent_gaussian
from tests.fakedata import (trust_fake_cifar, write_fake_cifar, write_fake_cinic, write_fake_emnist,
                            write_fake_fashion_mnist, write_fake_tinyimagenet)
from tests.helpers import mine_fit

CPU = torch.device("cpu")


# ------------------------------------------------------------------ data sets
@pytest.mark.parametrize("name", dataset_names())
def test_every_data_set_entry_is_consistent(name):
    info = DATASETS[name]
    assert info.name == name and isinstance(info.num_classes, int) and info.num_classes >= 2
    assert info.train_split in info.splits and info.eval_split in info.splits
    for stats in (info.mean, info.std):
        assert isinstance(stats, tuple) and len(stats) == 3
        assert all(isinstance(value, float) and 0 < value < 1 for value in stats), stats
    if info.classes_of:
        assert info.classes_of in DATASETS and info.classes_of != name
        assert DATASETS[info.classes_of].num_classes == info.num_classes
    assert callable(info.load)


# The sets tests/fakedata.py writes in their real on-disk format; every other set must load without files
# (digits) or say where its files go.
FAKE_WRITERS = {
    "cifar100": lambda root: write_fake_cifar(root, num_classes=100, n_train=100, n_test=50),
    "cifar10": lambda root: write_fake_cifar(root, num_classes=10, n_train=50, n_test=20),
    "cinic10": lambda root: write_fake_cinic(root, n_per_class=2),
    "fashion-mnist": write_fake_fashion_mnist,       # its halves fashion_a and fashion_b read the same files
    "emnist": write_fake_emnist,
    "tinyimagenet": write_fake_tinyimagenet,
}
FAKE_WRITERS.update(fashion_a=write_fake_fashion_mnist, fashion_b=write_fake_fashion_mnist)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    """One folder with every data set tests/fakedata.py can write."""
    root = tmp_path_factory.mktemp("registered_data")
    for write in set(FAKE_WRITERS.values()):
        write(root)
    with pytest.MonkeyPatch.context() as patch:
        trust_fake_cifar(patch, str(root))
        yield str(root)


@pytest.mark.parametrize("name", dataset_names())
def test_every_data_set_loads_or_says_where_its_files_go(name, fake_root):
    """Each split through get_dataset: consistent arrays, or (files absent) a DataNotFoundError naming the folder."""
    info = DATASETS[name]
    for split in info.splits:
        try:
            ds = get_dataset(name, split=split, root=fake_root, download=False)
        except DataNotFoundError as missing:
            assert name not in FAKE_WRITERS, f"{name} {split}: {missing}"
            assert fake_root in str(missing)
            continue
        assert ds.info is info and len(ds) > 0
        assert ds.data.dtype == np.uint8 and ds.data.shape == (len(ds), 32, 32, 3)
        assert ds.targets.dtype == np.int64 and 0 <= ds.targets.min() and ds.targets.max() < info.num_classes
        img, target = ds[0]
        assert img.shape == (3, 32, 32) and target == ds.targets[0]


def test_a_registered_data_set_is_one_entry(monkeypatch):
    """register_dataset alone makes a set known to dataset_names and get_dataset; a name is taken once."""
    monkeypatch.setattr(dataset.registry, "DATASETS", dict(DATASETS))

    def noise(info, split, root, download):
        rng = np.random.RandomState(0 if split == "train" else 1)
        return rng.randint(0, 256, (12, 32, 32, 3), dtype=np.uint8), np.arange(12, dtype=np.int64) % 3

    info = register_dataset(DatasetInfo("noise3", 3, (0.5, 0.5, 0.5), (0.29, 0.29, 0.29), load=noise))
    assert "noise3" in dataset.registry.dataset_names() and "noise3" not in DATASETS
    ds = get_dataset("noise3", split="test", variant="instance")
    assert ds.info is info and len(ds) == 12 and ds[5][1:] == (2, 5)
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset(info)
    with pytest.raises(ValueError, match="no load function"):
        register_dataset(DatasetInfo("noise4", 4, (0.5, 0.5, 0.5), (0.29, 0.29, 0.29)))


# ------------------------------------------------------------------ MI estimators
def test_estimator_names_are_the_registry():
    assert ESTIMATORS == tuple(ESTIMATOR_REGISTRY) and ESTIMATORS[0] == "mine"
    assert all(isinstance(entry, Estimator) and entry.name == name for name, entry in ESTIMATOR_REGISTRY.items())


@pytest.fixture(scope="module")
def known_mi():
    """2 latent Gaussian dimensions at rho 0.8 seen through 4-d linear maps: I = 1.02 nats."""
    return latent_gaussian(2000, 2, 0.8, dim_x=4, dim_t=4, seed=0)


def fit(estimator, a, b, iters=300):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # a 32-wide critic runs fastest on one thread
    try:
        batch = 64 if mi.ESTIMATOR_REGISTRY[estimator].pairwise else 128     # an R x R critic costs R times more
        return mine_fit(a, b, estimator, iters=iters, batch_size=batch, hidden_size=32, lr=3e-3, window=100,
                           seed=0, device=CPU)
    finally:
        torch.set_num_threads(threads)


def test_a_registered_estimator_is_one_entry(monkeypatch, known_mi):
    """A bound and its training loss registered together are a choice of estimate_mi (docs/extending.md)."""
    monkeypatch.setattr(mi, "ESTIMATOR_REGISTRY", dict(ESTIMATOR_REGISTRY))

    @register_estimator
    class DV(Estimator):
        """Donsker-Varadhan bound, critic trained on the bound itself (MINE without its bias correction)."""
        name = "dv"

        def value(self, t_joint, t_marg, tau):
            return t_joint.mean() - (t_marg.logsumexp(0) - np.log(len(t_marg)))

    assert "dv" in mi.ESTIMATOR_REGISTRY and "dv" not in ESTIMATOR_REGISTRY
    x, t, truth = known_mi
    result = fit("dv", x, t)
    assert abs(result["mi"] - truth) < 0.2 * truth and result["estimator"] == "dv"
    with pytest.raises(ValueError, match="registered twice"):
        register_estimator(DV)

