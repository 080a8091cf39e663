"""The results table of a seeded experiment: per method, the peak-transfer epoch, transfer at the peak and
at the end (mean +- std over seeds), the end-minus-peak drop and the MI trends with 95 % intervals, the
same end-minus-peak change of NC1, effective rank and coding rate (discriminability_<data set>.csv, where
measured) with each one's per-seed Spearman correlation with the target transfer, and each method's end
transfer against the first method's (Welch's interval). Protocol: helper/report/tradeoff_table.py.

    python -m scripts.results_table --group vanilla RUN0 RUN1 RUN2 --group ctc RUN3 RUN4 RUN5 \\
        --transfer transfer_digits_b_linear_cv5 --source digits_a --target digits_b --out results.md

A RUN is a run folder name under --model_path or any path; the runs of one --group differ only in seed.
"""
import argparse
import sys

from helper.core.checkpoint import atomic_write, resolve_run_dir
from helper.cli import HelpFormatter
from helper.cli.flags import number_in
from helper.core.errors import UserError, run_cli
from helper.report.tradeoff_table import TableSpec, summarise_method, to_markdown


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                        help="a method's name, then its run folders (one per seed); the first group is the baseline")
    parser.add_argument("--transfer", default="transfer_digits_b_linear_cv5",
                        help="stem of the transfer results file in each run (default transfer_digits_b_linear_cv5)")
    parser.add_argument("--source", default="digits_a", help="source data set of the mi_*_<source>.csv files")
    parser.add_argument("--target", default="digits_b", help="target data set of the mi_*_<target>.csv files")
    parser.add_argument("--window", type=int, default=3,
                        help="checkpoints in the centred moving average of each curve (odd; default 3)")
    parser.add_argument("--level", type=number_in(float, 0, 1, low_open=True, high_open=True), default=0.95,
                        help="confidence level of the intervals (0.95)")
    parser.add_argument("--model_path", default="./save/model", help="where run folders given by name live")
    parser.add_argument("--out", default=None, help="also write the Markdown to this file")
    return parser


def main(args):
    spec = TableSpec(args.transfer, args.source, args.target, args.window, args.level)
    summaries = []
    for name, *runs in args.group:
        if not runs:
            raise UserError(f"--group {name} names no run folder: pass --group NAME RUN [RUN ...].")
        run_dirs = [resolve_run_dir(run, args.model_path) for run in runs]   # a CheckpointError is a UserError
        summaries.append(summarise_method(name, run_dirs, spec))
    text = to_markdown(summaries, spec)
    print(text, end="")
    if args.out:
        atomic_write(args.out, lambda f: f.write(text.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
