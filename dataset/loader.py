"""DataLoader construction with a resumable shuffle order."""
import numpy as np
import torch
from torch.utils.data import DataLoader


def epoch_generator(seed, epoch):
    """torch.Generator seeded from (seed, epoch): a resumed run replays the same order."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator()
    generator.manual_seed(int(state))
    return generator


def get_loader(dataset, batch_size, train, num_workers=2, seed=None, epoch=0, sampler=None):
    """DataLoader over `dataset`; shuffled when `train` and no `sampler` is given.

    With `seed`, the shuffle (and the worker seeds, which drive augmentation and
    negative sampling) come from a generator seeded by (seed, epoch).
    """
    shuffle = bool(train) and sampler is None
    generator = epoch_generator(seed, epoch) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        generator=generator,
    )
