"""The results table of the seeded trade-off experiment (scripts/cpu_experiment.sh): per method, where
transfer peaks, how far it falls by the end, what the mutual information does meanwhile, and whether a
method lifts the final transfer above the baseline's, each with a 95 % interval over seeds.

    spec = TableSpec(transfer="transfer_digits_b_linear_cv5", source="digits_a", target="digits_b")
    summaries = [summarise_method(name, runs, spec) for name, runs in groups.items()]   # runs: seeds
    print(to_markdown(summaries, spec))

The protocol (fixed before any outcome was seen; the same words head scripts/cpu_experiment.sh):
- a run's transfer curve is `final_acc` of its transfer results file, one value per checkpoint, smoothed
  by a centred moving average over `window` consecutive checkpoints (fewer at the two ends);
- the peak-transfer epoch P of a method is where the mean over its seeds of the smoothed curves is largest
  (the first such epoch); the end E is the last checkpoint every seed has;
- drop = smoothed(E) - smoothed(P) per seed, with the Student-t interval of its mean over seeds. A late
  drop is an interval entirely below 0 (P = E is no drop). P is the maximum of a noisy curve, so a flat
  curve also gives a small negative drop: the smoothing and the interval over seeds are the guard;
- a method lifts the final transfer when Welch's interval of its smoothed(E) minus the baseline's lies
  entirely above 0 (Welch, not paired: two methods' runs of one seed share no randomness after the start);
- MI trend = MI(E) - MI(P) per seed (same smoothing, the MI checkpoints nearest to E and P), mean and
  t-interval: the paper expects both I(X;T) and I(T;Y) on the target to fall;
- the compression measures NC1, effective rank and coding rate (discriminability_<data set>.csv, on the
  target and the source): the same end - peak interval as the MI trend, and per seed the Spearman
  correlation across checkpoints between the unsmoothed target transfer and the unsmoothed measure (the
  checkpoints both have), with its mean and t-interval over seeds. A side no run measured is left out.
"""
import math
import os
from dataclasses import dataclass

from helper.core.errors import UserError
from helper.core.stats import mean_std, spearman, t_interval, welch_interval
from helper.sweep.results import ResultsCSV

# (mode, data set side, results-file suffix): the held-out estimates (mine.py --holdout) on the target show how
# much of its curves is the critic memorising its rows
MI_COLUMNS = (("xt", "target", ""), ("ty", "target", ""), ("xt", "source", ""), ("ty", "source", ""),
              ("xt", "target", "_holdout"), ("ty", "target", "_holdout"))
MI_NAMES = {"xt": "I(X;T)", "ty": "I(T;Y)"}
# (column of discriminability_<data set>.csv, data set side): the estimator-free compression measures
MEASURES = {"nc1": "NC1", "effective_rank": "effective rank", "coding_rate": "coding rate"}
MEASURE_COLUMNS = tuple((column, side) for side in ("target", "source") for column in MEASURES)
SATURATION_MARGIN = 1.0     # points: source accuracy within this of its maximum counts as saturated


@dataclass
class TableSpec:
    transfer: str           # stem of the transfer results file, e.g. transfer_digits_b_linear_cv5
    source: str             # data sets of the mi_<mode>_<dataset>.csv files
    target: str
    window: int = 3         # checkpoints in the centred moving average (odd)
    level: float = 0.95     # confidence level of every interval


def read_curve(run_dir, stem, column):
    """{epoch: value} of one column of `<run_dir>/<stem>.csv` (shards merged, an epoch's last row winning);
    empty and non-finite cells left out; {} when the file does not exist."""
    path = os.path.join(run_dir, stem + ".csv")
    curve = {}
    try:
        for row in ResultsCSV(path, []).rows():
            value = float(row.get(column) or "nan")
            if math.isfinite(value):
                curve[int(row["epoch"])] = value
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} holds a row that is not a number in 'epoch' or '{column}' ({err}); the file "
                        "is damaged: delete it and rerun the sweep that writes it.") from None
    return curve


