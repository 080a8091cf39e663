"""How much of a MINE estimate is memorisation, checkpoint by checkpoint: per method and epoch (mean +- std over
seeds), the target bound of a critic fitted on every row, and of a critic fitted on part of the rows
(mi_<mode>_<target>_holdout.csv) on its own rows and on rows it never saw, the gap between those two, and how
many held-out fits chose their last evaluation as the best step (a fit still improving when it stopped).

    python -m scripts.memorisation_table --group vanilla RUN0 RUN1 RUN2 --group ctc RUN3 RUN4 RUN5 --target digits_b

Run it on the runs' own files (scripts/cpu_experiment.sh) and on longer refits of the same checkpoints
(scripts/mine_memorisation.sh): a gap that shrinks with more steps was under-fitting, one that stays is
memorisation.
"""
import argparse
import sys

from helper.cli import HelpFormatter
from helper.core.checkpoint import resolve_run_dir
from helper.core.errors import UserError, run_cli
from helper.core.stats import mean_std
from helper.report.tradeoff_table import MI_NAMES, fmt_mean_std, read_curve


def memorisation_rows(name, runs, target):
    """Table rows (strings) of one method: one per epoch that every run fitted, and per MI quantity."""
    rows = []
    for mode, quantity in MI_NAMES.items():
        full = [read_curve(run, f"mi_{mode}_{target}", "mi") for run in runs]
        held = f"mi_{mode}_{target}_holdout"
        training, unseen = ([read_curve(run, held, column) for run in runs] for column in ("mi_train", "mi"))
        best, iters = ([read_curve(run, held, column) for run in runs] for column in ("best_step", "iters"))
        epochs = sorted(set.intersection(*(set(c) for c in training + unseen))) if runs else []
        for epoch in epochs:
            cells = [fmt([c[epoch] for c in full]) if all(epoch in c for c in full) else "not measured",
                     fmt([c[epoch] for c in training]), fmt([c[epoch] for c in unseen]),
                     fmt([t[epoch] - u[epoch] for t, u in zip(training, unseen)])]
            last = sum(b.get(epoch) == i.get(epoch) for b, i in zip(best, iters))
            steps = sorted({int(i[epoch]) for i in iters if epoch in i})
            rows.append(f"| {name} | {quantity} | {epoch} | {'/'.join(map(str, steps))} | " + " | ".join(cells)
                        + f" | {last}/{len(runs)} |")
    return rows


def fmt(values):
    """'mean ± std' of `values` in nats, as the results tables write them."""
    return fmt_mean_std(mean_std(values), 3)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                        help="a method's name, then its run folders (one per seed)")
    parser.add_argument("--target", default="digits_b", help="data set of the mi_*_<target>*.csv files")
    parser.add_argument("--model_path", default="./save/model", help="where run folders given by name live")
    return parser


def main(args):
    lines = [f"MINE bounds on {args.target} (nats, mean ± std over seeds):", "",
             "| method | quantity | epoch | steps | fitted on every row | held-out fit, its training rows | "
             "held-out fit, unseen rows | gap (training − unseen) | held-out fits best at their last step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, *runs in args.group:
        if not runs:
            raise UserError(f"--group {name} names no run folder: pass --group NAME RUN [RUN ...].")
        rows = memorisation_rows(name, [resolve_run_dir(run, args.model_path) for run in runs], args.target)
        if not rows:
            raise UserError(f"--group {name}: no epoch has held-out fits (mi_xt_{args.target}_holdout.csv or "
                            f"mi_ty_{args.target}_holdout.csv) in every run; run mine.py --holdout on them first.")
        lines += rows
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
