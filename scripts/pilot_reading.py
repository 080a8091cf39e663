"""What a timing pilot may read of a training run, and nothing else: its seconds per epoch and its source
training accuracy per epoch (log.txt `seconds` and `train_acc1`). No validation, transfer or information
number is read, so a size chosen from this table cannot have been chosen for its outcome.

    python -m scripts.pilot_reading save/model/<pilot run> [...]

Per run: epochs, the median seconds per epoch, the final training accuracy (the mean of the last
`--window` epochs, which damps the epoch-to-epoch noise of an augmented running mean), the saturation
epoch (the first epoch from which the centred `--window`-epoch mean stays within `--tolerance` points of
the final value) and whether it comes by `--by` of the run (the DATA=fashion protocol's rule: 2/3, so at
least the last third of the epochs comes after saturation).
"""
import argparse
import statistics
import sys

from helper.core.errors import UserError, run_cli
from helper.report.tradeoff_table import smooth
from helper.train.run_folder import read_log


def saturation(train_acc, window=5, tolerance=1.0):
    """(final training accuracy, 1-based saturation epoch) of a run's per-epoch training accuracies; the
    curve is smoothed as the results tables smooth theirs (a centred moving average, `window` odd)."""
    final = statistics.fmean(train_acc[-window:])
    smoothed = smooth(dict(enumerate(train_acc, 1)), window)
    epoch = len(train_acc)
    while epoch > 1 and smoothed[epoch - 1] >= final - tolerance:
        epoch -= 1
    return final, epoch


def reading(run_dir, window=5, tolerance=1.0, by=2 / 3):
    """One run's pilot reading as a dict; a run without epochs in its log.txt is a UserError."""
    records = [r for r in read_log(run_dir) if "train_acc1" in r]
    if not records:
        raise UserError(f"{run_dir}: no training epochs in its log.txt (is it a run folder of train_vanilla.py "
                        "or train_ctc.py that has trained at least one epoch?).")
    final, epoch = saturation([r["train_acc1"] for r in records], window, tolerance)
    epochs = len(records)
    return {"run": run_dir, "epochs": epochs, "seconds": statistics.median(r["seconds"] for r in records),
            "final": final, "saturated": epoch, "after": (epochs - epoch) / epochs, "ok": epoch <= by * epochs}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders of the pilot")
    parser.add_argument("--window", type=int, default=5, help="epochs averaged for the final value and the "
                        "smoothing (odd; default 5)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="points below the final value that count "
                        "as saturated (default 1)")
    parser.add_argument("--by", type=float, default=2 / 3, help="fraction of the epochs by which the run must be "
                        "saturated (default 2/3)")
    return parser


def main(args):
    print("| run | epochs | s / epoch (median) | final train acc | saturated at epoch | epochs after | "
          f"saturated by {args.by:.2f} of the run |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        r = reading(run, args.window, args.tolerance, args.by)
        print(f"| {r['run']} | {r['epochs']} | {r['seconds']:.1f} | {r['final']:.2f} | {r['saturated']} | "
              f"{100 * r['after']:.0f} % | {'yes' if r['ok'] else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
