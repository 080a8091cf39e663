#!/usr/bin/env python
"""Draw the paper's figures from the result CSVs of one or more run folders.

    python plot.py save/model/<vanilla run> save/model/<ctc run> --out figures

Writes, as PNG and PDF, whichever of these have results:
  transfer.*           linear-probe accuracy on each target vs source epoch
  discriminability.*   Recall@1 and NMI vs epoch
  information.*        I(X;T) and I(T;Y) vs epoch on each data set (the over-compression figure)
  information_plane.*  I(X;T) against I(T;Y), epoch as colour
Runs are overlaid; the legend is the run folder name (or --labels). A figure
without results is left out with a note, never a crash.
"""
import argparse
import fnmatch
import glob
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from helper.errors import UserError, run_cli  # noqa: E402
from helper.sweep import ResultsCSV  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (paths, or names under --model_path)")
    parser.add_argument("--model_path", default="./save/model", help="where run folders live")
    parser.add_argument("--labels", default=None, help="comma-separated legend labels, one per run")
    parser.add_argument("--out", default="figures", help="output folder")
    parser.add_argument("--transfer_metric", default="final_acc", choices=["final_acc", "best_acc_on_eval"],
                        help="final-epoch probe accuracy (honest) or best over probe epochs (the original's)")
    return parser


def read_series(run_dir, pattern):
    """{name: rows} for result files matching `pattern` in `run_dir`; a sweep run only as shards
    (`<name>.shard<I>of<N>.csv`) counts as well, its shard files merged with the main one."""
    series = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "*.csv"))):
        main = re.sub(r"\.shard\d+of\d+\.csv$", ".csv", path)
        name = os.path.splitext(os.path.basename(main))[0]
        if name in series or not fnmatch.fnmatch(os.path.basename(main), pattern):
            continue
        rows = ResultsCSV(main, []).rows()
        if rows:
            series[name] = rows
    return series


def column(rows, key):
    pairs = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def save(fig, out, name):
    paths = [os.path.join(out, f"{name}.{ext}") for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {paths[0]}")
    return paths[0]


def panel_grid(n):
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


MI_NAMES = {"xt": "I(X;T)", "ty": "I(T;Y)", "xy": "I(X;Y)"}


def describe(file):
    """Short panel titles from result file names: transfer_cinic10_linear -> 'cinic10 (linear)'."""
    kind, _, rest = file.partition("_")
    if kind == "mi":
        mode, _, dataset = rest.partition("_")
        return f"{MI_NAMES.get(mode, mode)} on {dataset}"
    if kind == "transfer":
        target, _, mode = rest.partition("_")
        return f"transfer to {target} ({mode})"
    return f"on {rest}"


def plot_lines(runs, pattern, panels, out, name, note, cols=None):
    """One subplot per (result file, metric): each run a line of the metric vs epoch.

    `cols(file)` optionally groups files into grid columns (the MI figure: one column per
    data set, one row per information quantity); by default panels fill a grid in order.
    """
    data = {label: read_series(run_dir, pattern) for label, run_dir in runs}
    keys = sorted({(f, m, t) for series in data.values() for f in series for m, t in panels})
    if not keys:
        print(f"note: no {note} results ({pattern}) in these runs; {name} figure left out")
        return None
    if cols:
        col_names = sorted({cols(f) for f, _, _ in keys})
        order = list(MI_NAMES)  # xt above ty above xy, as in the paper
        row_names = sorted({(f.replace(cols(f), ""), m) for f, m, _ in keys},
                           key=lambda r: (next((i for i, k in enumerate(order) if f"_{k}_" in r[0]), 9), r))
        fig, grid = plt.subplots(len(row_names), len(col_names), figsize=(4.6 * len(col_names), 3.4 * len(row_names)),
                                 squeeze=False)
        place = {k: grid[row_names.index((k[0].replace(cols(k[0]), ""), k[1])), col_names.index(cols(k[0]))]
                 for k in keys}
        for ax in grid.flat:
            ax.set_visible(ax in place.values())
    else:
        fig, axes = panel_grid(len(keys))
        place = dict(zip(keys, axes))
    for (file, metric, ylabel), ax in place.items():
        for label, series in data.items():
            if file in series:
                x, y = column(series[file], metric)
                ax.plot(x, y, marker="o", markersize=2.5, label=label)
        ax.set(title=describe(file), xlabel="source training epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out, name)


def plot_information_plane(runs, out):
    planes = []
    for label, run_dir in runs:
        xt, ty = read_series(run_dir, "mi_xt_*.csv"), read_series(run_dir, "mi_ty_*.csv")
        for file in xt:
            dataset = file[len("mi_xt_"):]
            if f"mi_ty_{dataset}" in ty:
                planes.append((label, dataset, xt[file], ty[f"mi_ty_{dataset}"]))
    if not planes:
        print("note: no run has both mi_xt_<dataset>.csv and mi_ty_<dataset>.csv; information plane left out")
        return None
    datasets = sorted({p[1] for p in planes})
    fig, axes = panel_grid(len(datasets))
    for ax, dataset in zip(axes, datasets):
        for label, ds, xt_rows, ty_rows in planes:
            if ds != dataset:
                continue
            ex, ix = column(xt_rows, "mi")
            ey, iy = column(ty_rows, "mi")
            common = sorted(set(ex) & set(ey))
            px = [ix[ex.index(e)] for e in common]
            py = [iy[ey.index(e)] for e in common]
            ax.plot(px, py, alpha=0.4, label=label)
            points = ax.scatter(px, py, c=common, cmap="viridis", s=14)
        fig.colorbar(points, ax=ax, label="epoch")
        ax.set(title=f"information plane on {dataset}", xlabel="I(X;T) [nats]", ylabel="I(T;Y) [nats]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out, "information_plane")


def resolve(run, model_path):
    for candidate in (run, os.path.join(model_path, run)):
        if os.path.isdir(candidate):
            return candidate
    raise UserError(f"run folder {run!r} not found as a path or under {model_path}/.")


def main(args):
    run_dirs = [resolve(r, args.model_path) for r in args.runs]
    labels = args.labels.split(",") if args.labels else [os.path.basename(os.path.normpath(r)) for r in run_dirs]
    if len(labels) != len(run_dirs):
        raise UserError(f"--labels has {len(labels)} entries for {len(run_dirs)} runs.")
    runs = list(zip(labels, run_dirs))
    os.makedirs(args.out, exist_ok=True)
    written = [
        plot_lines(runs, "transfer_*_linear.csv", [(args.transfer_metric, "target accuracy (%)")],
                   args.out, "transfer", "transfer"),
        plot_lines(runs, "discriminability_*.csv", [("recall_at_1", "Recall@1 (%)"), ("nmi", "NMI")],
                   args.out, "discriminability", "discriminability"),
        plot_lines(runs, "mi_*.csv", [("mi", "nats")], args.out, "information", "MINE",
                   cols=lambda file: file.split("_", 2)[2]),
        plot_information_plane(runs, args.out),
    ]
    written = [w for w in written if w]
    print(f"{len(written)} figures in {args.out}/" if written else f"no results to plot in {', '.join(run_dirs)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
