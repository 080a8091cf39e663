#!/usr/bin/env python
"""One command for the speed table: each fast path against the original-style loop, same run.

  train   images/s of resnext32_16x4d at batch 64 on synthetic CIFAR-shaped uint8 data:
          DataLoader + PIL crop/flip + fp32 + per-step .item() (original) vs DeviceLoader
          (+ bf16 autocast and channels_last on CUDA, see helper/core/speed.py);
  ctc     seconds per CTC stage-2 step vs a plain cross-entropy step (scripts/bench_ctc.py);
  probe   one checkpoint's 30-epoch linear probe, uncached vs cached features
          (scripts/bench_transfer.py);
  mine    MINE iterations/s, numpy sampling + host copies vs on-device (scripts/bench_mine.py);
  discriminability
          one checkpoint's Recall@1 + NMI on 10,000 x 512 features of 100 classes (synthetic
          class-clustered Gaussians, the shape of ResNeXt features of the CIFAR-100 test set):
          Recall@1 and scikit-learn KMeans on the CPU (original) vs Recall@1 and the torch
          k-means on the device, both at --kmeans_n_init restarts;
  flags   training images/s on the device loader with each speed flag alone (--amp,
          --channels_last, --compile; --ablate picks) against all three off: the measurement
          that decides their CUDA defaults in helper/core/speed.py (amp does nothing on CPU).

ratio = our speed / reference speed (above 1: faster; for ctc, below 1 is the overhead).
The JSON (save/bench/ unless --json says where) keeps the device, torch version, date and
flags next to every number, so figures from different machines are never mixed.

    python bench.py --quick                  # a few minutes on a laptop CPU
    python bench.py --json bench_h100.json   # paper sizes, on the GPU when present
"""
import argparse
import contextlib
import datetime
import io
import os
import platform
import re
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

from dataset import DATASETS, build_transform, get_loader
from dataset.device_loader import DeviceLoader
from dataset.variants import ArrayDataset
from helper.cli import HelpFormatter
from helper.core.device import get_device
from helper.core.errors import UserError, run_cli
from helper.core.speed import autocast, device_name, prepare_model, write_bench_json
from helper.cli.speed import add_speed_args, describe, resolve_speed_args, speed_argv
from helper.train.setup import default_workers
from models import create_model

BENCHES = ("train", "ctc", "probe", "mine", "discriminability", "flags")
SPEED_FLAGS = ("amp", "channels_last", "compile")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    batches = iter(loader)
    images = 0
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start, images = time.perf_counter(), 0
        x, y = next(batches)[:2]
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if original:
            loss.item()
        images += len(y)
    synchronize(device)
    return images / (time.perf_counter() - start)


