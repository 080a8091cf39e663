"""Fashion-MNIST (and fashion_a / fashion_b), EMNIST and Tiny ImageNet read from files written in their real
on-disk formats (IDX plain and .gz, the Tiny ImageNet folder tree); damaged files stop with one paragraph."""
import gzip
import os
import shutil

import numpy as np
import pytest

import dataset.mnist
import mine
import train_ctc
import train_vanilla
import transfer
from dataset import DataNotFoundError, get_dataset
from dataset.mnist import grey_to_rgb32
from scripts import dataset_stats
from tests.fakedata import (fake_wnid, write_fake_emnist, write_fake_fashion_mnist, write_fake_tinyimagenet,
                            write_idx)
from tests.helpers import cli, read_rows


def load(name, root, split="train"):
    return get_dataset(name, split=split, root=str(root), download=False)


# ------------------------------------------------------------------ Fashion-MNIST and EMNIST (IDX files)
@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_and_its_halves_keep_pixels_labels_and_order(tmp_path, gz):
    written = write_fake_fashion_mnist(tmp_path, n_train_per_class=3, n_test_per_class=2, gz=gz)
    for split, (images, labels) in written.items():
        whole = load("fashion-mnist", tmp_path, split)
        assert len(whole) == 10 * (3 if split == "train" else 2)
        np.testing.assert_array_equal(whole.targets, labels)
        np.testing.assert_array_equal(np.asarray(whole.data), grey_to_rgb32(images))
        for name, first in (("fashion_a", 0), ("fashion_b", 5)):
            half = load(name, tmp_path, split)
            keep = (labels >= first) & (labels < first + 5)
            np.testing.assert_array_equal(half.targets, labels[keep] - first)
            np.testing.assert_array_equal(np.asarray(half.data), grey_to_rgb32(images[keep]))
            assert half.num_classes == 5 and sorted(set(half.targets)) == [0, 1, 2, 3, 4]


