#!/usr/bin/env python
"""Transferability of every saved checkpoint of a run: a linear probe (or fine-tuning) on a target data set.

The paper's sweep (ResNeXt-32 16x4d trained on CIFAR-100, linear probe on CINIC-10):

    python transfer.py --source_dataset cifar100 --target_dataset cinic10 --model resnext32_16x4d \\
        --ckpt_path <run folder> --start_epoch 2 --skip 2

Linear mode (the paper's protocol): the source network is frozen; its penultimate features
are extracted once per checkpoint (eval mode, no augmentation) and a new linear head is
trained on them for --epoch epochs (SGD, momentum 0.9, cosine schedule); top-1 accuracy on
the target's evaluation split is reported. Finetune mode trains every weight and also reports
the parameter-distance transferability of "Rethinking Two Consensuses of Transferability of
Pre-trained DNNs". --concat / --concat_paths transfer the concatenation of several checkpoints
(CATn of "Learning useful representations for shifting tasks and distributions") instead of
sweeping: --mode linear probes the concatenated frozen features, finetune trains the members side
by side under one head ([init]cat), two_stage fine-tunes each member alone (saved beside it as
finetuned_<target>/, reused by later runs) and then probes the concatenation ([2ft]cat); see
docs/rrl.md. Seed 002's fine-tuning protocol (docs/param_transferability.md):
--mode finetune --epochs 100 --batch_size 18 --lr 0.01 --wd 1e-4.

Results: <run folder>/transfer_<target>_<mode>[_bntrain][_<eval split>].csv (the suffixes only
for --bn_mode train and a non-default --eval_split), one row per checkpoint, appended as it
finishes; a rerun skips the checkpoints already there (--force recomputes). Columns: epoch,
final_acc (after the last probe epoch: the honest number), best_acc_on_eval (best over the
probe epochs, chosen on the evaluation split itself, which is what the original printed: an
optimistic number), best_epoch (1-based), source_acc (source test accuracy the checkpoint
records), param_transferability (finetune only: the mean over residual blocks of the
parameter-distance transferability, docs/param_transferability.md), seconds,
param_transferability_blocks (finetune only: JSON {block: value}). --cv K (small targets): a K-fold probe over
the target's train + eval images, in transfer_<target>_linear[_<eval split>]_cv<K>.csv, final_acc the mean
over folds, with final_acc_std, final_acc_sem and folds. Every sweep's last column is checkpoint_sha1, the
SHA-1 of the checkpoint file the row was computed from (docs/run_folder.md).
"""
import argparse
import sys
import time

from tqdm import tqdm

from dataset import DATASETS, dataset_names
from helper.cli import HelpFormatter, NoEffectFlag
from helper.cli.flags import NON_NEGATIVE_FLOAT, POSITIVE_FLOAT, POSITIVE_INT, int_list
from helper.cli.sweep import (check_output_folders, feature_args_parser, feature_config, run_flags, selection,
                              settled_sweep_flags, source_config, sweep_args_parser, sweep_config, sweep_device)
from helper.core.checkpoint import resolve_run_dir
from helper.core.errors import UserError, run_cli, warn
from helper.sweep import rrl
from helper.sweep import transfer as T
from helper.sweep.features import load_split
from helper.sweep.probe import ProbeConfig
from helper.sweep.results import KIND
from helper.sweep.runner import run_sweep
from helper.sweep.source_run import open_run, source_acc