def fresh_model(name, device, options=None):
    """A seeded `name` for CIFAR-100 on `device`, prepared (channels_last, compile) as `options` say."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=100).to(device)
    return prepare_model(model, options) if options else model


def training_set(args):
    """The synthetic set of the training benchmarks: enough images for warmup + timed steps."""
    return synthetic_cifar(max(args.train_images, (args.train_steps + args.train_warmup) * args.batch_size))


def bench_train(args, device):
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
    return {"name": f"train {args.model} b{args.batch_size}", "unit": "images/s", "reference": reference,
            "ours": ours, "ratio": ours / reference,
            "config": {"images": len(dataset), "steps": args.train_steps, "warmup": args.train_warmup,
                       "num_workers": args.num_workers, "speed": describe(speed)}}


def bench_ctc_step(args, device):
    from scripts import bench_ctc           # each script imported where used: one broken import fails one row
    sizes = (["--model", "resnet8", "--nce_k", "256", "--n_data", "2048", "--steps", "10"] if args.quick else
             ["--model", args.model, "--batch_size", str(args.batch_size)])
    speed = speed_argv(resolve_speed_args(args, device))            # the same flags as the train row
    record = bench_ctc.main(bench_ctc.get_args_parser().parse_args(sizes + speed + ["--device", str(device)]))
    times = record["seconds_per_step"]
    return {"name": f"ctc stage-2 step {record['model']} k{record['nce_k']}", "unit": "ms/step",
            "reference": 1000 * times["plain"], "ours": 1000 * times["stage_two"],
            "ratio": times["plain"] / times["stage_two"], "config": record}


def bench_probe(args, device):
    from scripts import bench_transfer
    sizes = ["--model", "resnet8", "--epochs", "2"] if args.quick else ["--model", args.model]
    record = bench_transfer.measure(bench_transfer.get_args_parser().parse_args(
        sizes + ["--device", str(device), "--dataset", args.probe_dataset]))
    return {"name": f"probe {record['model']} {record['epochs']} ep {record['dataset']}", "unit": "s/ckpt",
            "reference": record["uncached_s"], "ours": record["cached_s"], "ratio": record["speedup"],
            "config": record}


def bench_mi(args, device):
    from scripts import bench_mine
    sizes = (["--rows", "2000", "--dim_a", "256", "--dim_b", "64", "--batch_size", "500", "--hidden_size", "256",
              "--iters", "20"] if args.quick else [])
    amp = ["--amp"] if resolve_speed_args(args, device).amp else []
    record = bench_mine.measure(bench_mine.build_parser().parse_args(sizes + amp + ["--device", str(device)]))
    config = record["config"]
    return {"name": f"mine b{config['batch_size']} {config['dim_a']}+{config['dim_b']}-d", "unit": "it/s",
            "reference": record["reference_it_per_s"], "ours": record["estimate_mi_it_per_s"],
            "ratio": record["speedup"], "config": record}


def clustered_features(rows, dim, classes, seed=0):
    """(features (rows, dim) float32, labels (rows,)): unit-norm noise around random class means of norm ~0.25,
    so k-means has to work: at 10,000 x 512, k 100, NMI ~0.94 (at 0.8x that separation the classes
    blur and NMI drops to ~0.2)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (rows,), generator=generator)
    means = torch.randn(classes, dim, generator=generator) * (0.25 / dim ** 0.5)
    return means[labels] + torch.randn(rows, dim, generator=generator) / dim ** 0.5, labels


def bench_discriminability(args, device):
    from helper.sweep.metrics import nmi_kmeans, recall_at_1
    rows, dim, classes = (1000, 64, 10) if args.quick else (args.disc_rows, args.disc_dim, args.disc_classes)
    features, labels = clustered_features(rows, dim, classes)

    def seconds_and_nmi(backend, where):
        synchronize(where)
        start = time.perf_counter()
        on = features.to(where), labels.to(where)
        recall_at_1(*on)
        nmi = nmi_kmeans(*on, num_classes=classes, n_init=args.kmeans_n_init, seed=0, backend=backend)
        return time.perf_counter() - start, nmi

    reference, reference_nmi = seconds_and_nmi("sklearn", torch.device("cpu"))
    ours, ours_nmi = seconds_and_nmi("torch", device)
    return {"name": f"discriminability {rows}x{dim} k{classes} n_init {args.kmeans_n_init}", "unit": "s/ckpt",
            "reference": reference, "ours": ours, "ratio": reference / ours,
            "config": {"rows": rows, "dim": dim, "classes": classes, "n_init": args.kmeans_n_init,
                       "nmi_sklearn": reference_nmi, "nmi_torch": ours_nmi}}


def bench_flags(args, device):
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
        rows.append({"name": f"flags +{flag} {args.model} b{args.batch_size}", "unit": "images/s",
                     "reference": reference, "ours": ours, "ratio": ours / reference,
                     "config": {"steps": args.train_steps, "warmup": args.train_warmup, "flag": flag,
                                "reference": describe(all_off)}})
    return rows


RUNNERS = {"train": bench_train, "ctc": bench_ctc_step, "probe": bench_probe, "mine": bench_mi,
           "discriminability": bench_discriminability, "flags": bench_flags}


def print_table(rows, header):
    print(header)
    width = max(len(row["name"]) for row in rows) + 2
    print(f"{'benchmark':<{width}}{'unit':<10}{'reference':>12}{'ours':>12}{'ratio':>9}")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<{width}}failed: {row['error']}")
        else:
            print(f"{row['name']:<{width}}{row['unit']:<10}{row['reference']:>12.2f}{row['ours']:>12.2f}"
                  f"{row['ratio']:>8.2f}x")


