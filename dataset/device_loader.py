"""The whole training set on the accelerator: shuffling, augmentation and negatives there.

A CIFAR-sized set is 150 MB as uint8, so it is copied to the device once and every
batch is cut, augmented (crop 32 with zero padding 4 + horizontal flip, as
torchvision's RandomCrop / RandomHorizontalFlip) and normalised by a few batched
kernels, with no worker processes, PIL or host-to-device copies per step. The
batches have the same tuples, dtypes and distribution as `get_loader`'s.
"""
import numpy as np
import torch
from torchvision import transforms as T

from dataset.loader import epoch_generator, get_loader
from dataset.transforms import IMAGE_SIZE
from dataset.variants import ArrayDataset, ContrastDataset, InstanceDataset
from helper.core.errors import UserError

PADDING = 4


def augment_of(dataset):
    """'standard', 'none' or 'auto': read off the transform `build_transform` made."""
    steps = getattr(dataset.transform, "transforms", [dataset.transform])
    kinds = {type(step) for step in steps}
    if T.AutoAugment in kinds:
        return "auto"
    if kinds <= {T.ToTensor, T.Normalize}:
        return "none"
    if kinds == {T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize}:
        return "standard"
    raise UserError(f"The GPU data loader reproduces the 'standard' and 'none' augmentations only; this "
                    f"data set's transform is {dataset.transform!r}. Use --loader cpu.")


def fits_on_device(dataset, device, fraction=0.5):
    """Whether the uint8 images and labels take at most `fraction` of the free device memory (CPU: True)."""
    device = torch.device(device)
    if device.type != "cuda":
        return True
    needed = np.asarray(dataset.data[:1]).nbytes * len(dataset) + 8 * len(dataset)
    free, _ = torch.cuda.mem_get_info(device)
    return needed <= fraction * free


