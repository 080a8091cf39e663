#!/usr/bin/env python
"""Mutual information of every saved checkpoint of a run, estimated with MINE (Belghazi et al. 2018).

The paper's sweeps (ResNeXt-32 16x4d trained on CIFAR-100), each in nats per checkpoint:

    python mine.py --mode xt --model resnext32_16x4d --dataset cifar100 --ckpt_path <run folder> \\
        --lr 8e-5 --iter_num 1e+4 --start_epoch 2 --skip 2
    python mine.py --mode ty --model resnext32_16x4d --dataset cinic10 --ckpt_path <run folder> \\
        --lr 1e-5 --iter_num 2e+4 --start_epoch 2 --skip 2

Data: the evaluation split of --dataset (cifar100: the 10k test images; cinic10: valid), not
augmented, normalised. X is the flattened image (3*32*32 = 3072 values), T the checkpoint's
pooled penultimate feature in eval mode (--layer picks an earlier stage, flattened), Y the
one-hot label. X and Y are built once per invocation; only T is extracted per checkpoint.
A statistics network [a, b] -> 1024 -> 1024 -> 1024 -> 1 is trained with Adam on batches of
5000 pairs; the value reported is the mean of the bound over the last --window iterations
(with --holdout: the held-out bound of the critic's best checkpoint, docs/mine.md).
I(X;Y) does not depend on the checkpoint: it is fitted once and recorded for every epoch.

Results: <run folder>/mi_<mode>_<dataset>.csv (suffixed _<estimator>, _layer<L>, _holdout when
those differ from the paper's setting), one row per checkpoint, resumable (--force recomputes);
the per-iteration bounds go to <same stem>_history/epoch_<E>.npy.
"""
import argparse
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from dataset import DATASETS, dataset_names, get_loader
from helper.cli import HelpFormatter
from helper.cli.flags import POSITIVE_FLOAT, POSITIVE_INT, number_in
from helper.cli.sweep import (check_output_folders, feature_args_parser, feature_config, run_flags, selection,
                              settled_sweep_flags, source_config, sweep_args_parser, sweep_config, sweep_device)
from helper.core.checkpoint import atomic_write, resolve_run_dir
from helper.core.errors import UserError, run_cli, warn
from helper.sweep.features import load_split, split_features
from helper.sweep.mi import ESTIMATORS, EVAL_EVERY, MineConfig, estimate_mi, one_hot
from helper.sweep.results import KIND
from helper.sweep.runner import run_sweep
from helper.sweep.source_run import open_run

DEFAULT_WINDOW = MineConfig.window     # the paper's moving average: the last 500 iterations' bounds
SHORT_FIT = 1000            # iterations below which a ~0 estimate more likely means "not learned yet"
PAIRS = {"xt": ("X", "T"), "ty": ("T", "Y"), "xy": ("X", "Y")}


