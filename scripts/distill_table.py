"""The CIFAR-100 distillation tables of ITRD with this repository's numbers beside the published ones.

Reads the run folders scripts/distill_cifar100.sh writes under --model_path, prints both tables
(same family, across families; rows Teacher, Student, KD, CRD, ITRD) as Markdown and writes them
as Markdown and CSV. A measured cell is the mean +- sample std over the seeds that finished
(SEEDS=0,1,2), "—" where nothing has finished yet.

    python -m scripts.distill_table                       # -> save/distill/distill_cifar100.{md,csv}
    python -m scripts.distill_table --metric best --out_dir results
"""
import argparse
import os

from helper.cli import HelpFormatter
from helper.report.distill_results import METRICS, build_table, collect_runs, to_csv, to_markdown
from helper.core.checkpoint import atomic_write
from helper.core.errors import UserError, run_cli


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model_path", default="./save/model", help="where the run folders are (./save/model)")
    parser.add_argument("--dataset", default="cifar100", help="only runs on this data set count (cifar100)")
    parser.add_argument("--epochs", type=int, default=240,
                        help="only runs of this many epochs count, so short trial runs never mix in (240)")
    parser.add_argument("--metric", default="last", choices=sorted(METRICS),
                        help="last = the final epoch's test accuracy, what CRD's and ITRD's tables report "
                             "(default); best = the best epoch's, chosen on the test set itself (optimistic)")
    parser.add_argument("--out_dir", default="./save/distill",
                        help="writes distill_<dataset>.md and .csv here (./save/distill)")
    return parser


def main(args):
    if not os.path.isdir(args.model_path):
        raise UserError(f"--model_path {args.model_path} is not a folder; pass the MODEL_PATH the distillation "
                        "script wrote its runs to (default ./save/model).")
    cells = build_table(collect_runs(args.model_path, args.dataset, args.epochs, args.metric))
    markdown = (f"CIFAR-100 top-1 accuracy (%): ITRD's published numbers / this repository's {args.dataset} runs "
                f"({args.metric} epoch of {args.epochs}; mean ± sample std over seeds, n runs; — = not run yet)."
                "\n\n" + to_markdown(cells))
    print(markdown)
    stem = os.path.join(args.out_dir, f"distill_{args.dataset}")
    for suffix, text in ((".md", markdown), (".csv", to_csv(cells))):
        atomic_write(stem + suffix, lambda f: f.write(text.encode()))
    print(f"written: {stem}.md, {stem}.csv")
    return cells


if __name__ == "__main__":
    run_cli(main, get_args_parser())
