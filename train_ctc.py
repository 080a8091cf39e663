#!/usr/bin/env python
"""Contrastive Temporal Coding: train with instance discrimination, then distil from an earlier self.

The paper's runs (ResNeXt-32 16x4d on CIFAR-100, checkpoint every 2 epochs):

    python train_ctc.py --epochs 300 --dataset cifar100 --model resnext32_16x4d --momentum 0.9 \\
        --learning_rate 0.05 --batch_size 64 --weight_decay 0.0005 --weight_decay_coef 2.0 \\
        --stage_two_epoch 200 -a 0.5 -b 1.0 --instance_t 0.10 --instance_m 0.9 --nce_t 0.10 --nce_m 0.9 \\
        --update_memory_bank --save_freq 2 --note ctc
    (and the same with -a 0.1 --instance_t 0.50 --nce_t 0.40)

Stage 1 (epochs 1..--stage_two_epoch): cross-entropy + alpha x instance discrimination.
Stage 2: cross-entropy + beta x CRD (or ITRD) against the frozen copy of the model taken at
the end of stage 1. With --teacher PATH the frozen network is that checkpoint instead; with
--stage_two_epoch 0 this is teacher -> student distillation (ITRD's and CRD's setting):

    python train_ctc.py --teacher <run>/wrn_40_2_last.pth --model wrn_16_2 --stage_two_epoch 0 \\
        --stage_two_loss itrd -b 1.0 --lambda_corr 2.0 --lambda_mutual 1.0 --alpha_it 1.01 \\
        --epochs 240 --learning_rate 0.05 --lr_decay_epochs 150,180,210

Writes ./save/model/<model>_<dataset>_a<alpha>_b<beta>_<note>/ (teacher runs:
<model>_<dataset>_T<teacher>_<loss>_b<beta>[_kd<w>]_<note>) with the same checkpoint files
as train_vanilla.py (see helper/train/engine.py); the stage logic is in helper/train/ctc.py. The same
command runs on several GPUs under `torchrun --nproc_per_node=N`; the memory banks then hold the
embeddings of the whole global batch, identical on every rank.
"""
import argparse

from helper.cli import HelpFormatter
from helper.cli.flags import FRACTION, NON_NEGATIVE_FLOAT, POSITIVE_FLOAT
from helper.cli.speed import speed_config
from helper.cli.train import (INTERRUPTED_TRAINING, check_ctc_args, ctc_config, loop_config, run_config,
                              settled_flags, sgd_config, training_parser)
from helper.core.errors import run_cli
from helper.train.engine import train_run
from helper.train.ctc import CTCData, CTCObjective, load_teacher
from helper.train.setup import build_model, format_float, load_source_data, start_training


