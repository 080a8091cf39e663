"""--augment auto is the original's pipeline: random crop (padding 4) + flip, AutoAugment (CIFAR-10 policy), one
16x16 Cutout hole zeroed before normalisation (black), normalisation; checked on loader batches."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from dataset import DatasetInfo, get_loader
from dataset.device_loader import augment_of
from dataset.transforms import Cutout, build_transform
from dataset.variants import ArrayDataset

INFO = DatasetInfo("noise", 2, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), load=lambda *args: None)
N = 48
TOLERANCE = 1e-4        # un-normalising is exact up to float rounding


@pytest.fixture
def noise():
    """uint8 (N, 32, 32, 3) noise in 60..229: never black, and no two crops of it alike."""
    return np.random.RandomState(0).randint(60, 230, size=(N, 32, 32, 3), dtype=np.uint8)


def auto_batch(images, seed=0):
    """One loader batch of `images` under --augment auto, un-normalised to [0, 1]: (N, 3, 32, 32)."""
    ds = ArrayDataset(images, np.zeros(len(images), dtype=np.int64), INFO, build_transform(INFO, "auto"))
    torch.manual_seed(seed)
    batch = next(iter(get_loader(ds, batch_size=len(images), train=False, num_workers=0)))[0]
    return batch * torch.tensor(INFO.std).view(1, 3, 1, 1) + torch.tensor(INFO.mean).view(1, 3, 1, 1)


def black_windows(image, side):
    """How many side x side windows of `image` (3, H, W) are black in every channel."""
    black = (image.abs() < TOLERANCE).all(0).float()[None, None]
    return int((F.avg_pool2d(black, side, stride=1) > 1 - 1e-6).sum())


def test_the_pipeline_is_the_originals_in_its_order():
    steps = build_transform(INFO, "auto").transforms
    assert [type(step) for step in steps] == [T.RandomCrop, T.RandomHorizontalFlip, T.AutoAugment, T.ToTensor,
                                              Cutout, T.Normalize]
    crop, cutout = steps[0], steps[4]
    assert (crop.size, crop.padding, steps[2].policy, cutout.size) == ((32, 32), 4, T.AutoAugmentPolicy.CIFAR10, 16)
    assert augment_of(ArrayDataset(np.zeros((1, 32, 32, 3), np.uint8), [0], INFO, T.Compose(steps))) == "auto"


def test_every_auto_image_has_a_black_cutout_hole(noise):
    """The hole is zeroed before normalisation, so it is black; clipped at a corner it is still 8x8."""
    batch = auto_batch(noise)
    assert all(black_windows(image, 8) > 0 for image in batch)
    whole = sum(black_windows(image, 16) > 0 for image in batch)
    assert whole >= N // 8                      # a quarter of the centres leave the 16x16 hole unclipped


def crop_flip_of(output, source):
    """(dy, dx, flipped) such that `output` (3, 32, 32) is that crop of `source` zero-padded by 4, flipped or
    not, except for black hole pixels (at most 16 x 16); None when there is none."""
    padded = F.pad(source, (4, 4, 4, 4))
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            for flipped in (False, True):
                candidate = crop.flip(-1) if flipped else crop
                differs = ((output - candidate).abs() > TOLERANCE).any(0)
                hole = (output.abs() < TOLERANCE).all(0)
                if int(differs.sum()) <= 16 * 16 and bool(hole[differs].all()):
                    return dy - 4, dx - 4, flipped
    return None


def test_auto_batches_are_random_crops_and_flips(noise, monkeypatch):
    """With AutoAugment's colour and geometry operations switched off, what is left of an auto batch is a
    crop of the zero-padded image, flipped or not, with its hole."""
    monkeypatch.setattr(T.AutoAugment, "forward", lambda self, image: image)
    batch = auto_batch(noise, seed=1)
    sources = torch.as_tensor(noise).permute(0, 3, 1, 2).float() / 255
    found = [crop_flip_of(output, source) for output, source in zip(batch, sources)]
    assert None not in found
    assert {flipped for _, _, flipped in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > N // 4 and any((dy, dx) != (0, 0) for dy, dx, _ in found)