def smooth(curve, window):
    """{epoch: mean of the values of the `window` checkpoints centred on it} (fewer at the ends)."""
    if window < 1 or window % 2 == 0:
        raise UserError(f"the smoothing window must be an odd number of checkpoints, got {window}.")
    epochs, half = sorted(curve), window // 2
    return {e: mean_std([curve[x] for x in epochs[max(0, i - half):i + half + 1]])[0] for i, e in enumerate(epochs)}


def nearest(curve, epoch):
    """The value of `curve` at its epoch nearest to `epoch` (the earlier one on a tie)."""
    return curve[min(curve, key=lambda e: (abs(e - epoch), e))]


def summarise_method(name, runs, spec):
    """The table's numbers for one method: `runs` are its run folders, one per seed. See the module doc."""
    transfer = [smooth(read_curve(run, spec.transfer, "final_acc"), spec.window) for run in runs]
    epochs = sorted(set.intersection(*(set(c) for c in transfer))) if runs else []
    summary = {"name": name, "seeds": len(runs), "epochs": epochs}
    if not epochs:
        return summary
    mean_curve = {e: mean_std([c[e] for c in transfer])[0] for e in epochs}
    peak, end = max(epochs, key=lambda e: (mean_curve[e], -e)), epochs[-1]
    end_values = [c[end] for c in transfer]
    drops = [c[end] - c[peak] for c in transfer]
    summary.update(peak_epoch=peak, end_epoch=end, peak=mean_std([c[peak] for c in transfer]),
                   end=mean_std(end_values), end_values=end_values, drop=t_interval(drops, spec.level))
    summary["late_drop"] = late_drop_verdict(summary)
    summary.update(source_summary(runs, spec))
    sems = [v for run in runs for v in read_curve(run, spec.transfer, "final_acc_sem").values()]
    summary["probe_se"] = mean_std(sems)[0] if sems else None
    summary["mi"] = {(mode, side, suffix): trend(runs, f"mi_{mode}_{getattr(spec, side)}{suffix}", "mi", spec,
                                                 peak, end) for mode, side, suffix in MI_COLUMNS}
    summary["memorisation"] = {mode: memorisation(runs, spec, mode, end) for mode in MI_NAMES}
    summary["measures"], summary["spearman"] = {}, {}
    for column, side in MEASURE_COLUMNS:
        stem = f"discriminability_{getattr(spec, side)}"
        summary["measures"][column, side] = trend(runs, stem, column, spec, peak, end)
        summary["spearman"][column, side] = rank_correlations(runs, spec, stem, column)
    return summary


def trend(runs, stem, column, spec, peak, end):
    """The t-interval over seeds of smoothed(E) - smoothed(P) of `column` in `<run>/<stem>.csv`, at the
    checkpoints nearest the transfer's E and P; None unless every seed measured it."""
    curves = [smooth(read_curve(run, stem, column), spec.window) for run in runs]
    return t_interval([nearest(c, end) - nearest(c, peak) for c in curves], spec.level) if all(curves) else None


def rank_correlations(runs, spec, stem, column):
    """Per seed, Spearman's correlation across checkpoints between the target transfer and `column` of
    `<run>/<stem>.csv` (unsmoothed, the epochs both have); None unless every seed measured it."""
    rhos = []
    for run in runs:
        transfer, measure = read_curve(run, spec.transfer, "final_acc"), read_curve(run, stem, column)
        epochs = sorted(set(transfer) & set(measure))
        if not epochs:
            return None
        rhos.append(spearman([transfer[e] for e in epochs], [measure[e] for e in epochs]))
    return rhos or None