DEFAULT_LR = {"linear": ProbeConfig.lr, "finetune": 0.01, "two_stage": 0.01}    # --lr's default per --mode


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter,
                                     parents=[sweep_args_parser(),
                                              feature_args_parser(model_default="resnext32_16x4d")])
    g = parser.add_argument_group("transfer")
    g.add_argument("--source_dataset", default="cifar100", choices=dataset_names(),
                   help="data set the run was trained on (paper: cifar100); the checkpoints' own record wins")
    g.add_argument("--target_dataset", default="cinic10", choices=dataset_names(), help="target data set (paper: cinic10)")
    g.add_argument("--eval_split", default=None,
                   help="target split to report accuracy on (default: the data set's evaluation split, "
                        "'valid' for cinic10 as in the paper, 'test' for the others)")
    g.add_argument("--mode", default=T.TransferConfig.mode, choices=["linear", "finetune", "two_stage"],
                   help="linear: frozen backbone, new linear head (paper); finetune: train every weight; "
                        "two_stage (with --concat/--concat_paths only): fine-tune each member, then probe")
    g.add_argument("--epoch", "--epochs", type=POSITIVE_INT, default=ProbeConfig.epochs,
                   help="epochs of probe / fine-tuning training (paper: 30; seed 002's fine-tuning: 100)")
    g.add_argument("--lr", type=POSITIVE_FLOAT, default=None,
                   help="initial SGD learning rate, cosine-annealed to 0 (default: "
                        f"{DEFAULT_LR['linear']} linear (paper), {DEFAULT_LR['finetune']} finetune and two_stage)")
    g.add_argument("--wd", type=NON_NEGATIVE_FLOAT, default=ProbeConfig.weight_decay,
                   help="SGD weight decay (paper: 5e-4; seed 002's fine-tuning: 1e-4)")
    g.add_argument("--batch", "--batch_size", type=POSITIVE_INT, default=ProbeConfig.batch_size,
                   help="training batch size (paper: 512; seed 002's fine-tuning: 18)")
    g.add_argument("--bn_mode", default=T.TransferConfig.bn_mode, choices=["eval", "train"],
                   help="linear mode only. eval (default): BatchNorm frozen, features extracted once per "
                        "checkpoint and cached. train: reproduces the original code, which ran the backbone "
                        "in train mode so BatchNorm statistics kept updating during the 'linear' probe; "
                        "features then cannot be cached and the backbone runs on every batch (much slower)")
    g.add_argument("--cv", type=int, default=T.TransferConfig.cv, metavar="K",
                   help="linear mode: K-fold cross-validated probe over the target's train and eval images pooled "
                        "(stratified folds seeded by --seed); final_acc is the mean over folds, with final_acc_std "
                        "and final_acc_sem = std / sqrt(K). For small targets (digits_b: 179 eval images). "
                        "Results in transfer_<target>_linear[_<eval split>]_cv<K>.csv (default: off)")
    g.add_argument("--target_per_class", type=POSITIVE_INT, default=None, metavar="N",
                   help="only the first N images of each class of the target's training split, the same for every "
                        "checkpoint (with --cv: the folds pool these and the whole eval split); makes the probe of a "
                        "large target cheap (default: all)")
    g.add_argument("--save_finetuned", action="store_true",
                   help="finetune mode: write the fine-tuned weights to <run folder>/finetuned_<target>/ckpt_epoch_<E>.pth")
    g.add_argument("--concat", type=int_list, default=None, metavar="E1,E2,...",
                   help="instead of a sweep, transfer the concatenation of these checkpoint epochs of the run "
                        "(CAT, Zhang & Bottou 2023) with --mode; one row in transfer_<target>_concat.csv")
    g.add_argument("--concat_paths", default=None, metavar="P1,P2,...",
                   help="checkpoint files (other runs, any architecture of the zoo) to add to the concatenation")
    g.add_argument("--probe_lr", type=POSITIVE_FLOAT, default=T.TransferConfig.probe_lr,
                   help="--mode two_stage: learning rate of the final linear probe on the fine-tuned members "
                        f"(default {T.TransferConfig.probe_lr}, the linear probe's)")
    g.add_argument("--name", action=NoEffectFlag, record=False,
                   reason="results are named after the target and protocol (transfer_<target>_<mode>...csv)",
                   help="the original's experiment name; accepted and ignored")
    return parser


def check_args(args):
    """Reject values the loops cannot use."""
    if args.mode == "two_stage" and not (args.concat or args.concat_paths):
        raise UserError("--mode two_stage fine-tunes the members of a concatenation: pass --concat E1,E2 "
                        "and/or --concat_paths p1,p2 (a single checkpoint is --mode finetune).")
    if args.bn_mode == "train" and (args.concat or args.concat_paths):
        raise UserError("--concat needs cached features, so it only works with --bn_mode eval.")
    if args.cv is not None and (args.cv < 2 or args.mode != "linear" or args.bn_mode != "eval"
                                or args.concat or args.concat_paths):
        raise UserError(f"--cv {args.cv}: the cross-validated probe needs K >= 2 and cached features "
                        "(--mode linear, --bn_mode eval, no --concat).")


def mode_defaults(args):
    """The flags whose default depends on others: --lr on --mode, --eval_split on the target's splits."""
    return {"lr": args.lr if args.lr is not None else DEFAULT_LR[args.mode],
            "eval_split": args.eval_split or DATASETS[args.target_dataset].eval_split}


