"""Image transforms (train augmentation, evaluation) and the resize to 32x32."""
import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from dataset.registry import check_choice

AUGMENTS = ("standard", "none", "auto")
IMAGE_SIZE = 32


class Cutout:
    """Zero one `size` x `size` square of a (3, H, W) tensor in [0, 1], before normalisation: a black hole.

    The centre is uniform over the image (torch RNG, so DataLoader worker
    seeding applies); the square is clipped at the borders (DeVries & Taylor).
    """

    def __init__(self, size=16):
        self.size = size

    def __call__(self, img):
        height, width = img.shape[-2:]
        centre_y = int(torch.randint(height, ()))
        centre_x = int(torch.randint(width, ()))
        half = self.size // 2
        top, bottom = max(0, centre_y - half), min(height, centre_y + half)
        left, right = max(0, centre_x - half), min(width, centre_x + half)
        img = img.clone()
        img[..., top:bottom, left:right] = 0.0
        return img

    def __repr__(self):
        return f"Cutout(size={self.size})"


def build_transform(info, augment):
    """PIL image (32x32 RGB) -> normalised float tensor (3, 32, 32).

    "standard": random crop (padding 4) + horizontal flip, the training default;
    "none": no augmentation (evaluation, transfer, MINE);
    "auto": the original's pipeline: random crop (padding 4) + flip, AutoAugment (CIFAR-10 policy),
    then Cutout of one black 16x16 hole (zeroed before normalisation).
    """
    check_choice("augment", augment, AUGMENTS)
    normalise = T.Normalize(info.mean, info.std)
    if augment == "none":
        return T.Compose([T.ToTensor(), normalise])
    crop_flip = [T.RandomCrop(IMAGE_SIZE, padding=4), T.RandomHorizontalFlip()]
    if augment == "standard":
        return T.Compose(crop_flip + [T.ToTensor(), normalise])
    return T.Compose(crop_flip + [T.AutoAugment(T.AutoAugmentPolicy.CIFAR10), T.ToTensor(), Cutout(16), normalise])


def resize_to_32(images, chunk=1024):
    """Images (N, 3, H, W), any numeric dtype, values 0..255 -> uint8 (N, 32, 32, 3).

    Bilinear with antialiasing, in chunks to bound memory; returns HWC like
    torchvision's CIFAR `data`.
    """
    out = np.empty((len(images), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        batch = torch.as_tensor(np.asarray(images[start:start + chunk]), dtype=torch.float32)
        if batch.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            batch = F.interpolate(
                batch, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                align_corners=False, antialias=True,
            )
        batch = batch.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out[start:start + chunk] = batch.numpy()
    return out