def memorisation(runs, spec, mode, epoch):
    """At the checkpoint nearest `epoch`, on the target (mean, std over seeds, unsmoothed): the bound fitted
    on every row, and the held-out fit's bound on its training rows and on rows it never saw; None without
    a held-out file. The gap between the last two is what the critic memorised."""
    full = [read_curve(run, f"mi_{mode}_{spec.target}", "mi") for run in runs]
    held_stem = f"mi_{mode}_{spec.target}_holdout"
    training = [read_curve(run, held_stem, "mi_train") for run in runs]
    held_out = [read_curve(run, held_stem, "mi") for run in runs]
    if not (all(training) and all(held_out)):
        return None
    at_epoch = lambda curves: mean_std([nearest(c, epoch) for c in curves])  # noqa: E731
    return {"all_rows": at_epoch(full) if all(full) else None, "training_rows": at_epoch(training),
            "held_out": at_epoch(held_out)}


def source_summary(runs, spec):
    """Source test accuracy at the end (mean, std) and the first epoch the seed mean is within
    SATURATION_MARGIN points of its maximum, from the `source_acc` the transfer rows record."""
    curves = [read_curve(run, spec.transfer, "source_acc") for run in runs]
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    if not epochs:
        return {"source_end": None, "source_saturated_at": None}
    means = {e: mean_std([c[e] for c in curves])[0] for e in epochs}
    top = max(means.values())
    return {"source_end": mean_std([c[epochs[-1]] for c in curves]),
            "source_saturated_at": next(e for e in epochs if means[e] >= top - SATURATION_MARGIN)}


def late_drop_verdict(summary):
    _, low, high = summary["drop"]
    if summary["peak_epoch"] == summary["end_epoch"]:
        return "no (peak at the end)"
    if math.isnan(high):
        return "one seed: no interval"
    return "yes" if high < 0 else "no (interval includes 0)"


def lift(baseline, other, level=0.95):
    """(difference of the end means other - baseline, low, high, verdict) by Welch's interval."""
    diff, low, high = welch_interval(baseline["end_values"], other["end_values"], level)
    if math.isnan(low):
        verdict = "one seed: no interval"
    else:
        verdict = "yes" if low > 0 else "no, lower" if high < 0 else "not resolved (interval includes 0)"
    return diff, low, high, verdict


def fmt_mean_std(pair, digits=1):
    return "not measured" if pair is None else f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def fmt_correlations(rhos, level):
    """'+0.12, -0.30, +0.45; mean +0.09 [-0.9, +1.1]': each seed's correlation, then their mean and t-interval."""
    if rhos is None:
        return "not measured"
    each = ", ".join("undefined" if math.isnan(r) else f"{r:+.2f}" for r in rhos)
    defined = [r for r in rhos if not math.isnan(r)]
    return each + (f"; mean {fmt_interval(t_interval(defined, level), 2)}" if defined else "")


def fmt_interval(triple, digits=1):
    if triple is None:
        return "not measured"
    mean, low, high = triple[:3]
    return f"{mean:+.{digits}f}" + (" (one seed)" if math.isnan(low) else f" [{low:+.{digits}f}, {high:+.{digits}f}]")


