"""The paper's figures from the result files of runs (helper/sweep/results.py says what each file holds).

    series = load_series([[run_a], [ctc_seed0, ctc_seed1]], ["vanilla", "ctc"])
    fig = transfer_figure(series, "final_acc")     # None when no run has transfer results

A series is one run, or runs that differ only in seed (helper/report/seed_groups.py): one colour in
every figure; a seed group is drawn as the mean with a band of +- one standard deviation over
seeds, a single run with MINE's own std as its band. CTC's stage switch is a dotted vertical
line. A panel or curve that has no data is left out with a printed note, never a crash.
"""
import os
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from helper.core.checkpoint import atomic_write  # noqa: E402
from helper.report.results import MI_QUANTITIES, find_results  # noqa: E402
from helper.report.seed_groups import group_label, run_args, seed_band  # noqa: E402

EPOCH_AXIS = "source training epoch"
MODE_ORDER = {"linear": 0, "finetune": 1}


@dataclass
class Series:
    """A run, or the runs of one configuration with several seeds."""
    label: str
    colour: str
    results: list           # per run: {stem: Result}
    names: list             # the run folders' names
    stage_two: int = None   # CTC: the last epoch of stage one (None for a run without stages)


@dataclass
class Panel:
    title: str
    ylabel: str
    lines: list             # (stem, column, band column or None, linestyle, legend suffix)
    yscale: str = "linear"  # "log" for a quantity that spans orders of magnitude (NC1)


def stage_two_of(args):
    """The epoch after which CTC's stage two runs, from the run's saved arguments (None: no switch to mark)."""
    s, epochs = (args or {}).get("stage_two_epoch"), (args or {}).get("epochs")
    return s if isinstance(s, int) and 0 < s and (not isinstance(epochs, int) or s < epochs) else None


def load_series(groups, labels=None):
    """One Series per group of run folders, coloured in order."""
    series = []
    for i, runs in enumerate(groups):
        names = [os.path.basename(os.path.normpath(r)) for r in runs]
        label = (labels[i] if labels else group_label(names)) + (f" ({len(runs)} seeds)" if len(runs) > 1 else "")
        stage = {stage_two_of(run_args(r)) for r in runs}
        results = [find_results(r) for r in runs]
        series.append(Series(label, f"C{i % 10}", results, names, stage.pop() if len(stage) == 1 else None))
        for stem in sorted({stem for found in results for stem in found}):
            having = [n for n, found in zip(names, results) if stem in found]
            if len(having) < len(runs):
                print(f"note: {label}: only {', '.join(having)} of its {len(runs)} runs have {stem}.csv; "
                      "its curve there is over those")
    return series


def stems(series, kind):
    """{stem: first Result of that stem} of a kind over every run of every series."""
    found = {}
    for s in series:
        for results in s.results:
            for stem, result in results.items():
                if result.kind.name == kind:
                    found.setdefault(stem, result)
    return found


def curve(s, stem, column, band_column=None):
    """(epochs, values, spread or None): one run's values (MINE's std as spread), or mean and std over seeds."""
    runs = [r[stem] for r in s.results if stem in r]
    curves = [c for c in (r.series(column) for r in runs) if c]
    if not curves:
        return None
    if len(curves) > 1:
        return seed_band(curves)
    epochs = sorted(curves[0])
    spread = None
    if band_column and len(runs) == 1:
        band = runs[0].series(band_column)
        spread = [band.get(e, 0.0) for e in epochs] if band else None
    return epochs, [curves[0][e] for e in epochs], spread


def draw_curve(ax, s, stem, column, band_column=None, linestyle="-", suffix=""):
    got = curve(s, stem, column, band_column)
    if got is None:
        return False
    epochs, values, spread = got
    ax.plot(epochs, values, color=s.colour, linestyle=linestyle, marker="o" if linestyle == "-" else None,
            markersize=2.5, label=s.label + suffix)
    if spread:
        ax.fill_between(epochs, [v - d for v, d in zip(values, spread)], [v + d for v, d in zip(values, spread)],
                        color=s.colour, alpha=0.18, linewidth=0)
    return True