def whole_number(text):
    """argparse type: '1e+4' -> 10000, as the original's float --iter_num; 1.5 is rejected."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number such as 10000 or 1e+4, got {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def get_args_parser():
    features = feature_args_parser(
        model_default=None, extract_batch=512,
        amp_help=("bf16 autocast for feature extraction and the statistics network (bounds reduced in fp32); off "
                  "by default: docs/mine.md has the measured bf16 - fp32 differences"),
        no_amp_help="fp32 throughout, as in the paper (the default)",
        seed_help="seed of the statistics network's init and of the batch draws, so estimates repeat (default 0)")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter,
                                     parents=[sweep_args_parser(), features])
    g = parser.add_argument_group("mutual information")
    g.add_argument("--mode", required=True, choices=sorted(PAIRS),
                   help="xt: I(X;T), ty: I(T;Y), xy: I(X;Y) (paper: xt and ty on cifar100 and cinic10)")
    g.add_argument("--dataset", required=True, choices=dataset_names(),
                   help="data set whose evaluation split is measured (paper: cifar100 test, cinic10 valid)")
    g.add_argument("--source_dataset", default=None, choices=dataset_names(),
                   help="data set the run was trained on; used only when a checkpoint does not record its "
                        "number of classes (original checkpoints), which is otherwise read from its head")
    g.add_argument("--layer", type=int, default=-1,
                   help="T: -1 the pooled penultimate feature (paper); another index picks that stage "
                        "feature of model(x, is_feat=True), flattened")
    g.add_argument("--estimator", default=MineConfig.estimator, choices=ESTIMATORS,
                   help="bound to train and report (paper: mine, the Donsker-Varadhan bound); infonce scores "
                        "all R x R pairs of a sub-batch of R = min(batch, 512, sqrt(2^27 / hidden)) rows "
                        "(362 at hidden 1024), so its bound is capped at log R; the CSV's batch_size says R")
    g.add_argument("--lr", type=POSITIVE_FLOAT, default=MineConfig.lr,
                   help="Adam learning rate of the statistics network (paper: 8e-5 for xt, 1e-5 for ty)")
    g.add_argument("--iter_num", type=whole_number, default=MineConfig.iters,
                   help="training iterations; 1e+4 is accepted (paper: 1e+4 for xt, 2e+4 for ty)")
    g.add_argument("--batch_size", type=POSITIVE_INT, default=MineConfig.batch_size,
                   help="pairs per iteration (paper: 5000)")
    g.add_argument("--hidden_size", type=POSITIVE_INT, default=MineConfig.hidden_size,
                   help="width of the statistics network (paper: 1024)")
    g.add_argument("--window", type=POSITIVE_INT, default=None,
                   help=f"iterations averaged for the reported value (default: the last {DEFAULT_WINDOW}, or all of "
                        f"a shorter fit, as the paper's moving average)")
    g.add_argument("--ma_rate", type=number_in(float, 0, 1, low_open=True), default=MineConfig.ma_rate,
                   help="weight of each new batch in MINE's moving average of E[exp T] (the bias-corrected "
                        "gradient), in (0, 1] (paper: 0.01)")
    g.add_argument("--holdout", type=number_in(float, 0, 1, low_open=True, high_open=True), default=MineConfig.holdout,
                   metavar="FRACTION",
                   help="fit on the other rows; half of this held-out fraction (e.g. 0.5) picks the critic's best "
                        f"checkpoint (evaluated every {EVAL_EVERY} steps), the other half gives its bound (mi, std, "
                        "best_step); the training-rows value goes to mi_train (default: off, as the paper)")
    g.add_argument("--no_tf32", dest="tf32", action="store_false", default=MineConfig.tf32,
                   help="full-fp32 matmuls in the statistics network on CUDA (default: TF32 tensor cores "
                        "when --amp is off)")
    return parser


def check_args(args):
    """Refuse an explicit --window longer than the fit."""
    if args.window is not None and args.window > args.iter_num:
        raise UserError(f"--window {args.window} is longer than the fit (--iter_num {args.iter_num}): the "
                        "reported value would average every iteration, the untrained first ones included. "
                        "Use a --window of at most --iter_num (paper: 500 of 10^4).")


def fit_window(args):
    """--window, or when absent the last DEFAULT_WINDOW iterations of the fit (all of a shorter one)."""
    return args.window if args.window is not None else min(DEFAULT_WINDOW, args.iter_num)


def mine_config(args):
    """The estimator flags of the settled flags (`settled_sweep_flags`) as a `MineConfig`."""
    return MineConfig(estimator=args.estimator, iters=args.iter_num, batch_size=args.batch_size, lr=args.lr,
                      hidden_size=args.hidden_size, ma_rate=args.ma_rate, window=args.window, holdout=args.holdout,
                      seed=args.seed, amp=bool(args.amp), tf32=args.tf32, compile=bool(args.compile),
                      progress=not args.no_progress)


def image_table(dataset, features):
    """(X (N, 3072) flattened normalised images, labels (N,) int64) on CPU, in loader order; `features`: the
    sweep's `FeatureConfig` (batch size, workers, progress)."""
    loader = get_loader(dataset, features.extract_batch, train=False, num_workers=features.num_workers)
    images, labels = [], []
    for batch in tqdm(loader, desc="images", disable=not features.progress, leave=False):
        images.append(batch[0].flatten(1).float())
        labels.append(torch.as_tensor(batch[1], dtype=torch.long))
    if not images:
        raise UserError(f"the {dataset.info.name} evaluation split is empty: no images to estimate MI on.")
    return torch.cat(images), torch.cat(labels)


