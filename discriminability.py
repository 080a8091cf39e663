#!/usr/bin/env python
"""Discriminability and compression of every saved checkpoint of a run: Recall@1, k-means NMI, NC1,
effective rank and coding rate of its frozen features.

    python discriminability.py --ckpt_path <run folder> --start_epoch 2 --skip 2

For each checkpoint the penultimate features of the data set's evaluation split (or, with
--train_split, of its unaugmented training split, as in the paper's slides) are extracted in
eval mode; Recall@1 is the percent of samples whose leave-one-out cosine nearest neighbour
has the same label, NMI compares seeded k-means clusters (k = number of classes) with the
labels. Both run on the sweep's device (--device); --kmeans sklearn clusters with scikit-learn
on the CPU instead, the reference the torch k-means is tested against. Three measures of how
compressed the features are, exact and in float64 on the CPU (helper/sweep/metrics.py): NC1, the
within-class variability relative to the spread of the class means (0: every class collapsed to a
point); the effective rank of the feature matrix; the coding rate of the unit-normalised features
in nats, at epsilon^2 = 0.5. Results: <run folder>/discriminability_<dataset>[_train].csv, one row
per checkpoint, resumable (--force recomputes).
"""
import argparse
import sys
import time

from tqdm import tqdm

from dataset import DATASETS, dataset_names
from helper.cli import HelpFormatter
from helper.cli.flags import POSITIVE_INT
from helper.cli.sweep import (check_output_folders, feature_args_parser, feature_config, run_flags, selection,
                              settled_sweep_flags, source_config, sweep_args_parser, sweep_config, sweep_device)
from helper.core.checkpoint import resolve_run_dir
from helper.core.errors import UserError, run_cli
from helper.sweep.features import load_split, split_features
from helper.sweep.metrics import KMEANS_BACKENDS, coding_rate, effective_rank, nc1, nmi_kmeans, recall_at_1
from helper.sweep.results import KIND
from helper.sweep.runner import run_sweep
from helper.sweep.source_run import open_run, source_acc

def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter,
                                     parents=[sweep_args_parser(),
                                              feature_args_parser(model_default=None)])
    g = parser.add_argument_group("discriminability")
    g.add_argument("--dataset", default=None, choices=dataset_names(),
                   help="data set to measure on (default: the source data set the checkpoints record; paper: cifar100)")
    g.add_argument("--train_split", action="store_true",
                   help="measure on the unaugmented training split instead of the evaluation split")
    g.add_argument("--n_init", type=POSITIVE_INT, default=10, help="k-means restarts (default 10)")
    g.add_argument("--kmeans", default="torch", choices=KMEANS_BACKENDS,
                   help="torch: k-means on --device, all restarts batched (default); sklearn: scikit-learn's "
                        "KMeans on the CPU, the reference (minutes per checkpoint at 10,000 x 512, k=100). "
                        "NMI agrees within 0.01; part of the results file's protocol")
    return parser


def metrics_of(features, labels, num_classes, n_init, seed, kmeans, device):
    """{'recall_at_1' (percent), 'nmi' ([0, 1]), 'nc1', 'effective_rank', 'coding_rate' (nats)} of features
    (N, D) and labels (N,): Recall@1 and NMI (of `n_init` seeded k-means restarts with the `kmeans` backend)
    computed on `device`, the three compression measures in float64 on the CPU."""
    features, labels = features.to(device), labels.to(device)
    return {"recall_at_1": recall_at_1(features, labels),
            "nmi": nmi_kmeans(features, labels, num_classes=num_classes, n_init=n_init, seed=seed, backend=kmeans),
            "nc1": nc1(features, labels), "effective_rank": effective_rank(features),
            "coding_rate": coding_rate(features)}


def measured_dataset(args, first, run_dir):
    """--dataset, or when absent the source data set the run's first selected checkpoint (`first`) records."""
    if args.dataset is not None:
        return args.dataset
    recorded = first.get("dataset") if isinstance(first, dict) else None
    if recorded not in DATASETS:
        why = ("do not record a known source data set" if first is not None
               else "selected here could not be read, so their source data set is unknown")
        raise UserError(f"the checkpoints in {run_dir} {why}; pass --dataset.")
    return recorded


def main(args):
    device = sweep_device(args)
    check_output_folders(args)
    flags = settled_sweep_flags(args, device)
    features = feature_config(flags)
    run_dir = resolve_run_dir(args.ckpt_path, args.model_path)
    source = open_run(run_dir, selection(args), source_config(flags))
    dataset = measured_dataset(args, source.first, run_dir)
    flags = settled_sweep_flags(args, device, dataset=dataset)      # recorded with the data set measured
    info = DATASETS[dataset]
    split = info.train_split if args.train_split else info.eval_split
    data = load_split(dataset, split, args.data_folder)
    sweep = sweep_config(args)
    results = KIND["discriminability"].results_file(run_dir, vars(flags), sweep.shard)

    def evaluate_one(epoch, path):
        start = time.time()
        model, ckpt = source.load(path, device)
        feats, labels = split_features(lambda: model, data, split, path, features, device)
        row = metrics_of(feats, labels, info.num_classes, args.n_init, args.seed, args.kmeans, device)
        row.update(source_acc=source_acc(ckpt), seconds=time.time() - start)
        tqdm.write(f"Source Epoch: {epoch}, Recall@1: {row['recall_at_1']:.2f}, NMI: {row['nmi']:.4f}, "
                   f"NC1: {row['nc1']:.4g}, effective rank: {row['effective_rank']:.2f}, "
                   f"coding rate: {row['coding_rate']:.2f} ({dataset} {split})")
        return row

    return run_sweep(sweep, run_flags(flags), run_dir, results, evaluate_one,
                     label=f"discriminability on {dataset} {split}")


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
