#!/usr/bin/env python
"""Train a classifier on the source data set and keep a checkpoint every --save_freq epochs.

The paper's run (ResNeXt-32 16x4d on CIFAR-100, 100 checkpoints):

    python train_vanilla.py --epochs 200 --dataset cifar100 --model resnext32_16x4d \\
        --weight_decay 0.0005 --momentum 0.9 --learning_rate 0.05 --batch_size 64 --save_freq 2 --note vanilla

Writes ./save/model/<model>_<dataset>_lr_<lr>_trial_<trial>_<note>/ (see helper/engine.py).
"""
import argparse

import torch.nn.functional as F

from helper.device import get_device
from helper.engine import TrainingRun, fit
from helper.errors import run_cli
from helper.loops import evaluate
from helper.schedule import make_lr_schedule
from helper.seed import set_seed
from helper.train_setup import (add_training_args, build_sgd, check_training_args, format_float,
                                load_source_data, train_loader_for, val_loader)
from models import create_model


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_training_args(parser, epochs=200)


def run_name(args):
    name = f"{args.model}_{args.dataset}_lr_{format_float(args.learning_rate)}_trial_{args.trial}"
    return f"{name}_{args.note}" if args.note else name


def main(args):
    check_training_args(args)
    device = get_device(args.device)
    set_seed(args.seed)
    train_set, val_set = load_source_data(args)
    model = create_model(args.model, num_classes=train_set.num_classes).to(device)
    optimizer = build_sgd(model.parameters(), args)
    val = val_loader(args, val_set)
    run = TrainingRun(args, run_name(args), model, optimizer, evaluate_fn=lambda: evaluate(model, val, device))
    start = run.prepare()

    def compute_loss(batch):
        images, targets = batch[0], batch[1]
        logits = model(images)
        return F.cross_entropy(logits, targets), logits, targets, {}

    fit(run, optimizer, train_loader_for(args, train_set), compute_loss, make_lr_schedule(args), device, start,
        progress=not args.no_progress)
    return run


if __name__ == "__main__":
    run_cli(main, get_args_parser())