def mark_stage_two(ax, series):
    for s in series:
        if s.stage_two:
            ax.axvline(s.stage_two + 0.5, color=s.colour, linestyle=":", linewidth=1.2,
                       label=f"{s.label}: stage two from epoch {s.stage_two + 1}")


def render(grid, series, name):
    """A figure of panels (rows of Panel or None); every series a curve per line; notes for missing curves."""
    cols = max(len(row) for row in grid)
    fig, axes = plt.subplots(len(grid), cols, figsize=(4.8 * cols, 3.6 * len(grid)), squeeze=False)
    for r, row in enumerate(grid):
        for c in range(cols):
            panel = row[c] if c < len(row) else None
            ax = axes[r][c]
            if panel is None:
                ax.set_visible(False)
                continue
            for s in series:
                for stem, column, band, style, suffix in panel.lines:
                    if not draw_curve(ax, s, stem, column, band, style, suffix) and not suffix:
                        what = (f"has no {stem}.csv" if not any(stem in found for found in s.results)
                                else f"has no '{column}' values in {stem}.csv")
                        print(f"note: {s.label} {what}; its curve is left out of {name}")
            mark_stage_two(ax, series)
            ax.set(title=panel.title, xlabel=EPOCH_AXIS, ylabel=panel.ylabel, yscale=panel.yscale)
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
    return with_legend(fig)


def with_legend(fig, handles=None):
    """One legend below the panels (every label once), so no panel's curves hide behind it."""
    if handles is None:
        handles = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
    fig.tight_layout()
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 3), fontsize=8, frameon=False)
    return fig


def where(facts):
    return f"{facts['dataset']} ({facts['split']} split)"


def rows_of(panels, width=3):
    return [panels[i:i + width] for i in range(0, len(panels), width)]


def transfer_figure(series, metric="final_acc"):
    """Target accuracy per transfer protocol and target, parameter distance (fine-tuning) and source accuracy."""
    found = stems(series, "transfer")
    if not found:
        print("note: no transfer results (transfer_<target>_<mode>*.csv) in these runs; transfer figure left out")
        return None
    panels = []
    for stem, result in sorted(found.items(), key=lambda kv: (kv[1].facts["dataset"] or "",
                                                                MODE_ORDER.get(kv[1].facts["mode"], 9), kv[0])):
        f = result.facts
        quantity = "linear-probe accuracy" if f["mode"] == "linear" else "fine-tuned accuracy"
        if metric == "best_acc_on_eval":
            quantity = f"best {quantity} over probe epochs"
        unit = result.quantities[metric].unit
        panels.append(Panel(f"transfer to {where(f)}\n{f['detail']}", f"{quantity} [{unit}]",
                            [(stem, metric, None, "-", "")]))
        if f["mode"] == "finetune" and any(r.get(stem) and r[stem].series("param_transferability")
                                           for s in series for r in s.results):
            quantity = result.quantities["param_transferability"]
            panels.append(Panel(f"parameter distance, fine-tuned on {where(f)}", quantity.label(),
                                [(stem, "param_transferability", None, "-", "")]))
    source = next((stem for stem in sorted(found) if any(r.get(stem) and r[stem].series("source_acc")
                                                         for s in series for r in s.results)), None)
    if source:
        dataset = found[source].facts.get("source") or "the source data set"
        panels.append(Panel(f"source accuracy on {dataset} (as each checkpoint records it)",
                            "source test accuracy [%]", [(source, "source_acc", None, "-", "")]))
    return render(rows_of(panels), series, "transfer")


