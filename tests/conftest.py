"""Shared fixtures: the repository root, a scratch working directory, small CPU runs.

tests/ is a package, so pytest puts the folder above it, the repository root, on the import path.
"""
import os

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

torch.set_num_threads(2)


DIGITS_RUN_EPOCHS = 3


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A resnet8 run on digits_a with ckpt_epoch_0..3.pth, trained once per test session."""
    import train_vanilla
    root = tmp_path_factory.mktemp("digits_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        run = train_vanilla.main(train_vanilla.get_args_parser().parse_args(
            ["--dataset", "digits_a", "--model", "resnet8", "--epochs", str(DIGITS_RUN_EPOCHS), "--save_freq", "1",
             "--num_workers", "0", "--no_progress", "--note", "t"]))
    return os.path.abspath(os.path.join(root, run.run_dir))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run a test inside tmp_path, so ./save and ./data land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def sweep_events_in_tmp(tmp_path_factory, monkeypatch):
    """Sweeps write TensorBoard events under --tb_path (default ./save/tensorboard): keep the tests' out of ./save."""
    import helper.train.run_folder
    monkeypatch.setattr(helper.train.run_folder, "DEFAULT_TB_PATH", str(tmp_path_factory.getbasetemp() / "tensorboard"))


@pytest.fixture(autouse=True)
def no_system_fashion_mnist(tmp_path_factory, monkeypatch):
    """Fashion-MNIST is also read from Debian's package folder: point it at an empty one, so no test reads a
    copy installed on the machine (tests write their own IDX files)."""
    import dataset.mnist
    monkeypatch.setattr(dataset.mnist, "DEBIAN_FASHION_FOLDER", str(tmp_path_factory.getbasetemp() / "no-debian"))
