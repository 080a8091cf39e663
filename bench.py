#!/usr/bin/env python
"""One command for the speed table: each fast path against the original-style loop, same run.

  train   images/s of resnext32_16x4d at batch 64 on synthetic CIFAR-shaped uint8 data:
          DataLoader + PIL crop/flip + fp32 + per-step .item() (original) vs DeviceLoader
          (+ bf16 autocast and channels_last on CUDA, see helper/core/speed.py);
  ctc     seconds per CTC stage-2 step vs a plain cross-entropy step (benchmarks/ctc.py);
  probe   one checkpoint's 30-epoch linear probe, uncached vs cached features
          (benchmarks/probe.py);
  mine    MINE iterations/s, numpy sampling + host copies vs on-device (benchmarks/mine.py);
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

One piece alone, with its own flags (see python bench.py ctc --help):

    python bench.py cpu                      # CPU training variants vs fp32 eager, fraction of peak, loss check
    python bench.py ctc --model resnet8 --steps 5 --device cpu
    python bench.py probe --model resnet8 --epochs 5 --device cpu
    python bench.py mine --check             # MINE's precision on known-MI cases
"""
import argparse
import contextlib
import datetime
import importlib
import io
import os
import platform
import re
import sys
import traceback

import torch

from benchmarks.common import device_record, print_table, write_bench_json
from helper.cli import HelpFormatter
from helper.cli.speed import add_speed_args
from helper.core.device import get_device
from helper.core.errors import UserError, run_cli
from helper.core.speed import SPEED_FLAGS
from helper.train.setup import default_workers

# name -> (module of benchmarks/, its function of (args, device) returning a row or a list of rows)
RUNNERS = {"train": ("train", "train_row"), "ctc": ("ctc", "table_row"), "probe": ("probe", "table_row"),
           "mine": ("mine", "table_row"), "discriminability": ("discriminability", "table_row"),
           "flags": ("train", "flag_rows")}
BENCHES = tuple(RUNNERS)
PIECES = ("ctc", "probe", "mine", "cpu")     # the benchmarks with their own command line: python bench.py PIECE ...


def run_benchmark(name, args, device):
    """The rows of one benchmark; its module is imported here, so one broken import fails one row."""
    module, function = RUNNERS[name]
    return getattr(importlib.import_module(f"benchmarks.{module}"), function)(args, device)


def sized(args, device):
    """The flags with an absent --train_steps and --train_images sized for `device` and --quick (a copy; `args`
    stays as parsed)."""
    cuda = device.type == "cuda"
    steps = args.train_steps if args.train_steps is not None else 3 if args.quick else (200 if cuda else 10)
    images = args.train_images if args.train_images is not None else 50000 if cuda and not args.quick else 512
    return argparse.Namespace(**{**vars(args), "train_steps": steps, "train_images": images})


def main(args):
    device = get_device(args.device)
    for option, choices in (("only", BENCHES), ("ablate", SPEED_FLAGS)):
        unknown = set(getattr(args, option)) - set(choices)
        if unknown:
            raise UserError(f"--{option} takes {', '.join(choices)}; got {', '.join(sorted(unknown))}.")
    flags = sized(args, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = []
    record = {**device_record(device), "python": platform.python_version(),
              "date": datetime.datetime.now().astimezone().isoformat(), "cpu_threads": torch.get_num_threads(),
              "flags": vars(flags), "results": rows}
    path = None if flags.no_json else (flags.json or default_json_path(record))
    for name in flags.only:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            with contextlib.redirect_stdout(io.StringIO()):      # the scripts' own reports
                result = run_benchmark(name, argparse.Namespace(**vars(flags)), device)
            rows.extend(result if isinstance(result, list) else [result])
        except Exception as err:                                   # report and go on with the others
            traceback.print_exc()
            rows.append({"name": name, "error": f"{type(err).__name__}: {err}"})
        write_bench_json(path, record)                             # after each: a stopped run keeps its rows
    print_table(rows, f"{record['device_name']} ({device}) | torch {record['torch']} | {record['date'][:19]}"
                      f"{' | quick' if flags.quick else ''}")
    if path:
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


def run_piece(name, argv):
    """`python bench.py PIECE ...`: one benchmark with its own flags and report; exit 0, or 2 on a UserError."""
    module = importlib.import_module(f"benchmarks.{name}")
    parser = module.get_args_parser()
    parser.prog = f"bench.py {name}"
    run_cli(module.main, parser, argv)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in PIECES:
        sys.exit(run_piece(sys.argv[1], sys.argv[2:]))
    sys.exit(run_cli(main, get_args_parser()))