def get_args_parser():
    parents = [training_parser(epochs=300)]     # no warm-up, floor 0: the original train_ctc.py
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, parents=parents)

    g = parser.add_argument_group("CTC stages")
    g.add_argument("-a", "--alpha", type=NON_NEGATIVE_FLOAT, default=0.1,
                   help="weight of stage 1's instance discrimination (paper: 0.5 or 0.1)")
    g.add_argument("-b", "--beta", type=NON_NEGATIVE_FLOAT, default=1.0,
                   help="weight of stage 2's CRD / ITRD loss (paper: 1.0)")
    g.add_argument("--ce_weight", type=NON_NEGATIVE_FLOAT, default=1.0,
                   help="weight of the cross-entropy (1.0; CRD's KD baseline uses 0.1 with --kd_weight 0.9)")
    g.add_argument("--stage_two_epoch", type=int, default=200,
                   help="last epoch of stage 1; the frozen copy is taken after it (paper: 200 of 300). "
                        "0 = no stage 1, only with --teacher")
    g.add_argument("--stage_two_decay_rate", type=NON_NEGATIVE_FLOAT, default=0.1,
                   help="stage 2's cosine schedule restarts at this fraction of --learning_rate (paper: 0.1)")
    g.add_argument("--weight_decay_coef", type=NON_NEGATIVE_FLOAT, default=1.0,
                   help="stage 1 uses weight_decay x this (paper: 2.0; original default 1.0)")
    g.add_argument("--update_memory_bank", action="store_true",
                   help="at the start of stage 2 fill the CRD memories (momentum 0): the current model's "
                        "embeddings into one, the frozen network's into the other; the same network in CTC "
                        "(paper: on)")
    g.add_argument("--train_projector", action="store_true",
                   help="train stage 1's projector too (original: a fixed random projection)")

    g = parser.add_argument_group("stage 1: instance discrimination")
    g.add_argument("--instance_dim", type=int, default=128, help="projection size (128)")
    g.add_argument("--instance_t", type=POSITIVE_FLOAT, default=0.1, help="softmax temperature (paper: 0.10 or 0.50)")
    g.add_argument("--instance_m", type=FRACTION, default=0.5, help="instance bank momentum (paper: 0.9)")

    g = parser.add_argument_group("stage 2: CRD / ITRD against the frozen network")
    g.add_argument("--stage_two_loss", default="crd", choices=["crd", "itrd"], help="stage 2 objective (crd)")
    g.add_argument("--contrast_feat_dim", type=int, default=128, help="CRD embedding size (128)")
    g.add_argument("--nce_k", type=int, default=16384, help="CRD negatives per sample (16384)")
    g.add_argument("--nce_t", type=POSITIVE_FLOAT, default=0.07, help="CRD temperature (paper: 0.10 or 0.40)")
    g.add_argument("--nce_m", type=FRACTION, default=0.5, help="CRD memory momentum (paper: 0.9)")
    g.add_argument("--mode", default="exact", choices=["exact", "relax"],
                   help="CRD negatives: exact = other classes only (default), relax = any other sample")
    g.add_argument("--lambda_corr", type=NON_NEGATIVE_FLOAT, default=2.0, help="ITRD correlation weight (2.0)")
    g.add_argument("--lambda_mutual", type=NON_NEGATIVE_FLOAT, default=1.0, help="ITRD mutual-information weight (1.0)")
    g.add_argument("--alpha_it", type=POSITIVE_FLOAT, default=1.01, help="ITRD Renyi order alpha (1.01)")

    g = parser.add_argument_group("external teacher (distillation)")
    g.add_argument("--teacher", default=None,
                   help="checkpoint used as the frozen network instead of the model's own stage-1 copy")
    g.add_argument("--teacher_model", default=None,
                   help="teacher architecture, for checkpoints that do not record it (original code)")
    g.add_argument("--kd_weight", type=NON_NEGATIVE_FLOAT, default=0.0,
                   help="weight of Hinton KD on the frozen network's logits in stage 2 (0; CRD's KD: 0.9)")
    g.add_argument("--kd_T", type=POSITIVE_FLOAT, default=4.0, help="KD temperature (4)")
    return parser


def run_name(args, teacher_arch=None):
    """Folder name; no ':' (the original's 'a:0.5') so it is a valid path everywhere."""
    if teacher_arch:
        name = (f"{args.model}_{args.dataset}_T{teacher_arch}_{args.stage_two_loss}_b{format_float(args.beta)}"
                + (f"_kd{format_float(args.kd_weight)}" if args.kd_weight > 0 else ""))
    else:
        name = f"{args.model}_{args.dataset}_a{format_float(args.alpha)}_b{format_float(args.beta)}"
    return f"{name}_{args.note}" if args.note else name


def main(args):
    check_ctc_args(args)
    with start_training(args.device, args.seed, args.batch_size) as env:
        device = env.device
        train_set, val_set = load_source_data(args.dataset, args.data_folder, args.augment, variant="instance",
                                              per_class=args.train_per_class)
        flags = settled_flags(args, device, train_set, 0)
        loop, config = loop_config(flags, 0), ctc_config(args)
        data = CTCData(config, loop.loader, train_set, device)  # checks --nce_k before anything is trained or written
        model = build_model(args.model, train_set.num_classes, device, speed_config(flags), args.sync_bn)
        teacher, teacher_arch = (load_teacher(args.teacher, args.teacher_model, train_set.num_classes, args.dataset,
                                              args.kd_weight, device) if args.teacher else (None, None))
        ctc = CTCObjective(config, sgd_config(args), model, len(train_set), device, teacher)
        optimizer = ctc.build_optimizer()
        return train_run(run_config(args, "train_ctc.py"), loop, vars(flags), run_name(args, teacher_arch), model,
                         optimizer, train_set, val_set, ctc.compute_loss, device, state=ctc.state(),
                         loader_for=data.loader_for, lr_phases=ctc.lr_phases(args.epochs),
                         before_epoch=lambda epoch: ctc.before_epoch(epoch, optimizer, data))


if __name__ == "__main__":
    run_cli(main, get_args_parser(), interrupted=INTERRUPTED_TRAINING)
