"""The one place that sets up, and talks to, the process group of a torchrun launch.

    torchrun --nproc_per_node=4 train_vanilla.py ...     # 4 processes, one GPU each

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `init_distributed` then joins the
group (NCCL on cuda:LOCAL_RANK, gloo on CPU). Without those variables (or with a
world of one) no group is created and every collective below is the identity,
so a single-process run behaves exactly as it did before this module existed.

Conventions the training code relies on:
- every rank builds the model, heads and memory banks from the same seed; only
  afterwards does a rank > 0 get its own random stream (`seed_this_rank`), so
  augmentation and negative sampling differ between ranks;
- DDP does not re-broadcast buffers at each forward (`forward_sync_buffers=False`):
  rank 0's BatchNorm statistics evolve from its own batches either way, and
  `sync_buffers` copies them to every rank before each evaluation, so the
  validation metrics are those of rank 0's model, identical on all ranks.
"""
import contextlib
import os
from collections import namedtuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from helper.core.device import get_device
from helper.core.errors import UserError
from helper.core.seed import set_seed

DistEnv = namedtuple("DistEnv", "device rank world_size local_rank")


def torchrun_env(environ=os.environ):
    """(rank, world_size, local_rank) from torchrun's variables, or None when they are absent."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
    return rank, world, int(environ.get("LOCAL_RANK", rank))


def init_distributed(device_arg=None):
    """Join torchrun's process group when launched by it; returns DistEnv(device, rank, world_size, local_rank).

    `device_arg` is --device: None or 'cuda' (each process takes cuda:LOCAL_RANK)
    or 'cpu' (gloo); a fixed index would put every process on one GPU, so it is refused.
    """
    found = torchrun_env()
    if found is None or found[1] == 1:
        local = found[2] if found else 0
        return DistEnv(get_device(device_arg), 0, 1, local)
    rank, world, local = found
    if device_arg and ":" in device_arg:
        raise UserError(f"--device {device_arg} under torchrun would put all {world} processes on one GPU; "
                        "pass --device cuda (each process takes the GPU of its LOCAL_RANK) or --device cpu.")
    device = get_device(device_arg)
    if not is_distributed():
        if device.type == "cuda":
            if local >= torch.cuda.device_count():
                raise UserError(f"torchrun started local rank {local}, but this machine has only "
                                f"{torch.cuda.device_count()} GPUs; pass --nproc_per_node "
                                f"{torch.cuda.device_count()} or fewer.")
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return DistEnv(device, rank, world, local)


@contextlib.contextmanager
def process_group(device_arg=None):
    """`init_distributed` for the duration of a `with` block; the group is destroyed on the way out."""
    env = init_distributed(device_arg)
    try:
        yield env
    finally:
        cleanup()


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    """True unless this is a non-zero rank of an initialised process group: rank 0 alone writes files."""
    return get_rank() == 0


def barrier():
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_process_first():
    """Rank 0 runs the block first (a download, a decode cache), the other ranks after it.

    Concurrent torchvision downloads into one folder can corrupt the archive; this way the
    other ranks find the files in place. A single process just runs the block.
    """
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


def cleanup():
    if is_distributed():
        dist.destroy_process_group()


# --------------------------------------------------------------- collectives
def all_gather_cat(tensor):
    """Concatenate `tensor` of every rank along dim 0, in rank order; identity when not distributed.

    For memory-bank updates of detached tensors (no gradient flows back). Every
    rank must pass the same shape, which DistributedSampler's padding guarantees
    for the training and memory-fill loaders.
    """
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def all_reduce_sum(tensor):
    """Sum of `tensor` over ranks, as a new tensor; `tensor` itself when not distributed."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out


def all_reduce_mean(tensor):
    """Mean of `tensor` over ranks (CRD's normalisation constant Z from the global batch)."""
    if not is_distributed():
        return tensor
    return all_reduce_sum(tensor) / get_world_size()


def all_gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...]; [obj] when not distributed (e.g. each rank's RNG state)."""
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def average_gradients(params):
    """Replace each .grad of `params` by its mean over ranks, in one flat all-reduce.

    For trained parameters outside the DDP-wrapped model (CTC's embedding heads);
    every rank has the same parameters with a gradient, as they run the same code.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = all_reduce_mean(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def sync_buffers(module):
    """Copy rank 0's buffers (BatchNorm statistics) to every rank, so all evaluate the same model."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


# ------------------------------------------------------------ model and data
def wrap_model(model, device, sync_bn=False):
    """`model` in DistributedDataParallel under torchrun (optionally with SyncBatchNorm); unchanged otherwise.

    Parameter and buffer names stay those of `model` under `.module.`, which
    helper.core.checkpoint strips, so checkpoints load in either setting.
    """
    if not is_distributed():
        return model  # one process: BatchNorm already sees the whole batch
    if sync_bn:
        if device.type != "cuda":
            raise UserError("--sync_bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only. Drop --sync_bn "
                            "for CPU runs (each process then normalises over its own part of the batch).")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def shard_sampler(dataset, shuffle, seed=0, epoch=0):
    """This rank's DistributedSampler for `epoch` (padded so every rank gets as many samples); None alone."""
    if not is_distributed():
        return None
    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return sampler


def rank_seed(seed, rank=None):
    """`seed` on rank 0 (a one-process run's stream), a distinct seed derived from (seed, rank) elsewhere."""
    rank = get_rank() if rank is None else rank
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def seed_this_rank(seed):
    """Give each rank > 0 its own random stream, once the state shared by all ranks has been built."""
    if get_rank() > 0:
        set_seed(rank_seed(seed))


def describe(env, batch_size):
    """The start-up line of a torchrun launch: processes, devices and the global batch."""
    return (f"torchrun: {env.world_size} processes on {env.device.type}; global batch "
            f"{env.world_size * batch_size} = {env.world_size} x --batch_size {batch_size}")
