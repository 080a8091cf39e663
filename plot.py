#!/usr/bin/env python
"""Draw the paper's figures from the result files of one or more run folders.

    python plot.py save/model/<vanilla run> save/model/<ctc run> --out figures
    python plot.py save/model/*_trial_* save/model/*_ctc_s* --group_seeds --labels vanilla,ctc

Writes, as PNG and PDF, whichever of these have results:
  transfer.*           target accuracy per transfer protocol (linear probe, BatchNorm-train probe,
                       fine-tuning, other evaluation splits) vs source epoch; parameter distance
                       (fine-tuning); the source test accuracy each checkpoint records
  discriminability.*   Recall@1 and NMI vs epoch, per data set and split
  compression.*        NC1 (log scale), effective rank and coding rate vs epoch, per data set and split
  information.*        I(X;T) and I(T;Y) vs epoch on each data set, per estimator / layer; held-out
                       estimates (mine.py --holdout) solid with the fitted-rows bound dashed
  information_plane.*  I(X;T) against I(T;Y): a colour per run, marker size growing with the epoch
  transfer_concat.*    linear probes of concatenated checkpoints (transfer.py --concat)
What each file measured (data set, split, estimator, protocol) is read from the arguments the
sweep saved beside it (<results>.args.json). Runs are overlaid in one colour each, with MINE's
std as a band; with --group_seeds, runs that differ only in seed, trial or note are drawn as
their mean with a +- one-std band over seeds. A dotted line marks where CTC's stage two starts.
A figure, panel or curve without results is left out with a note; a damaged result file
is refused with its name and line.
"""
import argparse
import os
import sys

from helper.cli import HelpFormatter
from helper.core.checkpoint import DEFAULT_MODEL_ROOT
from helper.core.errors import UserError, run_cli
from helper.core.writes import check_output_folder
from helper.report.figures import FIGURES, load_series, save
from helper.report.seed_groups import group_runs


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (paths, or names under --model_path)")
    parser.add_argument("--model_path", default=DEFAULT_MODEL_ROOT,
                        help="where run folders live (default ./save/model)")
    parser.add_argument("--labels", default=None,
                        help="comma-separated legend labels: one per run, or with --group_seeds one per group "
                             "(default: the run folder names)")
    parser.add_argument("--out", default="figures", help="output folder (default figures)")
    parser.add_argument("--group_seeds", action="store_true",
                        help="draw runs whose saved arguments differ only in --seed/--trial/--note as one curve: "
                             "mean +- std over them")
    parser.add_argument("--transfer_metric", default="final_acc", choices=["final_acc", "best_acc_on_eval"],
                        help="final-epoch probe accuracy (default; honest) or best over probe epochs (the original's)")
    return parser


def resolve(run, model_path):
    for candidate in (run, os.path.join(model_path, run)):
        if os.path.isdir(candidate):
            return candidate
    raise UserError(f"run folder {run!r} not found as a path or under {model_path}/.")


def main(args):
    check_output_folder(args.out, "--out")
    run_dirs = [resolve(r, args.model_path) for r in args.runs]
    groups = group_runs(run_dirs) if args.group_seeds else [[r] for r in run_dirs]
    labels = args.labels.split(",") if args.labels else None
    if labels and len(labels) != len(groups):
        found = "; ".join(", ".join(os.path.basename(os.path.normpath(r)) for r in g) for g in groups)
        raise UserError(f"--labels has {len(labels)} entries for {len(groups)} "
                        f"{'groups of seeds' if args.group_seeds else 'runs'} ({found}).")
    series = load_series(groups, labels)
    if not any(results for s in series for results in s.results):
        raise UserError(f"no result files in {', '.join(run_dirs)}: run transfer.py, discriminability.py or "
                        "mine.py on these runs first (their CSVs are written into the run folder).")
    for s in series:
        if len(s.results) > 1:
            print(f"{s.label}: mean +- std over {', '.join(s.names)}")
    figures = {name: draw(series, args.transfer_metric) if name == "transfer" else draw(series)
               for name, draw in FIGURES.items()}
    written = [save(fig, args.out, name) for name, fig in figures.items() if fig is not None]
    print(f"{len(written)} figures in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
