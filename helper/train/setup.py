"""Set-up shared by train_vanilla.py, train_ctc.py and distill_cat.py (one process or under torchrun): the
process group and seed, the source data, the model, the optimiser, and the training and validation loaders."""
import contextlib
import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

from dataset import device_loader_for, eval_loader, get_dataset, get_loader
from dataset.device_loader import gpu_loader_works
from dataset.variants import eval_shard
from helper.core.distributed import (average_gradients, describe, get_rank, get_world_size, is_main_process,
                                     main_process_first, process_group, rank_seed, shard_sampler, sync_buffers,
                                     wrap_model)
from helper.core.seed import set_seed
from helper.core.speed import prepare_model
from helper.train.loops import evaluate
from models import create_model


@dataclass(frozen=True)
class LoaderConfig:
    """How a run's training and validation batches are served."""
    batch_size: int             # per process; under torchrun the global batch is this x processes
    num_workers: int            # DataLoader worker processes
    seed: int                   # the training order and augmentation depend only on (seed, epoch)
    on_device: bool = False     # --loader gpu: the uint8 set lives on the device and is augmented there
    channels_last: bool = False


@dataclass(frozen=True)
class SGDConfig:
    """The SGD optimiser of a training run."""
    learning_rate: float
    momentum: float
    weight_decay: float


def default_workers():
    return min(8, os.cpu_count() or 1)


@contextlib.contextmanager
def start_training(device=None, seed=0, batch_size=None):
    """Join torchrun's process group if launched by it (on `device`, None = the default), seed; yields the
    DistEnv. `batch_size` (per process) is only reported.

    Every rank seeds with `seed`, so models, heads and memory banks start identical;
    TrainingRun gives ranks > 0 their own stream once everything is built.
    """
    with process_group(device) as env:
        set_seed(seed)
        if env.world_size > 1 and is_main_process():
            tqdm.write(describe(env, batch_size))
        yield env


def load_source_data(dataset, root, augment, variant="plain", per_class=None):
    """(train_set, val_set) of the source data set `dataset` under `root`; val is its evaluation split,
    unaugmented, and the training split has the `augment` augmentation (and, with `per_class`, only the first
    `per_class` images of each class)."""
    with main_process_first():      # under torchrun, rank 0 downloads / decodes before the others read
        train_set = get_dataset(dataset, split="train", variant=variant, augment=augment, root=root,
                                per_class=per_class)
        val_set = get_dataset(dataset, split=train_set.info.eval_split, root=root, download=False)
    return train_set, val_set


def build_model(arch, num_classes, device, speed, sync_bn=False):
    """The registered model `arch` on `device`, in channels_last / compiled as `speed` says, DDP-wrapped under
    torchrun (with SyncBatchNorm if `sync_bn`)."""
    model = prepare_model(create_model(arch, num_classes=num_classes).to(device), speed)
    return wrap_model(model, device, sync_bn)


def train_loader_for(config, train_set, device=None):
    """epoch -> the epoch's training batches; the order depends only on (seed, epoch), so resume is exact.

    `config.on_device` (--loader gpu): the uint8 set lives on `device` and is augmented
    there (dataset/device_loader.py). Otherwise a DataLoader; under torchrun each rank
    reads its DistributedSampler shard of the epoch's permutation, and its workers
    are seeded per rank (different augmentations).
    """
    if config.on_device:
        return device_loader_for(train_set, device, config.batch_size, config.seed, rank=get_rank(),
                                 world_size=get_world_size(), channels_last=config.channels_last)
    return lambda epoch: get_loader(train_set, config.batch_size, train=True, num_workers=config.num_workers,
                                    seed=rank_seed(config.seed), epoch=epoch,
                                    sampler=shard_sampler(train_set, shuffle=True, seed=config.seed, epoch=epoch))


def val_loader(config, val_set, device=None):
    """The validation loader; under torchrun this rank's shard (see `validation`).

    With `config.on_device` the shard is uploaded once and normalised on the device, so
    no epoch starts DataLoader workers just to validate (200 epochs, 200 worker start-ups).
    """
    shard = eval_shard(val_set)
    on_device = config.on_device and gpu_loader_works(shard, device)
    return eval_loader(shard, max(config.batch_size, 256), device, on_device, num_workers=config.num_workers,
                       channels_last=config.channels_last)


def validation(config, model, val_set, device):
    """() -> validation metrics of `model`, identical on every rank.

    Rank 0's BatchNorm statistics are copied to all ranks, each evaluates its
    shard, and the sums are all-reduced: the metrics of rank 0's (saved) model.
    """
    loader = val_loader(config, val_set, device)

    def run():
        sync_buffers(model)
        return evaluate(model, loader, device, sharded=True)
    return run


def build_sgd(params, config, weight_decay=None, heads=()):
    """SGD over `params` and then `heads` with the `SGDConfig` `config`; `weight_decay` replaces its weight
    decay when given. `heads`: trained parameters outside the (DDP-wrapped) model, whose gradients DDP does
    not average, so under torchrun the optimizer averages them over ranks before each step."""
    heads = list(heads)
    optimizer = torch.optim.SGD(list(params) + heads, lr=config.learning_rate, momentum=config.momentum,
                                weight_decay=config.weight_decay if weight_decay is None else weight_decay)
    if heads:
        optimizer.register_step_pre_hook(lambda *_: average_gradients(heads))
    return optimizer


def format_float(value):
    """0.05 -> '0.05', 1.0 -> '1.0': for run folder names, no ':' or spaces."""
    return repr(float(value))