def to_markdown(summaries, spec):
    """Markdown tables: transfer per method, MI trends per method, memorisation (with held-out fits), and each
    method against the first."""
    pct = f"{spec.level:.0%}"
    lines = [f"Transfer = `final_acc` of `{spec.transfer}.csv` (%), smoothed over {spec.window} checkpoints; "
             f"mean ± std over seeds; intervals are {pct} Student-t intervals over seeds.", "",
             "| method | seeds | source acc. at end (%) | source saturated from epoch | peak-transfer epoch | "
             "transfer at peak (%) | transfer at end (%) | end − peak (points) [" + pct + "] | late drop | "
             "probe SE per checkpoint (points) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    measured = [s for s in summaries if s["epochs"]]
    for s in summaries:
        if not s["epochs"]:
            lines.append(f"| {s['name']} | {s['seeds']} | " + " | ".join(["not measured"] * 8) + " |")
            continue
        se = "not measured" if s["probe_se"] is None else f"{s['probe_se']:.2f}"
        lines.append(f"| {s['name']} | {s['seeds']} | {fmt_mean_std(s['source_end'])} | "
                     f"{s['source_saturated_at'] if s['source_saturated_at'] is not None else 'not measured'} | "
                     f"{s['peak_epoch']} | {fmt_mean_std(s['peak'])} | {fmt_mean_std(s['end'])} | "
                     f"{fmt_interval(s['drop'])} | {s['late_drop']} | {se} |")
    lines += ["", f"MI change from the peak-transfer epoch to the end (nats) [{pct}]:", "",
              "| method | " + " | ".join(f"{MI_NAMES[m]} on {getattr(spec, side)}{', held-out' if suffix else ''}"
                                for m, side, suffix in MI_COLUMNS) + " |",
              "|---|" + "---|" * len(MI_COLUMNS)]
    for s in measured:
        lines.append(f"| {s['name']} | " + " | ".join(fmt_interval(s["mi"][key], 3) for key in MI_COLUMNS) + " |")
    if any(s["memorisation"][mode] for s in measured for mode in MI_NAMES):
        lines += ["", f"Memorisation on {spec.target} at the end (nats, mean ± std over seeds): the bound of a critic "
                  "fitted on every row, and of a critic fitted on part of the rows (`--holdout`) on those rows and "
                  "on rows it never saw:", "",
                  "| method | quantity | fitted on every row | held-out fit, its training rows | held-out fit, "
                  "unseen rows |", "|---|---|---|---|---|"]
        for s in measured:
            for mode, name in MI_NAMES.items():
                m = s["memorisation"][mode]
                if m:
                    lines.append(f"| {s['name']} | {name} | {fmt_mean_std(m['all_rows'], 3)} | "
                                 f"{fmt_mean_std(m['training_rows'], 3)} | {fmt_mean_std(m['held_out'], 3)} |")
    lines += measure_tables(measured, spec)
    if len(measured) > 1:
        base = measured[0]
        lines += ["", f"Transfer at the end against {base['name']} (points; Welch's {pct} interval):", "",
                  "| method | minus " + base["name"] + " at the end [" + pct + "] | lifts the final transfer |",
                  "|---|---|---|"]
        for s in measured[1:]:
            diff, low, high, verdict = lift(base, s, spec.level)
            lines.append(f"| {s['name']} | {fmt_interval((diff, low, high))} | {verdict} |")
    return "\n".join(lines) + "\n"


def measure_tables(measured, spec):
    """The compression measures' end - peak changes and their rank correlations with the target transfer,
    over the data set sides some run measured (none: one line saying so)."""
    columns = [key for key in MEASURE_COLUMNS if any(s["measures"][key] for s in measured)]
    if not columns:
        return ["", "Compression measures (NC1, effective rank, coding rate): not measured (no such columns in "
                f"discriminability_{spec.target}.csv or discriminability_{spec.source}.csv)."]
    pct = f"{spec.level:.0%}"
    names = " | ".join(f"{MEASURES[column]} on {getattr(spec, side)}" for column, side in columns)
    lines = ["", f"Compression measures, change from the peak-transfer epoch to the end [{pct}] (NC1 "
             "tr(Σ_W Σ_B⁺)/C, effective rank in dimensions, coding rate in nats at ε² = 0.5):", "",
             f"| method | {names} |", "|---|" + "---|" * len(columns)]
    for s in measured:
        lines.append(f"| {s['name']} | " + " | ".join(fmt_interval(s["measures"][key], 3) for key in columns) + " |")
    lines += ["", f"Spearman correlation across checkpoints between transfer to {spec.target} and each measure "
              f"(unsmoothed), per seed; their mean [{pct}]:", "",
              f"| method | {names} |", "|---|" + "---|" * len(columns)]
    for s in measured:
        lines.append(f"| {s['name']} | " + " | ".join(fmt_correlations(s["spearman"][key], spec.level)
                                                     for key in columns) + " |")
    return lines
