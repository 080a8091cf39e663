#!/usr/bin/env python
"""Draw the paper's figures from the result CSVs of one or more run folders.

    python plot.py save/model/<vanilla run> save/model/<ctc run> --out figures

Writes, as PNG and PDF, whichever of these have results:
  transfer.*           linear-probe accuracy on each target vs source epoch
  discriminability.*   Recall@1 and NMI vs epoch
  information.*        I(X;T) and I(T;Y) vs epoch on each data set (the over-compression figure)
  information_plane.*  I(X;T) against I(T;Y), epoch as colour
Runs are overlaid; the legend is the run folder name (or --labels). A figure,
panel or curve without results is left out with a note, never a crash.
"""
import argparse
import fnmatch
import glob
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.cm  # noqa: E402
import matplotlib.colors  # noqa: E402
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
    """Short panel titles from result file names: transfer_digits_b_linear -> 'transfer to digits_b (linear)'."""
    kind, _, rest = file.partition("_")
    if kind == "mi":
        mode, _, dataset = rest.partition("_")
        return f"{MI_NAMES.get(mode, mode)} on {dataset}"
    if kind == "transfer":
        target, _, mode = rest.rpartition("_")   # data set names may hold '_' (digits_b); the mode does not
        return f"transfer to {target} ({mode})"
    return f"on {rest}"


def note_gaps(data, keys, figure, expected=()):
    """Print a note for every panel or curve a figure leaves out, so nothing vanishes silently.

    data: {run label: {file: rows}}; keys: the (file, metric, ylabel) panels drawn;
    expected: further file names the figure would have a panel for (e.g. the I(T;Y)
    partner of an I(X;T) file): missing in every run, their panel is left out.
    """
    files = sorted({f for f, _, _ in keys})
    for file in sorted(set(expected) - set(files)):
        print(f"note: no run has {file}.csv; the '{describe(file)}' panel of {figure} is left out")
    for label, series in data.items():
        for file in files:
            if file not in series:
                print(f"note: {label} has no {file}.csv; its curve is left out of {figure}")
        for file, metric, _ in keys:
            if file in series and not column(series[file], metric)[0]:
                print(f"note: {file}.csv of {label} has no '{metric}' values; its curve is left out of {figure}")


def lines_figure(runs, pattern, panels, name, note, cols=None, expected=None):
    """One subplot per (result file, metric): each run a line of the metric vs epoch; None without data.

    `cols(file)` optionally groups files into grid columns (the MI figure: one column per
    data set, one row per information quantity); by default panels fill a grid in order.
    `expected(files)` names further files whose absence deserves a note.
    """
    data = {label: read_series(run_dir, pattern) for label, run_dir in runs}
    keys = sorted({(f, m, t) for series in data.values() for f in series for m, t in panels})
    if not keys:
        print(f"note: no {note} results ({pattern}) in these runs; {name} figure left out")
        return None
    note_gaps(data, keys, name, expected({f for f, _, _ in keys}) if expected else ())
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
    return fig


def mi_partners(files):
    """For every data set with some MI file, the I(X;T) and I(T;Y) files the paper's figure shows."""
    datasets = {f.split("_", 2)[2] for f in files}
    return {f"mi_{mode}_{d}" for mode in ("xt", "ty") for d in datasets}


RUN_MARKERS = "osD^vP*X"


def information_plane_figure(runs):
    """I(X;T) vs I(T;Y) per data set; one epoch colour scale shared by every run (None without data)."""
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
    points = []
    for label, dataset, xt_rows, ty_rows in planes:
        (ex, ix), (ey, iy) = column(xt_rows, "mi"), column(ty_rows, "mi")
        common = sorted(set(ex) & set(ey))
        points.append((label, dataset, common, [ix[ex.index(e)] for e in common], [iy[ey.index(e)] for e in common]))
    epochs = [e for _, _, common, _, _ in points for e in common] or [0]
    norm = matplotlib.colors.Normalize(min(epochs), max(epochs))   # vanilla's 200 and CTC's 300 epochs on one scale
    markers = {label: RUN_MARKERS[i % len(RUN_MARKERS)] for i, (label, _) in enumerate(runs)}
    datasets = sorted({p[1] for p in planes})
    fig, axes = panel_grid(len(datasets))
    for ax, dataset in zip(axes, datasets):
        for label, ds, common, px, py in points:
            if ds == dataset:
                ax.plot(px, py, alpha=0.4, color="grey", linewidth=0.8)
                ax.scatter(px, py, c=common, cmap="viridis", norm=norm, s=16, marker=markers[label], label=label)
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="epoch")
        ax.set(title=f"information plane on {dataset}", xlabel="I(X;T) [nats]", ylabel="I(T;Y) [nats]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


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
    figures = {
        "transfer": lines_figure(runs, "transfer_*_linear.csv", [(args.transfer_metric, "target accuracy (%)")],
                                 "transfer", "transfer"),
        "discriminability": lines_figure(runs, "discriminability_*.csv",
                                         [("recall_at_1", "Recall@1 (%)"), ("nmi", "NMI")],
                                         "discriminability", "discriminability"),
        "information": lines_figure(runs, "mi_*.csv", [("mi", "nats")], "information", "MINE",
                                    cols=lambda file: file.split("_", 2)[2], expected=mi_partners),
        "information_plane": information_plane_figure(runs),
    }
    written = [save(fig, args.out, name) for name, fig in figures.items() if fig is not None]
    print(f"{len(written)} figures in {args.out}/" if written else f"no results to plot in {', '.join(run_dirs)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