def settled_flags(args, device):
    """The flags transfer.py is built from and records: `mode_defaults` filled in, the layout flags settled."""
    return settled_sweep_flags(args, device, **mode_defaults(args))


def probe_config(args):
    """--epoch, --lr (its --mode default when absent), --wd, --batch and --seed as a `ProbeConfig`."""
    return ProbeConfig(epochs=args.epoch, lr=mode_defaults(args)["lr"], weight_decay=args.wd, batch_size=args.batch,
                       seed=args.seed)


def transfer_config(args, device):
    """The flags as a `TransferConfig` for `device`; it records the settled flags (`settled_flags`) in the
    checkpoints it saves and beside its results."""
    flags = settled_flags(args, device)
    return T.TransferConfig(target_dataset=args.target_dataset, eval_split=flags.eval_split, mode=args.mode,
                            target_per_class=args.target_per_class, train=probe_config(args), bn_mode=args.bn_mode,
                            cv=args.cv, probe_lr=args.probe_lr,
                            save_finetuned=args.save_finetuned, force=args.force, features=feature_config(flags),
                            source=source_config(flags), flags=run_flags(flags))


def load_target(config):
    """The target splits of a `TransferConfig`: unaugmented train and eval, plus the augmented train split
    for fine-tuning."""
    name, root = config.target_dataset, config.features.data_folder
    info = DATASETS[name]
    per_class = config.target_per_class
    target = {"info": info, "train": load_split(name, info.train_split, root, per_class=per_class),
              "eval": load_split(name, config.eval_split, root)}
    if config.mode in ("finetune", "two_stage"):
        target["train_aug"] = load_split(name, info.train_split, root, augment="standard", per_class=per_class)
    return target


def report(head, row):
    """The original's one line per checkpoint."""
    text = f"{head}, Target Acc: {row['final_acc']:.2f} (best over epochs {row['best_acc_on_eval']:.2f})"
    if row.get("param_transferability") is not None:
        text += f", param transferability {row['param_transferability']:.4f}"
    tqdm.write(text)


def run_concat(args, config, run_dir, target, device):
    """One CAT evaluation with --mode's protocol: one row appended to <run folder>/transfer_<target>_concat.csv."""
    members = rrl.concat_members(run_dir, args.concat, args.concat_paths)
    results = KIND["transfer_concat"].results_file(run_dir, config.flags)
    paths = ";".join(path for _, path in members)
    with results.lock(wait=args.wait):
        results.repair()                  # first: an upgrade would turn a cut-off last line into a whole row
        results.add_protocol_column()
        if not args.force and any(row["paths"] == paths and row["protocol"] == args.mode
                                  for row in results.all_rows()):
            print(f"concat: these checkpoints are already in {results.path} with --mode {args.mode} "
                  "(--force recomputes)")
            return 0
        start = time.time()
        row = rrl.PROTOCOLS[args.mode](members, target, config, device)
        row.update(protocol=args.mode, epochs=";".join(label for label, _ in members), paths=paths,
                   seconds=time.time() - start)
        results.append(row)
    report(f"Concat {row['epochs']} ({args.mode}, feature size {row['feat_size']})", row)
    print(f"concat: results in {results.path}")
    return 0


def main(args):
    check_args(args)
    device = sweep_device(args)
    check_output_folders(args)
    config = transfer_config(args, device)
    run_dir = resolve_run_dir(args.ckpt_path, args.model_path)
    target = load_target(config)
    if args.concat or args.concat_paths:
        return run_concat(args, config, run_dir, target, device)
    source = open_run(run_dir, selection(args), config.source, source_dataset=args.source_dataset)
    if args.bn_mode == "train" and args.cache_dir and args.mode == "linear":
        warn("--cache_dir is ignored with --bn_mode train: the features change as BatchNorm updates.")
    sweep = sweep_config(args)
    results = KIND["transfer"].results_file(run_dir, config.flags, sweep.shard)
    init_state = T.load_init_state(run_dir) if args.mode == "finetune" else None

    def evaluate_one(epoch, path):
        start = time.time()
        model, ckpt = source.load(path, device)
        if args.mode == "finetune":
            row = T.finetune_checkpoint(model, epoch, init_state, target, config, device, path)
        else:
            row = T.linear_probe(model, path, target, config, device)
        row.update(source_acc=source_acc(ckpt), seconds=time.time() - start)
        report(f"Source Epoch: {epoch}", row)
        return row

    return run_sweep(sweep, config.flags, run_dir, results, evaluate_one,
                     label=f"transfer to {args.target_dataset}")


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