def discriminability_figure(series):
    """Recall@1 then NMI, one row per data set and split measured."""
    found = stems(series, "discriminability")
    if not found:
        print("note: no discriminability results (discriminability_<dataset>.csv) in these runs; "
              "discriminability figure left out")
        return None
    grid = []
    for stem, result in sorted(found.items()):
        f, quantities = result.facts, result.quantities
        grid.append([Panel(f"{quantities[q].name} on {where(f)}", quantities[q].label(), [(stem, q, None, "-", "")])
                     for q in ("recall_at_1", "nmi")])
    return render(grid, series, "discriminability")


COMPRESSION = ("nc1", "effective_rank", "coding_rate")


def compression_figure(series):
    """NC1 (log scale), effective rank and coding rate, one row per data set and split measured; files written
    before these columns are left out with a note."""
    found = stems(series, "discriminability")
    measured = {stem: [q for q in COMPRESSION if any(r.get(stem) and r[stem].series(q)
                                                     for s in series for r in s.results)] for stem in found}
    for stem in sorted(stem for stem, columns in measured.items() if not columns):
        print(f"note: {stem}.csv has no nc1, effective_rank or coding_rate values (written before these columns; "
              "discriminability.py --force recomputes it); left out of compression")
    grid = []
    for stem, columns in sorted(measured.items()):
        f, quantities = found[stem].facts, found[stem].quantities
        if columns:
            grid.append([Panel(f"{quantities[q].name} on {where(f)}", quantities[q].label(),
                               [(stem, q, None, "-", "")], "log" if q == "nc1" else "linear") for q in columns])
    return render(grid, series, "compression") if grid else None


def mi_layout(found):
    """{(row, column): stem}: a column per data set, a row per quantity (I(X;T) above I(T;Y)) and variant."""
    order = list(MI_QUANTITIES)
    rows = sorted({(order.index(r.facts["mode"]) if r.facts["mode"] in order else 9, r.facts["variant"])
                   for r in found.values()})
    cols = sorted({where(r.facts) for r in found.values()})
    place = {}
    for stem, r in found.items():
        key = (order.index(r.facts["mode"]) if r.facts["mode"] in order else 9, r.facts["variant"])
        place[(rows.index(key), cols.index(where(r.facts)))] = stem
    return place, rows, cols


def information_figure(series):
    """I(X;T) and I(T;Y) per epoch on each data set; held-out estimates beside their fitted-rows bound (dashed).

    The panels run a row per quantity and variant, a column per data set, packed left to right: a combination
    no run has (held-out estimates often exist on the target only) leaves no empty cell, only a note.
    """
    found = stems(series, "mi")
    if not found:
        print("note: no MINE results (mi_<mode>_<dataset>*.csv) in these runs; information figure left out")
        return None
    place, rows, cols = mi_layout(found)
    panels = []
    for r, (mode_index, variant) in enumerate(rows):
        for c, col in enumerate(cols):
            stem = place.get((r, c))
            if stem is None:
                quantity = list(MI_QUANTITIES.values())[mode_index] if mode_index < 9 else "MI"
                print(f"note: no run has {quantity} on {col}{f' ({variant})' if variant else ''}; "
                      "that panel of information is left out")
                continue
            f = found[stem].facts
            lines = [(stem, "mi", "std", "-", "")]
            if f["holdout"]:
                lines.append((stem, "mi_train", None, "--", " (fitted rows)"))
            title = f"{f['quantity']} on {where(f)}" + (f"\n{f['variant']}" if f["variant"] else "")
            unit = found[stem].quantities["mi"].unit
            panels.append(Panel(title, f"{f['quantity']} on {f['dataset']} [{unit}]", lines))
    return render(rows_of(panels, len(cols)), series, "information")


