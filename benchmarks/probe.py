"""Benchmark: one checkpoint's linear probe with cached features against the uncached loop.

cached:   extract the penultimate features of the train and eval split once (eval mode),
          then train the head on them (helper.sweep.probe.probe_cached), as transfer.py does;
uncached: run the frozen backbone on the images of every batch of every epoch
          (helper.sweep.probe.probe_backbone with bn_mode eval), as the original code did.
Both see the same data, model and seed, so their accuracies should agree. Target: the
cached probe at least 10x faster at 30 epochs on a GPU.

    python bench.py probe --model resnet8 --epochs 5 --device cpu
"""
import argparse

import torch

from benchmarks.common import device_name, ratio_row, timed, write_bench_json
from dataset import DATASETS, dataset_names, get_dataset, get_loader
from helper.cli import HelpFormatter
from helper.core.device import get_device
from helper.sweep.features import extract_features
from helper.sweep.probe import ProbeConfig, probe_backbone, probe_cached
from models import available_models, create_model, load_model


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="resnext32_16x4d", choices=available_models(), metavar="MODEL",
                        help="architecture (default resnext32_16x4d, the paper's)")
    parser.add_argument("--ckpt", default=None, help="checkpoint to probe (default: a freshly initialised --model)")
    parser.add_argument("--dataset", default="digits_b", choices=dataset_names(),
                        help="target data set (default digits_b, always present; cifar10 / cinic10 when downloaded)")
    parser.add_argument("--data_folder", default="./data", help="root of the data sets")
    parser.add_argument("--epochs", type=int, default=ProbeConfig.epochs, help="probe epochs (paper: 30)")
    parser.add_argument("--batch", type=int, default=ProbeConfig.batch_size, help="probe batch size (paper: 512)")
    parser.add_argument("--extract_batch", type=int, default=256, help="feature extraction batch size")
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader workers of extraction / evaluation")
    parser.add_argument("--device", default=None, help="cuda, cpu; default: CUDA when present")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers to this JSON file")
    return parser


def measure(args):
    """Cached and uncached probe of one checkpoint; a dict of seconds, speed-up and accuracies."""
    device = get_device(args.device)
    info = DATASETS[args.dataset]
    train_set = get_dataset(args.dataset, info.train_split, root=args.data_folder)
    eval_set = get_dataset(args.dataset, info.eval_split, root=args.data_folder, download=False)
    if args.ckpt:
        model, _ = load_model(args.ckpt, arch=args.model, device=device)
    else:
        torch.manual_seed(0)
        model = create_model(args.model, num_classes=info.num_classes).to(device)
    model.eval()
    probe = dict(config=ProbeConfig(epochs=args.epochs, batch_size=args.batch), num_classes=info.num_classes,
                 device=device)

    def cached():
        loaders = [get_loader(s, args.extract_batch, train=False, num_workers=args.num_workers)
                   for s in (train_set, eval_set)]
        (train_x, train_y), (eval_x, eval_y) = [extract_features(model, loader, device) for loader in loaders]
        return probe_cached(train_x, train_y, eval_x, eval_y, **probe)

    def uncached():
        return probe_backbone(model, train_set, eval_set, bn_mode="eval", num_workers=args.num_workers, **probe)

    timed(device, lambda: extract_features(model, get_loader(eval_set, args.extract_batch, train=False), device))  # warm-up
    fast, cached_s = timed(device, cached)
    slow, uncached_s = timed(device, uncached)
    result = {
        "model": args.model, "dataset": args.dataset, "epochs": args.epochs, "n_train": len(train_set),
        "n_eval": len(eval_set), "cached_s": cached_s, "uncached_s": uncached_s, "speedup": uncached_s / cached_s,
        "cached_final_acc": fast["final_acc"], "uncached_final_acc": slow["final_acc"],
        "device": device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    return result


def main(args):
    result = measure(args)
    cached_s, uncached_s = result["cached_s"], result["uncached_s"]
    n_train, n_eval = result["n_train"], result["n_eval"]
    print(f"{args.model} on {args.dataset} ({n_train} train / {n_eval} eval images), "
          f"{args.epochs} probe epochs, {result['device']}:")
    print(f"  cached features (extract once + probe): {cached_s:8.2f} s   final acc {result['cached_final_acc']:.2f}")
    print(f"  uncached (backbone every batch):        {uncached_s:8.2f} s   final acc {result['uncached_final_acc']:.2f}")
    print(f"  speed-up: {result['speedup']:.1f}x")
    write_bench_json(args.json, result)
    return 0


def table_row(args, device):
    """bench.py's probe row: the uncached probe's seconds against the cached one's, on --probe_dataset."""
    sizes = ["--model", "resnet8", "--epochs", "2"] if args.quick else ["--model", args.model]
    record = measure(get_args_parser().parse_args(sizes + ["--device", str(device), "--dataset", args.probe_dataset]))
    return ratio_row(f"probe {record['model']} {record['epochs']} ep {record['dataset']}", "s/ckpt",
                     record["uncached_s"], record["cached_s"], record, ratio=record["speedup"])
