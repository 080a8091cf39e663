#!/usr/bin/env python
"""Discriminability of every saved checkpoint of a run: Recall@1 and k-means NMI of its frozen features.

    python discriminability.py --ckpt_path <run folder> --start_epoch 2 --skip 2

For each checkpoint the penultimate features of the data set's evaluation split (or, with
--train_split, of its unaugmented training split, as in the paper's slides) are extracted in
eval mode; Recall@1 is the percent of samples whose leave-one-out cosine nearest neighbour
has the same label, NMI compares seeded k-means clusters (k = number of classes) with the
labels. Both run on the sweep's device (--device); --kmeans sklearn clusters with scikit-learn
on the CPU instead, the reference the torch k-means is tested against. Results: <run folder>/discriminability_<dataset>[_train].csv, one row per
checkpoint, resumable (--force recomputes).
"""
import argparse
import os
import sys
import time

from tqdm import tqdm

from dataset import DATASETS, dataset_names
from helper.cli import HelpFormatter
from helper.sweep import transfer as T
from helper.core.checkpoint import resolve_run_dir
from helper.core.errors import UserError, run_cli
from helper.sweep.metrics import KMEANS_BACKENDS, nmi_kmeans, recall_at_1
from helper.sweep.runner import ResultsCSV, add_sweep_args, parse_shard, run_sweep

FIELDS = ["epoch", "recall_at_1", "nmi", "source_acc", "seconds"]


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_sweep_args(parser, start_epoch=2, skip=2)
    T.add_feature_args(parser, model_default=None)
    g = parser.add_argument_group("discriminability")
    g.add_argument("--dataset", default=None, choices=dataset_names(),
                   help="data set to measure on (default: the source data set the checkpoints record; paper: cifar100)")
    g.add_argument("--train_split", action="store_true",
                   help="measure on the unaugmented training split instead of the evaluation split")
    g.add_argument("--n_init", type=int, default=10, help="k-means restarts (default 10)")
    g.add_argument("--kmeans", default="torch", choices=KMEANS_BACKENDS,
                   help="torch: k-means on --device, all restarts batched (default); sklearn: scikit-learn's "
                        "KMeans on the CPU, the reference (minutes per checkpoint at 10,000 x 512, k=100). "
                        "NMI agrees within 0.01; part of the results file's protocol")
    return parser


def metrics_of(features, labels, num_classes, args, device="cpu"):
    """{'recall_at_1' (percent), 'nmi' ([0, 1])} of features (N, D) and labels (N,), computed on `device`."""
    features, labels = features.to(device), labels.to(device)
    return {"recall_at_1": recall_at_1(features, labels),
            "nmi": nmi_kmeans(features, labels, num_classes=num_classes, n_init=args.n_init, seed=args.seed,
                              backend=args.kmeans)}


def main(args):
    if args.extract_batch < 1 or args.n_init < 1:
        raise UserError(f"--extract_batch and --n_init must be at least 1 (got {args.extract_batch}, {args.n_init}).")
    device = T.sweep_device(args)
    run_dir = resolve_run_dir(args.ckpt_path, args.model_path)
    first = T.check_run(run_dir, args)
    if args.dataset is None:
        args.dataset = first.get("dataset") if isinstance(first, dict) else None
        if args.dataset not in DATASETS:
            why = ("do not record a known source data set" if first is not None
                   else "selected here could not be read, so their source data set is unknown")
            raise UserError(f"the checkpoints in {run_dir} {why}; pass --dataset.")
    info = DATASETS[args.dataset]
    split = info.train_split if args.train_split else info.eval_split
    data = T.load_split(args.dataset, split, args)
    suffix = "_train" if args.train_split else ""
    results = ResultsCSV(os.path.join(run_dir, f"discriminability_{args.dataset}{suffix}.csv"), FIELDS,
                         parse_shard(args.shard))

    def evaluate_one(epoch, path):
        start = time.time()
        model, ckpt = T.load_source(path, args, device)
        features, labels = T.split_features(model, data, path, args, device, split)
        row = metrics_of(features, labels, info.num_classes, args, device)
        row.update(source_acc=T.source_acc(ckpt), seconds=time.time() - start)
        tqdm.write(f"Source Epoch: {epoch}, Recall@1: {row['recall_at_1']:.2f}, NMI: {row['nmi']:.4f} "
                   f"({args.dataset} {split})")
        return row

    return run_sweep(args, run_dir, results, evaluate_one, label=f"discriminability on {args.dataset} {split}")


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
