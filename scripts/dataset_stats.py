"""Per-channel mean and std of a data set's train split, as the loaders deliver it (32x32 RGB in [0, 1]):
the `mean` / `std` of its registry entry.

    python -m scripts.dataset_stats fashion-mnist fashion_a fashion_b --data_folder ./data
"""
import argparse

import numpy as np

from dataset import DATASETS, dataset_names
from helper.cli import HelpFormatter
from helper.core.errors import run_cli

CHUNK = 10000           # images per step, so a memory-mapped set is never held as float at once


def channel_stats(data):
    """(mean, std) per channel of uint8 images (N, H, W, 3), in [0, 1], accumulated in float64."""
    total, squares, count = np.zeros(3), np.zeros(3), 0
    for start in range(0, len(data), CHUNK):
        pixels = np.asarray(data[start:start + CHUNK], dtype=np.float64).reshape(-1, 3) / 255.0
        total += pixels.sum(0)
        squares += np.square(pixels).sum(0)
        count += len(pixels)
    mean = total / count
    return mean, np.sqrt(squares / count - np.square(mean))


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("names", nargs="+", choices=dataset_names(), metavar="DATASET",
                        help="data sets to measure; one of: " + ", ".join(dataset_names()))
    parser.add_argument("--data_folder", default="./data", help="root of the data sets (default ./data)")
    return parser


def main(args):
    for name in args.names:
        info = DATASETS[name]
        data, _ = info.load(info, info.train_split, args.data_folder, False)
        mean, std = channel_stats(data)
        print(f"{name}: {len(data)} train images, mean ({', '.join(f'{v:.4f}' for v in mean)}), "
              f"std ({', '.join(f'{v:.4f}' for v in std)})")
    return 0


if __name__ == "__main__":
    run_cli(main, get_args_parser())
