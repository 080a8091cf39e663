#!/usr/bin/env python
"""DISTILLn: train one network to reproduce the concatenated representation of n networks (CATn).

Zhang & Bottou (ICML 2023) distil the rich CATn representation into a single network of the base
architecture and transfer that network like any other. Here the student's penultimate features
(B, d) are mapped by a linear layer onto the teachers' concatenated penultimate features (B, D),
and the student is trained on the source data with

    loss = ce_weight x cross-entropy(student logits, labels) + distill_weight x MSE(W f_s + b, [f_t1, ..., f_tn])

(why the mean squared error: docs/rrl.md). The teachers are frozen, in eval mode, and see the same
augmented batch as the student. The CIFAR-100 setting, four seeds of resnet56 distilled into one:

    python distill_cat.py --dataset cifar100 --model resnet56 --epochs 200 \\
        --teachers <run0>/ckpt_epoch_200.pth,<run1>/ckpt_epoch_200.pth,<run2>/...,<run3>/... --note distill4

Writes ./save/model/<model>_<dataset>_distill<n>_lr_<lr>_trial_<trial>_<note>/ with the same files as
train_vanilla.py: the checkpoints hold the student alone (the linear map is in resume.pth only), so
transfer.py, discriminability.py and mine.py read them like any other run.
"""
import argparse
import os

import torch
import torch.nn.functional as F

from crd import CatRegression
from dataset import DATASETS, same_classes
from helper.cli import HelpFormatter
from helper.cli.flags import NON_NEGATIVE_FLOAT
from helper.cli.speed import speed_config
from helper.cli.train import (INTERRUPTED_TRAINING, loop_config, run_config, settled_flags, sgd_config,
                              training_parser)
from helper.core.checkpoint import unwrap
from helper.core.errors import UserError, run_cli
from helper.train.ctc import load_frozen_teacher
from helper.train.engine import train_run
from helper.train.setup import build_model, build_sgd, format_float, load_source_data, start_training


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter,
                                     parents=[training_parser(epochs=200)])
    g = parser.add_argument_group("distillation of a concatenation (DISTILLn)")
    g.add_argument("--teachers", required=True, metavar="P1,P2,...",
                   help="checkpoint files whose concatenated penultimate features the student learns to "
                        "reproduce (CATn: runs with other seeds, snapshots of one run, other architectures)")
    g.add_argument("--distill_weight", type=NON_NEGATIVE_FLOAT, default=1.0,
                   help="weight of the feature regression term (default 1.0)")
    g.add_argument("--ce_weight", type=NON_NEGATIVE_FLOAT, default=1.0,
                   help="weight of the cross-entropy (default 1.0)")
    g.add_argument("--teacher_model", default=None,
                   help="architecture of teacher checkpoints that do not record one (original code)")
    return parser


def run_name(args, n_teachers):
    name = (f"{args.model}_{args.dataset}_distill{n_teachers}_lr_{format_float(args.learning_rate)}"
            f"_trial_{args.trial}")
    return f"{name}_{args.note}" if args.note else name


def teacher_paths(args):
    paths = [p for p in args.teachers.split(",") if p.strip()]
    if not paths:
        raise UserError("--teachers names no checkpoint: pass P1,P2,... (the members of CATn).")
    real = [os.path.realpath(p) for p in paths]
    for path in paths:
        if real.count(os.path.realpath(path)) > 1:
            raise UserError(f"--teachers names {path} twice: the same network twice adds no feature.")
    for name in ("distill_weight", "ce_weight"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must not be negative, got {getattr(args, name)}.")
    return paths


def load_teachers(paths, args, device):
    """The frozen teachers; each must have been trained on the classes of --dataset (the data distilled on)."""
    teachers = []
    for path in paths:
        teacher, ckpt = load_frozen_teacher(path, args.teacher_model, device, flag="--teachers")
        taught_on = ckpt.get("dataset")
        if (taught_on in DATASETS and not same_classes(taught_on, args.dataset)) \
                or teacher.num_classes != DATASETS[args.dataset].num_classes:
            raise UserError(f"teacher {path} was trained on {taught_on or 'unrecorded data'} with "
                            f"{teacher.num_classes} classes, but DISTILL reproduces CATn on the data its members "
                            f"were trained on: --dataset {args.dataset} ({DATASETS[args.dataset].num_classes} "
                            "classes). Use teachers trained on --dataset, or pass the --dataset they were "
                            "trained on.")
        teachers.append(teacher)
    return teachers


def main(args):
    paths = teacher_paths(args)
    with start_training(args.device, args.seed, args.batch_size) as env:
        device = env.device
        train_set, val_set = load_source_data(args.dataset, args.data_folder, args.augment,
                                              per_class=args.train_per_class)
        flags = settled_flags(args, device, train_set, 0)
        teachers = load_teachers(paths, args, device)
        model = build_model(args.model, train_set.num_classes, device, speed_config(flags), args.sync_bn)
        regression = CatRegression(unwrap(model).feat_dim, sum(t.feat_dim for t in teachers)).to(device)
        optimizer = build_sgd(model.parameters(), sgd_config(args), heads=regression.parameters())

        def compute_loss(batch):
            images, targets = batch[0], batch[1]
            features, logits = model(images, is_feat=True)
            with torch.no_grad():
                teacher_features = torch.cat([t.penultimate(images) for t in teachers], dim=1)
            distill = regression(features[-1], teacher_features)
            loss = args.ce_weight * F.cross_entropy(logits, targets) + args.distill_weight * distill
            return loss, logits, targets, {"distill": distill.detach()}

        return train_run(run_config(args, "distill_cat.py"), loop_config(flags, 0), vars(flags),
                         run_name(args, len(teachers)), model, optimizer, train_set, val_set, compute_loss, device,
                         state={"regression": regression})


if __name__ == "__main__":
    run_cli(main, get_args_parser(), interrupted=INTERRUPTED_TRAINING)
