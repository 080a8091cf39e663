"""dataset/device_loader.py: the on-device loader matches get_loader's batches and distribution."""
import numpy as np
import pytest
import torch

from dataset import build_transform, get_dataset, get_loader
from dataset.device_loader import DeviceLoader, crop_and_flip, device_loader_for, fits_on_device
from dataset.variants import ArrayDataset, NegativeSampler
from helper.core.errors import UserError


@pytest.fixture(scope="module")
def digits():
    """digits_a train, instance variant, no augmentation: 721 images of 5 classes."""
    return get_dataset("digits_a", "train", variant="instance", augment="none")


def indices_of(loader):
    return [batch[2].tolist() for batch in loader]


@pytest.mark.parametrize("variant,arity", [("plain", 2), ("instance", 3), ("contrast", 4)])
def test_shapes_dtypes_and_arity(variant, arity):
    ds = get_dataset("digits_a", "train", variant=variant, augment="standard", k=16)
    loader = DeviceLoader(ds, 32, "cpu")
    batches = list(loader)
    assert len(batches) == len(loader) == -(-len(ds) // 32)
    assert sum(len(b[1]) for b in batches) == len(ds)
    img, target = batches[0][:2]
    assert all(len(b) == arity for b in batches)
    assert img.shape == (32, 3, 32, 32) and img.dtype == torch.float32
    assert target.dtype == torch.int64 and target.shape == (32,)
    if arity > 2:
        assert torch.equal(target, torch.as_tensor(ds.targets)[batches[0][2]])
    if arity == 4:
        assert batches[0][3].shape == (32, 17) and batches[0][3].dtype == torch.int64
        assert torch.equal(batches[0][3][:, 0], batches[0][2])


def test_no_augmentation_equals_cpu_items(digits):
    img, target, index = next(iter(DeviceLoader(digits, 16, "cpu")))
    for row, i in enumerate(index.tolist()):
        cpu_img, cpu_target, cpu_index = digits[i]
        assert cpu_index == i and cpu_target == target[row]
        torch.testing.assert_close(img[row], cpu_img, atol=1e-5, rtol=0)


def test_crop_offsets_cover_grid_and_flip_half():
    """Channel 0 holds row + 1 and channel 1 column + 1, so each output reveals its crop and flip."""
    n, size = 8100, 32
    grid = torch.arange(1, size + 1, dtype=torch.uint8)
    image = torch.stack([grid[:, None].expand(size, size), grid[None, :].expand(size, size),
                         torch.full((size, size), 7, dtype=torch.uint8)])
    out = crop_and_flip(image.expand(n, 3, size, size), torch.Generator().manual_seed(0))
    centre_row, centre_col = out[:, 0, 16, 16].long(), out[:, 1, 16, 16].long()
    flipped = out[:, 1, 16, 17].long() - centre_col == -1
    top = centre_row - 13
    left = centre_col - 13 + flipped.long()
    assert 0.47 < flipped.float().mean() < 0.53
    counts = torch.bincount(top * 9 + left, minlength=81)
    assert len(counts) == 81 and counts.min() > 60 and counts.max() < 145          # expected 100 each
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    for i in range(0, n, 797):                                                       # the whole crop, padding included
        expected = padded[:, top[i]:top[i] + size, left[i]:left[i] + size]
        assert torch.equal(out[i], expected.flip(-1) if flipped[i] else expected)


def test_augmented_mean_matches_cpu_transforms(digits):
    """Per-pixel mean of 1500 augmented copies of one image: on device vs torchvision/PIL."""
    n = 1500
    transform = build_transform(digits.info, "standard")
    copies = ArrayDataset(np.repeat(digits.data[:1], n, axis=0), np.zeros(n, dtype=np.int64), digits.info, transform)
    device_mean = torch.cat([b[0] for b in DeviceLoader(copies, 500, "cpu")]).mean(0)
    torch.manual_seed(0)
    cpu_mean = torch.stack([copies[0][0] for _ in range(n)]).mean(0)
    plain = digits[0][0]
    assert (cpu_mean - plain).abs().max() > 0.5                   # augmentation visibly blurs the mean
    assert (device_mean - cpu_mean).abs().max() < 0.15


def test_same_seed_and_epoch_replay_and_epochs_differ(digits):
    aug = get_dataset("digits_a", "train", variant="instance", augment="standard")
    first, second = list(DeviceLoader(aug, 64, "cpu", seed=3, epoch=2)), list(DeviceLoader(aug, 64, "cpu", seed=3, epoch=2))
    for a, b in zip(first, second):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    loader = DeviceLoader(aug, 64, "cpu", seed=3)
    loader.set_epoch(2)
    assert indices_of(loader) == [b[2].tolist() for b in first]
    loader.set_epoch(3)
    assert indices_of(loader) != [b[2].tolist() for b in first]
    assert indices_of(DeviceLoader(aug, 64, "cpu", seed=4, epoch=2)) != [b[2].tolist() for b in first]
    cpu_order = [b[2].tolist() for b in get_loader(aug, 64, train=True, num_workers=0, seed=3, epoch=2)]
    assert [b[2].tolist() for b in first] == cpu_order              # switching --loader keeps the order


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_partition_the_single_process_batches(digits, drop_last):
    single = DeviceLoader(digits, 2 * 50, "cpu", seed=1, epoch=5, drop_last=drop_last)
    ranks = [DeviceLoader(digits, 50, "cpu", seed=1, epoch=5, rank=r, world_size=2, drop_last=drop_last)
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    seen = []
    for global_batch, *shares in zip(indices_of(single), *map(indices_of, ranks)):
        joined = shares[0] + shares[1]
        assert len(shares[0]) == len(shares[1]) and set(shares[0]).isdisjoint(shares[1])
        assert joined[:len(global_batch)] == global_batch and len(joined) - len(global_batch) in (0, 1)
        seen += joined
    if drop_last:
        assert len(seen) == len(set(seen)) == (len(digits) // 100) * 100
    else:                                       # 721 images: one wrapped-around index pads the tail
        assert len(seen) == 722 and set(seen) == set(range(721))


def test_exact_negatives_come_from_other_classes_and_relax_skips_self():
    targets = torch.as_tensor(get_dataset("digits_a", "train").targets)
    for mode in ("exact", "relax"):
        ds = get_dataset("digits_a", "train", variant="contrast", augment="none", k=200, mode=mode)
        for _, target, index, contrast in DeviceLoader(ds, 128, "cpu"):
            negatives = contrast[:, 1:]
            if mode == "exact":
                assert (targets[negatives] != target[:, None]).all()
            else:
                assert (negatives != index[:, None]).all()
                assert (targets[negatives] == target[:, None]).any()


def test_batched_negatives_are_uniform_over_other_classes():
    sampler = NegativeSampler(np.array([1, 0, 1, 0, 2, 2, 1, 2, 2]), k=4, mode="exact")
    draws = sampler.batch(torch.full((5000,), 3), torch.Generator().manual_seed(0))[:, 1:]
    freq = torch.bincount(draws.flatten(), minlength=9).float() / draws.numel()
    others = torch.tensor([0, 2, 4, 5, 6, 7, 8])                   # index 3 is class 0, like index 1
    assert freq[[1, 3]].sum() == 0 and (freq[others] - 1 / 7).abs().max() < 0.01


def test_bad_input_and_factory(digits):
    auto = get_dataset("digits_a", "train", augment="auto")
    with pytest.raises(UserError, match="CPU"):
        DeviceLoader(auto, 8, "cpu")
    with pytest.raises(UserError):
        DeviceLoader(digits, 8, "cpu", rank=2, world_size=2)
    assert fits_on_device(digits, "cpu")

    loader_for = device_loader_for(digits, torch.device("cpu"), batch_size=100, seed=7)
    assert indices_of(loader_for(4)) == indices_of(DeviceLoader(digits, 100, "cpu", seed=7, epoch=4))
    assert len(loader_for(0)) == 8
