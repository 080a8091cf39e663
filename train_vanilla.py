#!/usr/bin/env python
"""Train a classifier on the source data set and keep a checkpoint every --save_freq epochs.

The paper's run (ResNeXt-32 16x4d on CIFAR-100, 100 checkpoints):

    python train_vanilla.py --epochs 200 --dataset cifar100 --model resnext32_16x4d \\
        --weight_decay 0.0005 --momentum 0.9 --learning_rate 0.05 --batch_size 64 --save_freq 2 --note vanilla

Writes ./save/model/<model>_<dataset>_lr_<lr>_trial_<trial>_<note>/ (see helper/train/engine.py).
The same command runs on several GPUs under `torchrun --nproc_per_node=N` (global batch N x --batch_size).
"""
import argparse

import torch.nn.functional as F

from helper.cli import HelpFormatter, NoEffectFlag
from helper.cli.speed import speed_config
from helper.cli.train import (INTERRUPTED_TRAINING, loop_config, run_config, settled_flags, sgd_config,
                              training_parser)
from helper.core.errors import run_cli
from helper.train.engine import train_run
from helper.train.setup import build_model, build_sgd, format_float, load_source_data, start_training


# The original train_vanilla.py's cosine: 5 warm-up epochs, annealed to 0.1 x learning_rate.
WARMUP_EPOCHS, MIN_LR_SCALE = 5, 0.1


def get_args_parser():
    parents = [training_parser(epochs=200, warmup_epochs=WARMUP_EPOCHS, min_lr_scale=MIN_LR_SCALE,
                               step_decay_flags=("--step_decay_epochs",))]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, parents=parents)
    parser.add_argument("--lr_decay_epochs", action=NoEffectFlag, dest="original_lr_decay_epochs",
                        reason="the original train_vanilla.py parsed it and always ran its warm-up + cosine "
                               "schedule, as here; --step_decay_epochs gives step decay",
                        help="the original's flag, which it ignored; recorded in args.json, no effect "
                             "(step decay: --step_decay_epochs)")
    return parser


def run_name(args):
    name = f"{args.model}_{args.dataset}_lr_{format_float(args.learning_rate)}_trial_{args.trial}"
    return f"{name}_{args.note}" if args.note else name


def main(args):
    with start_training(args.device, args.seed, args.batch_size) as env:
        device = env.device
        train_set, val_set = load_source_data(args.dataset, args.data_folder, args.augment,
                                              per_class=args.train_per_class)
        flags = settled_flags(args, device, train_set, WARMUP_EPOCHS)
        model = build_model(args.model, train_set.num_classes, device, speed_config(flags), args.sync_bn)
        optimizer = build_sgd(model.parameters(), sgd_config(args))

        def compute_loss(batch):
            images, targets = batch[0], batch[1]
            logits = model(images)
            return F.cross_entropy(logits, targets), logits, targets, {}

        return train_run(run_config(args, "train_vanilla.py"), loop_config(flags, WARMUP_EPOCHS), vars(flags),
                         run_name(args), model, optimizer, train_set, val_set, compute_loss, device)


if __name__ == "__main__":
    run_cli(main, get_args_parser(), interrupted=INTERRUPTED_TRAINING)