def crop_and_flip(images, generator=None):
    """uint8 (B, C, H, W) -> (B, C, H, W): random crop of the zero-padded batch, then flip p=0.5.

    Offsets are uniform on the (2*PADDING+1)^2 grid like RandomCrop(H, padding); one
    advanced-indexing gather does crop and flip together, no per-sample loop.
    """
    batch, _, height, width = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (PADDING,) * 4)
    top, left = torch.randint(2 * PADDING + 1, (2, batch, 1), generator=generator, device=device)
    flip = torch.rand(batch, 1, generator=generator, device=device) < 0.5
    rows = top + torch.arange(height, device=device)
    across = torch.arange(width, device=device)
    cols = left + torch.where(flip, width - 1 - across, across)
    sample = torch.arange(batch, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[sample, channel, rows[:, None, :, None], cols[:, None, None, :]]


class DeviceLoader:
    """Batches of an array-backed data set held on `device`; iterate like a DataLoader.

    Order: the permutation get_loader(seed=seed, epoch=epoch) visits, the same on every
    rank. Rank r of `world_size` takes the r-th contiguous `batch_size` slice of each
    global batch of batch_size * world_size, so the ranks together see exactly the
    batches of a single process with that global batch size. Without `drop_last` the
    order is padded by wrapping around to a multiple of world_size (as
    DistributedSampler does) so all ranks run the same number of steps. Augmentation
    and negatives use a device generator seeded by (seed, epoch, rank): a resumed
    epoch replays the same batches. Items: plain (img, target), instance
    (..., index), contrast (..., index, contrast_idx (B, k+1)); img float (B, 3, 32, 32).
    """

    def __init__(self, dataset, batch_size, device, train=True, seed=0, epoch=0, rank=0, world_size=1,
                 drop_last=False, channels_last=False):
        if not isinstance(dataset, ArrayDataset):
            raise UserError(f"The GPU data loader needs an array-backed data set from get_dataset, "
                            f"got {type(dataset).__name__}. Use --loader cpu.")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"DeviceLoader needs batch_size >= 1 and 0 <= rank < world_size, got "
                            f"batch_size={batch_size}, rank={rank}, world_size={world_size}.")
        self.augment = augment_of(dataset) if train else "none"
        if self.augment == "auto":
            raise UserError("AutoAugment (--augment auto) runs in PIL on the host, so it needs the CPU "
                            "data loader: use --loader cpu (or auto, which picks it).")
        self.device = torch.device(device)
        self.batch_size, self.train, self.seed, self.epoch = batch_size, train, seed, epoch
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        images = torch.from_numpy(np.ascontiguousarray(dataset.data))
        self.images = images.to(self.device).permute(0, 3, 1, 2).contiguous()    # (N, 3, 32, 32) uint8
        self.targets = torch.as_tensor(dataset.targets, dtype=torch.int64).to(self.device)
        mean = torch.tensor(dataset.info.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(dataset.info.std, device=self.device).view(1, 3, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std             # (x/255 - m)/s = x*scale + shift
        self.with_index = isinstance(dataset, (InstanceDataset, ContrastDataset))
        self.sampler = dataset.sampler.to(self.device) if isinstance(dataset, ContrastDataset) else None
        if self.images.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise UserError(f"The GPU data loader expects 32x32 RGB images, got {tuple(dataset.data.shape)}.")

    def set_epoch(self, epoch):
        """Select the epoch whose order and augmentation the next iteration replays."""
        self.epoch = epoch

    def __len__(self):
        n, global_batch = len(self.targets), self.batch_size * self.world_size
        if self.drop_last:
            return n // global_batch
        return -(-n // global_batch)

    def _order(self):
        """int64 (M,) indices of the epoch on the device, M a multiple of world_size unless drop_last."""
        n = len(self.targets)
        if self.train:              # get_loader's order: its DataLoader draws the worker base seed first
            generator = epoch_generator(self.seed, self.epoch)
            torch.empty((), dtype=torch.int64).random_(generator=generator)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if not self.drop_last and n % self.world_size:
            order = torch.cat([order, order[: self.world_size - n % self.world_size]])
        return order.to(self.device)

    def _generator(self):
        state = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(1, dtype=np.uint64)[0]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(state))
        return generator

    def _images(self, index, generator):
        """Augmented, normalised float (B, 3, 32, 32) of the uint8 images `index`."""
        images = self.images[index]
        if self.augment == "standard":
            images = crop_and_flip(images, generator)
        images = torch.addcmul(self.shift, images.float(), self.scale)
        return images.contiguous(memory_format=self.memory_format)

    def __iter__(self):
        order, generator = self._order(), self._generator()
        global_batch = self.batch_size * self.world_size
        for step in range(len(self)):
            chunk = order[step * global_batch:(step + 1) * global_batch]
            index = chunk.view(self.world_size, -1)[self.rank]
            batch = [self._images(index, generator), self.targets[index]]
            if self.with_index:
                batch.append(index)
            if self.sampler is not None:
                batch.append(self.sampler.batch(index, generator))
            yield tuple(batch)


def eval_loader(dataset, batch_size, device, on_device, num_workers=0, channels_last=False):
    """Unshuffled, unaugmented batches of `dataset` for evaluation or feature extraction.

    on_device: a DeviceLoader (the uint8 set uploaded once, normalised on `device`, no
    worker start-ups per pass); otherwise a DataLoader with `num_workers`.
    """
    if on_device:
        return DeviceLoader(dataset, batch_size, device, train=False, channels_last=channels_last)
    return get_loader(dataset, batch_size, train=False, num_workers=num_workers)


def device_loader_for(dataset, device, batch_size, seed, rank=0, world_size=1, channels_last=False):
    """epoch -> DeviceLoader, the drop-in for `helper.train.setup.train_loader_for`: uploads the set once."""
    loader = DeviceLoader(dataset, batch_size, device, train=True, seed=seed, rank=rank, world_size=world_size,
                          channels_last=channels_last)

    def for_epoch(epoch):
        loader.set_epoch(epoch)
        return loader
    return for_epoch


def gpu_loader_works(dataset, device):
    """Whether DeviceLoader can serve `dataset` on `device` (array-backed, fits, augment not auto)."""
    if not isinstance(dataset, ArrayDataset) or np.asarray(dataset.data[:1]).shape[1:] != (32, 32, 3):
        return False
    try:
        if augment_of(dataset) == "auto":
            return False
    except UserError:
        return False
    return fits_on_device(dataset, device)
