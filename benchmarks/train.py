"""Training throughput: images/s of the original-style loop against the device loader and speed flags.

train: DataLoader + PIL crop/flip + fp32 + per-step .item() (original) vs DeviceLoader (+ bf16 autocast
and channels_last on CUDA); flags: the device loader with each speed flag alone against all three off.
Synthetic CIFAR-100-shaped uint8 images, so no download is needed.
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import ratio_row, time_calls
from dataset import DATASETS, build_transform, get_loader
from dataset.device_loader import DeviceLoader
from dataset.variants import ArrayDataset
from helper.cli.speed import describe, resolve_speed_args, speed_config
from helper.core.speed import SPEED_FLAGS, autocast, prepare_model
from models import create_model


def synthetic_cifar(n, augment="standard"):
    """An ArrayDataset of n random uint8 CIFAR-100-shaped images, as get_dataset builds them."""
    rng = np.random.default_rng(0)
    info = DATASETS["cifar100"]
    data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    targets = rng.integers(0, info.num_classes, n)
    return ArrayDataset(data, targets, info, build_transform(info, augment))


def images_per_second(model, loader, device, steps, warmup, amp=False, original=False):
    """Images/s over `steps` SGD steps after `warmup` untimed ones (loader start-up excluded).

    original: the batch is copied with .to(device) and the loss read with .item() every
    step, as the original training loop's meters did.
    """
    sgd = sgd_step(model, iter(loader), device, amp)

    def step():
        size, loss = sgd()
        if original:
            loss.item()
        return size

    seconds, batch_sizes = time_calls(step, steps, warmup, device)
    return sum(batch_sizes) / seconds


def sgd_step(model, batches, device, amp=False, allow_cpu=False):
    """A function taking one SGD step (the paper's lr 0.05, momentum 0.9, weight decay 5e-4) of `model` on the
    next batch of the iterator `batches`; it returns (the batch size, the loss tensor, not synchronised)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step():
        x, y = next(batches)[:2]
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp, allow_cpu=allow_cpu):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(y), loss.detach()
    return step


def fresh_model(name, device, options=None):
    """A seeded `name` for CIFAR-100 on `device`, prepared (channels_last, compile) as `options` say."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=100).to(device)
    return prepare_model(model, speed_config(options)) if options else model


def training_set(args):
    """The synthetic set of the training benchmarks: enough images for warmup + timed steps."""
    return synthetic_cifar(max(args.train_images, (args.train_steps + args.train_warmup) * args.batch_size))


def train_row(args, device):
    """The original loop's images/s against ours (device loader and speed flags as resolved for `device`)."""
    if args.loader == "auto":                      # here auto means the thing measured: the device loader
        args.loader = "gpu"
    speed = resolve_speed_args(args, device)
    dataset = training_set(args)
    reference = images_per_second(
        fresh_model(args.model, device),
        get_loader(dataset, args.batch_size, train=True, num_workers=args.num_workers, seed=0),
        device, args.train_steps, args.train_warmup, original=True)
    if speed.loader == "cpu":
        loader = get_loader(dataset, args.batch_size, train=True, num_workers=args.num_workers, seed=0)
    else:
        loader = DeviceLoader(dataset, args.batch_size, device, seed=0, channels_last=speed.channels_last)
    ours = images_per_second(fresh_model(args.model, device, speed), loader, device, args.train_steps,
                             args.train_warmup, amp=speed.amp)
    return ratio_row(f"train {args.model} b{args.batch_size}", "images/s", reference, ours,
                     {"images": len(dataset), "steps": args.train_steps, "warmup": args.train_warmup,
                      "num_workers": args.num_workers, "speed": describe(speed)})


def flag_rows(args, device):
    """One row per speed flag: the device loader's training images/s with that flag alone vs all off.

    Each flag's row is what its CUDA default rests on; compile's warmup steps absorb its
    compilation (--train_warmup). amp is skipped on CPU, where autocast is off by design.
    """
    dataset = training_set(args)
    flags = [f for f in args.ablate if f != "amp" or device.type == "cuda"]

    def speed(options):
        loader = DeviceLoader(dataset, args.batch_size, device, seed=0, channels_last=options.channels_last)
        return images_per_second(fresh_model(args.model, device, options), loader, device, args.train_steps,
                                 args.train_warmup, amp=options.amp)

    all_off = argparse.Namespace(**dict.fromkeys(SPEED_FLAGS, False), loader="gpu")
    reference = speed(all_off)
    rows = []
    for flag in flags:
        ours = speed(argparse.Namespace(**{**vars(all_off), flag: True}))
        rows.append(ratio_row(f"flags +{flag} {args.model} b{args.batch_size}", "images/s", reference, ours,
                              {"steps": args.train_steps, "warmup": args.train_warmup, "flag": flag,
                               "reference": describe(all_off)}))
    return rows