def report(result, epoch, mode, layer, arch, history_dir):
    """The original's line, warnings for skipped steps and a ~0 short fit, the history file; returns the CSV row."""
    x, y = PAIRS[mode]
    tqdm.write(f"I({x};{y}) of {arch} of {epoch}-th epoch is : {result['mi']}")
    if "best_step" in result:
        tqdm.write(f"  held-out bound {result['mi']:.4f} +- {result['std']:.4f} (critic of step "
                   f"{result['best_step']}), training rows {result['mi_train']:.4f}")
    if result["nan_steps"]:
        warn(f"epoch {epoch}: {result['nan_steps']} of {result['iters']} updates had a non-finite bound "
               "and were skipped; consider a lower --lr.")
    if abs(result.get("mi_train", result["mi"])) < 0.01 and result["iters"] < SHORT_FIT:
        warn(f"epoch {epoch}: the estimate is ~0 nats after only {result['iters']} iterations; the statistics "
               "network has probably not learned yet. Use more --iter_num (paper: 1e+4) or a higher --lr.")
    curves = {"": result["history"], "_holdout": result.get("holdout_curve")}
    for suffix, curve in curves.items():
        if curve is not None:
            atomic_write(os.path.join(history_dir, f"epoch_{epoch}{suffix}.npy"), lambda f: np.save(f, curve))
    row = {k: result.get(k) for k in KIND["mi"].columns if k in result}
    row["layer"] = None if mode == "xy" else layer
    return row


def clamp_notice(config, rows):
    """One line when --batch_size exceeds the rows a batch can be drawn from (the split, less any holdout)."""
    fit_rows = rows - int(round(rows * config.holdout)) if config.holdout is not None else rows
    if config.batch_size > fit_rows:
        warn(f"--batch_size {config.batch_size} exceeds the {fit_rows} rows to fit on; each batch "
               f"takes all {fit_rows} (the CSV's batch_size says so).")


def main(args):
    check_args(args)
    device = sweep_device(args)
    check_output_folders(args)
    flags = settled_sweep_flags(args, device, window=fit_window(args))
    features, config = feature_config(flags), mine_config(flags)
    run_dir = resolve_run_dir(args.ckpt_path, args.model_path)
    source = open_run(run_dir, selection(args), source_config(flags))
    # a checkpoint that does not record its classes (the original code's) takes --source_dataset's, else its head's
    source_classes = DATASETS[args.source_dataset].num_classes if args.source_dataset else None
    split = DATASETS[args.dataset].eval_split
    data = load_split(args.dataset, split, args.data_folder)
    tables = {}                                 # X and Y, built at the first checkpoint that needs them
    sweep = sweep_config(args)
    results = KIND["mi"].results_file(run_dir, vars(flags), sweep.shard)
    history_dir = os.path.splitext(results.path)[0] + "_history"
    clamp_notice(config, len(data))

    def evaluate_one(epoch, path):
        if not tables:
            x, labels = image_table(data, features) if args.mode != "ty" else (None, torch.as_tensor(data.targets))
            y = one_hot(labels, DATASETS[args.dataset].num_classes).to(device)
            tables.update(x=None if x is None else x.to(device), y=y)   # copied to the device once
        x, y = tables["x"], tables["y"]
        if args.mode == "xy":                   # independent of the checkpoint: one fit for every epoch
            if "xy" not in tables:
                tables["xy"] = estimate_mi(x, y, config, device)
            result = tables["xy"]
        else:
            # a cache hit reads the checkpoint only to hash it (its SHA-1 keys the cache)
            t, _ = split_features(lambda: source.load(path, device, default_classes=source_classes)[0], data, split,
                                  path, features, device, layer=args.layer)
            result = estimate_mi(x, t, config, device) if args.mode == "xt" else estimate_mi(t, y, config, device)
        return report(result, epoch, args.mode, args.layer, source.arch or os.path.basename(path), history_dir)

    label = f"I({';'.join(PAIRS[args.mode])}) on {args.dataset}"
    return run_sweep(sweep, run_flags(flags), run_dir, results, evaluate_one, label=label)


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