def main(args):
    device = get_device(args.device)
    for option, choices in (("only", BENCHES), ("ablate", SPEED_FLAGS)):
        unknown = set(getattr(args, option)) - set(choices)
        if unknown:
            raise UserError(f"--{option} takes {', '.join(choices)}; got {', '.join(sorted(unknown))}.")
    if args.train_steps is None:
        args.train_steps = 3 if args.quick else (200 if device.type == "cuda" else 10)
    if args.train_images is None:
        args.train_images = 50000 if device.type == "cuda" and not args.quick else 512
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = []
    for name in args.only:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            with contextlib.redirect_stdout(io.StringIO()):      # the scripts' own reports
                result = RUNNERS[name](argparse.Namespace(**vars(args)), device)
            rows.extend(result if isinstance(result, list) else [result])
        except Exception as err:                                   # report and go on with the others
            traceback.print_exc()
            rows.append({"name": name, "error": f"{type(err).__name__}: {err}"})
    record = {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
              "python": platform.python_version(), "date": datetime.datetime.now().astimezone().isoformat(),
              "cpu_threads": torch.get_num_threads(), "flags": vars(args), "results": rows}
    print_table(rows, f"{record['device_name']} ({device}) | torch {record['torch']} | {record['date'][:19]}"
                      f"{' | quick' if args.quick else ''}")
    path = None if args.no_json else (args.json or default_json_path(record))
    if path:
        write_bench_json(path, record)
        print(f"numbers, with the device they came from, in {path}")
    return 1 if any("error" in row for row in rows) else 0


def default_json_path(record):
    """save/bench/bench_<device name>_<date>[_quick].json: one file per machine and run, never overwritten."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", record["device_name"]).strip("-").lower() or "device"
    stamp = record["date"][:19].replace(":", "").replace("-", "")
    quick = "_quick" if record["flags"].get("quick") else ""
    return os.path.join("save", "bench", f"bench_{slug}_{stamp}{quick}.json")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (resnet8 for ctc/probe, 3 training steps, small MINE): minutes on a CPU")
    parser.add_argument("--only", nargs="+", default=list(BENCHES), metavar="NAME",
                        help=f"run only these of: {' '.join(BENCHES)}")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="where to write every number with device, torch, date and flags "
                             "(default: save/bench/bench_<device>_<date>.json)")
    parser.add_argument("--no_json", action="store_true", help="print the table only")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu; default: CUDA when present")
    parser.add_argument("--model", default="resnext32_16x4d", help="model of train (and, without --quick, ctc/probe)")
    parser.add_argument("--batch_size", type=int, default=64, help="training batch (paper: 64)")
    parser.add_argument("--num_workers", type=int, default=default_workers(),
                        help="DataLoader workers of the reference training loader")
    parser.add_argument("--train_steps", type=int, default=None, help="timed steps (default 200 GPU, 10 CPU, 3 quick)")
    parser.add_argument("--train_warmup", type=int, default=2, help="untimed steps first (loader start-up, cudnn)")
    parser.add_argument("--train_images", type=int, default=None,
                        help="synthetic set size (default 50000 on GPU, 512 on CPU)")
    parser.add_argument("--probe_dataset", default="digits_b", help="target set of the probe benchmark")
    parser.add_argument("--disc_rows", type=int, default=10000, help="discriminability: features (CIFAR-100 test)")
    parser.add_argument("--disc_dim", type=int, default=512, help="discriminability: feature size (resnext32_16x4d)")
    parser.add_argument("--disc_classes", type=int, default=100, help="discriminability: classes = clusters")
    parser.add_argument("--kmeans_n_init", type=int, default=10, help="discriminability: k-means restarts "
                        "(discriminability.py's default)")
    parser.add_argument("--ablate", nargs="+", default=list(SPEED_FLAGS), metavar="FLAG",
                        help=f"speed flags the flags benchmark tries one at a time: {' '.join(SPEED_FLAGS)} "
                             "(amp only on CUDA)")
    return add_speed_args(parser)


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