def test_grey_is_resized_bilinearly_into_three_equal_channels():
    ramp = np.tile(np.arange(0, 252, 9, dtype=np.uint8), (28, 1))[None]      # 0 .. 243 from left to right
    rgb = grey_to_rgb32(ramp)
    assert rgb.shape == (1, 32, 32, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    row = rgb[0, 5, :, 0].astype(int)
    assert (np.diff(row) >= 0).all() and row[0] <= 9 and row[-1] >= 234    # still a ramp, end to end


def test_fashion_mnist_is_read_from_the_debian_package_folder(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    written = write_fake_fashion_mnist(tmp_path / "elsewhere", n_train_per_class=1, n_test_per_class=1)
    shutil.move(str(tmp_path / "elsewhere" / "FashionMNIST" / "raw"), debian)
    monkeypatch.setattr(dataset.mnist, "DEBIAN_FASHION_FOLDER", str(debian))
    ds = load("fashion-mnist", tmp_path / "data", "test")
    np.testing.assert_array_equal(ds.targets, written["test"][1])
    local = write_fake_fashion_mnist(tmp_path / "data", n_train_per_class=2, n_test_per_class=2, seed=1)
    np.testing.assert_array_equal(load("fashion-mnist", tmp_path / "data", "test").targets, local["test"][1])


@pytest.mark.parametrize("subfolder, gz", [("", False), ("gzip", True)])
def test_emnist_byclass_has_62_classes_in_torchvisions_layout(tmp_path, subfolder, gz):
    written = write_fake_emnist(tmp_path / "x", n_train_per_class=2, n_test_per_class=1, gz=gz)
    os.makedirs(tmp_path / "EMNIST" / "raw" if subfolder else tmp_path / "EMNIST")
    shutil.move(str(tmp_path / "x" / "EMNIST" / "raw"), tmp_path / "EMNIST" / ("raw/gzip" if subfolder else "raw"))
    for split, (images, labels) in written.items():
        ds = load("emnist", tmp_path, split)
        assert ds.num_classes == 62 and len(ds) == 62 * (2 if split == "train" else 1)
        np.testing.assert_array_equal(ds.targets, labels)
        np.testing.assert_array_equal(np.asarray(ds.data), grey_to_rgb32(images))


@pytest.mark.parametrize("name, expected", [
    ("fashion-mnist", ["FashionMNIST/raw", "apt-get install dataset-fashion-mnist"]),
    ("fashion_b", ["FashionMNIST/raw", "apt-get install dataset-fashion-mnist"]),
    ("emnist", ["EMNIST/raw", "emnist-byclass-train-images-idx3-ubyte", "gzip.zip"]),
    ("tinyimagenet", ["tiny-imagenet-200", "wnids.txt", "tiny-imagenet-200.zip"]),
])
def test_missing_files_name_the_expected_path_and_how_to_get_them(tmp_path, name, expected):
    with pytest.raises(DataNotFoundError) as caught:
        load(name, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    assert all(part.replace("/", os.sep) in message or part in message for part in expected), message
    if name.startswith("fashion"):
        assert dataset.mnist.DEBIAN_FASHION_FOLDER in message


def rewrite(path, change):
    """Replace the bytes of the (possibly gzipped) IDX file `path` by `change(bytes)`, in the same compression."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    with opener(path, "wb") as handle:
        handle.write(change(raw))


DAMAGE = {
    "wrong magic": ("train-images-idx3-ubyte", lambda raw: b"\x00\x00\x08\x01" + raw[4:], "magic number"),
    "truncated": ("train-images-idx3-ubyte", lambda raw: raw[:-100], "truncated"),
    "cut-off header": ("train-labels-idx1-ubyte", lambda raw: raw[:6], "header is cut off"),
    "count mismatch": ("train-labels-idx1-ubyte", lambda raw: raw[:4] + (29).to_bytes(4, "big") + raw[8:-1],
                       "29 labels for the 30 images"),
    "label out of range": ("train-labels-idx1-ubyte", lambda raw: raw[:-1] + b"\x0a", "label 10"),
    "wrong image size": ("train-images-idx3-ubyte",
                         lambda raw: raw[:8] + (14).to_bytes(4, "big") + (56).to_bytes(4, "big") + raw[16:],
                         "14x56, expected 28x28"),
}


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_idx_file_is_one_paragraph_naming_it(tmp_path, gz, damage):
    write_fake_fashion_mnist(tmp_path, n_train_per_class=3, gz=gz)
    name, change, expected = DAMAGE[damage]
    path = os.path.join(tmp_path, "FashionMNIST", "raw", name + (".gz" if gz else ""))
    rewrite(path, change)
    with pytest.raises(DataNotFoundError) as caught:
        load("fashion_a", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and expected in message and os.path.basename(path) in message, message
    assert load("fashion_a", tmp_path, "test").targets.size == 10     # the other split's files are whole


def test_a_cut_off_gzip_stream_is_named(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    path = os.path.join(tmp_path, "FashionMNIST", "raw", "t10k-images-idx3-ubyte.gz")
    with open(path, "rb") as handle:
        compressed = handle.read()
    with open(path, "wb") as handle:
        handle.write(compressed[:len(compressed) // 2])
    with pytest.raises(DataNotFoundError, match="cannot be read") as caught:
        load("fashion-mnist", tmp_path, "test")
    assert path in str(caught.value)


def test_a_damaged_file_stops_a_script_with_one_paragraph_and_status_2(tmp_path, capsys):
    write_fake_fashion_mnist(tmp_path, n_train_per_class=3)
    rewrite(os.path.join(tmp_path, "FashionMNIST", "raw", "train-images-idx3-ubyte.gz"), lambda raw: raw[:-5])
    code, _, err = cli(dataset_stats.main, dataset_stats.get_args_parser(),
                       ["fashion-mnist", "--data_folder", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error:") and "train-images-idx3-ubyte.gz" in err
    assert "Traceback" not in err


def test_dataset_stats_measures_the_train_split(tmp_path, capsys):
    images, _ = write_fake_fashion_mnist(tmp_path, n_train_per_class=2)["train"]
    pixels = grey_to_rgb32(images) / 255.0
    code, out, _ = cli(dataset_stats.main, dataset_stats.get_args_parser(),
                       ["fashion-mnist", "--data_folder", str(tmp_path)], capsys)
    assert code in (0, None)
    assert out.strip() == (f"fashion-mnist: 20 train images, mean ({', '.join([f'{pixels.mean():.4f}'] * 3)}), "
                           f"std ({', '.join([f'{pixels.std():.4f}'] * 3)})")


def test_write_idx_round_trips_through_the_reader(tmp_path):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(str(tmp_path / name), array)
        np.testing.assert_array_equal(dataset.mnist.read_idx(str(tmp_path / name), 3, ""), array)


# ------------------------------------------------------------------ Tiny ImageNet (folder tree)
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_fake_tinyimagenet(root, n_train=2, n_val=1)
    return root


def test_tiny_imagenet_labels_follow_the_sorted_class_ids(tiny_root):
    """Each fake class is painted with its rank in sorted wnid order, so the pixels say which label is right."""
    for split, size in (("train", 400), ("val", 200)):
        ds = load("tinyimagenet", tiny_root, split)
        assert len(ds) == size and ds.data.shape == (size, 32, 32, 3) and ds.num_classes == 200
        red = np.asarray(ds.data)[..., 0].astype(float).mean(axis=(1, 2))
        assert np.abs(red - ds.targets).max() <= 3
        assert np.bincount(ds.targets, minlength=200).tolist() == [size // 200] * 200


def test_tiny_imagenet_is_decoded_once_into_a_memory_mapped_cache(tiny_root, monkeypatch):
    load("tinyimagenet", tiny_root, "val")
    base = os.path.join(tiny_root, "tiny-imagenet-200")
    assert {"val_uint8.npy", "val_labels.npy"} <= set(os.listdir(base))

    def refuse(*args, **kwargs):
        raise AssertionError("JPEG decoded although the cache is valid")

    monkeypatch.setattr("PIL.Image.open", refuse)
    assert isinstance(load("tinyimagenet", tiny_root, "val").data, np.memmap)


def damage_missing_class(base):
    shutil.rmtree(os.path.join(base, "train", fake_wnid(7)))
    return os.path.join("train", fake_wnid(7), "images")


def damage_unlabelled_val_image(base):
    shutil.copy(os.path.join(base, "val", "images", "val_0.JPEG"), os.path.join(base, "val", "images", "extra.JPEG"))
    return "extra.JPEG"


def damage_unknown_class(base):
    with open(os.path.join(base, "val", "val_annotations.txt"), "a") as handle:
        handle.write("val_0.JPEG\tn99999999\t0\t0\t63\t63\n")
    return "n99999999"


def damage_missing_val_image(base):
    os.remove(os.path.join(base, "val", "images", "val_3.JPEG"))
    return "val_3.JPEG"


def damage_short_class_list(base):
    path = os.path.join(base, "wnids.txt")
    with open(path) as handle:
        lines = handle.readlines()
    with open(path, "w") as handle:
        handle.writelines(lines[:-1])
    return "lists 199 classes"


@pytest.mark.parametrize("damage, split", [
    (damage_missing_class, "train"), (damage_unlabelled_val_image, "val"), (damage_unknown_class, "val"),
    (damage_missing_val_image, "val"), (damage_short_class_list, "train"),
])
def test_a_damaged_tiny_imagenet_tree_is_one_paragraph_naming_the_problem(tmp_path, damage, split):
    base = write_fake_tinyimagenet(tmp_path, n_train=1, n_val=1)
    expected = damage(base)
    with pytest.raises(DataNotFoundError) as caught:
        load("tinyimagenet", tmp_path, split)
    message = str(caught.value)
    assert "\n" not in message and expected in message and base in message, message


# ------------------------------------------------------------------ the new sets as sources and targets
def test_fashion_halves_and_tiny_imagenet_are_sources_and_targets_of_the_scripts(in_tmp, capsys):
    data = str(in_tmp / "data")
    write_fake_fashion_mnist(data, n_train_per_class=3, n_test_per_class=2)
    write_fake_tinyimagenet(data, n_train=1, n_val=1)
    common = ["--model", "resnet8", "--data_folder", data, "--num_workers", "0", "--no_progress"]
    train_vanilla.main(train_vanilla.get_args_parser().parse_args(
        common + ["--dataset", "fashion_a", "--epochs", "1", "--save_freq", "1", "--note", "t"]))
    run = "resnet8_fashion_a_lr_0.05_trial_0_t"
    sweep = common + ["--ckpt_path", run, "--start_epoch", "1", "--skip", "1"]
    for target in ("fashion_b", "tinyimagenet"):
        code, out, err = cli(transfer.main, transfer.get_args_parser(),
                             sweep + ["--source_dataset", "fashion_a", "--target_dataset", target, "--epoch", "2"],
                             capsys)
        (row,) = read_rows(f"save/model/{run}/transfer_{target}_linear.csv")
        assert code == 0 and row["epoch"] == "1" and 0 <= float(row["final_acc"]) <= 100, err
    code, _, err = cli(mine.main, mine.get_args_parser(), sweep + [
        "--mode", "ty", "--dataset", "fashion_b", "--iter_num", "20", "--batch_size", "10", "--hidden_size", "16"],
        capsys)
    (row,) = read_rows(f"save/model/{run}/mi_ty_fashion_b.csv")
    assert code == 0 and int(row["iters"]) == 20, err
    ctc = train_ctc.main(train_ctc.get_args_parser().parse_args(common + [
        "--dataset", "tinyimagenet", "--epochs", "2", "--stage_two_epoch", "1", "--nce_k", "16", "--save_freq", "1"]))
    assert os.path.isfile(os.path.join(ctc.run_dir, "ckpt_epoch_2.pth"))
    assert os.path.basename(ctc.run_dir) == "resnet8_tinyimagenet_a0.1_b1.0"