def information_plane_figure(series):
    """I(X;T) against I(T;Y): a column per data set, a row per estimator variant; a colour per run,
    marker size growing with the epoch (one size scale for every run and panel)."""
    pairs = {}
    for stem, r in stems(series, "mi").items():
        if r.facts["mode"] in ("xt", "ty"):
            pairs.setdefault((r.facts["variant"], r.facts["dataset"], where(r.facts)), {})[r.facts["mode"]] = stem
    pairs = {k: v for k, v in sorted(pairs.items()) if len(v) == 2}
    if not pairs:
        print("note: no run has both mi_xt_<dataset> and mi_ty_<dataset> results; information plane left out")
        return None
    points = {}
    for key, p in pairs.items():
        for s in series:
            xt, ty = curve(s, p["xt"], "mi"), curve(s, p["ty"], "mi")
            if not (xt and ty):
                print(f"note: {s.label} lacks {p['xt']} or {p['ty']} values; left out of the information plane")
                continue
            common = sorted(set(xt[0]) & set(ty[0]))
            points[key, s.label] = (common, [xt[1][xt[0].index(e)] for e in common],
                                    [ty[1][ty[0].index(e)] for e in common])
    epochs = [e for common, _, _ in points.values() for e in common] or [0]
    low, high = min(epochs), max(epochs)

    def size(e):
        return 8 + 72 * (e - low) / (high - low) if high > low else 30

    rows, cols = sorted({k[0] for k in pairs}), sorted({k[2] for k in pairs})
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.8 * len(cols), 4.0 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for key, p in pairs.items():
        variant, dataset, place = key
        ax = axes[rows.index(variant)][cols.index(place)]
        ax.set_visible(True)
        for s in series:
            if (key, s.label) in points:
                common, x, y = points[key, s.label]
                ax.plot(x, y, color=s.colour, linewidth=0.9, alpha=0.6)
                ax.scatter(x, y, s=[size(e) for e in common], color=s.colour, edgecolors="white", linewidths=0.4)
        ax.set(title=f"information plane on {place}" + (f"\n{variant}" if variant else ""),
               xlabel=f"I(X;T) on {dataset} [nats]", ylabel=f"I(T;Y) on {dataset} [nats]")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    handles = {s.label: Line2D([], [], color=s.colour, marker="o") for s in series}
    handles.update({f"epoch {e}": Line2D([], [], color="grey", marker="o", linestyle="", markersize=size(e) ** 0.5)
                    for e in sorted({low, high})})
    return with_legend(fig, handles)


def concat_figure(series):
    """One bar per probed combination of checkpoints (transfer_<target>_concat.csv), grouped by target."""
    found = stems(series, "transfer_concat")
    if not found:
        return None
    fig, axes = plt.subplots(1, len(found), figsize=(6 * len(found), 3.6), squeeze=False)
    for ax, (stem, result) in zip(axes[0], sorted(found.items())):
        bars = [(s, row) for s in series for r in s.results if stem in r for row in r[stem].rows
                if row.get("final_acc") is not None]
        names = [f"{s.label}: epochs {row['epochs']}" + (f" ({row['protocol']})" if row.get("protocol") else "")
                 for s, row in bars]
        drawn = ax.barh(range(len(bars)), [row["final_acc"] for _, row in bars], color=[s.colour for s, _ in bars])
        ax.bar_label(drawn, fmt="%.2f", fontsize=7, padding=2)
        ax.set_yticks(range(len(bars)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set(title=f"concatenated features, linear probe on {where(result.facts)}",
               xlabel="linear-probe accuracy [%]")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


FIGURES = {"transfer": transfer_figure, "discriminability": discriminability_figure,
           "compression": compression_figure, "information": information_figure,
           "information_plane": information_plane_figure, "transfer_concat": concat_figure}


def save(fig, out, name):
    """PNG and PDF of a figure; returns the PNG's path."""
    paths = [os.path.join(out, f"{name}.{ext}") for ext in ("png", "pdf")]
    for path in paths:                  # atomic and guarded: a full disk never leaves half a figure
        atomic_write(path, lambda f: fig.savefig(f, format=os.path.splitext(path)[1][1:], dpi=130,
                                                 bbox_inches="tight"))
    plt.close(fig)
    print(f"wrote {paths[0]}")
    return paths[0]
