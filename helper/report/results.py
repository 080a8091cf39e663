"""What plot.py reads from the results files of runs: each file's rows with numbers parsed, and what it
measured, with the quantity and unit of each plotted column.

    for result in find_results(run_dir):           # every results file of a run folder, shards merged
        result.kind.name, result.facts, result.series("mi")

The kinds of file, their names and columns are helper/sweep/results.py, beside the sweeps that write them.
What a file measured (data set, split, estimator, probe protocol, ...) is read from the flags the sweep saved
beside it (its protocol record, `<results stem>` + `PROTOCOL_RECORD`); only a file without one (written before
protocol records, or the concat probe's) is described from its name (`flags_from_name`). A value that is not
a number is refused with the file and line named, never plotted.
"""
import math
import os
import re
from dataclasses import dataclass, field

from dataset.registry import DATASETS
from helper.sweep.mi import ESTIMATORS
from helper.sweep.results import (PROTOCOL_RECORD, ResultKind, ResultsCSV, csv_records, kind_of, main_results_path,
                                  protocol_record_path, read_args)

MI_QUANTITIES = {"xt": "I(X;T)", "ty": "I(T;Y)", "xy": "I(X;Y)"}


@dataclass(frozen=True)
class Quantity:
    """A plotted column: `name` [unit] is the axis label."""
    column: str
    name: str
    unit: str

    def label(self, where=""):
        return f"{self.name}{f' on {where}' if where else ''} [{self.unit}]"


def _eval_split(dataset):
    info = DATASETS.get(dataset)
    return info.eval_split if info else "evaluation"


def _transfer_facts(flags):
    target, mode = flags.get("target_dataset"), flags.get("mode", "linear")
    protocol = {"linear": "linear probe", "finetune": "fine-tuning"}.get(mode, mode)
    if mode == "linear" and flags.get("bn_mode") == "train":
        protocol += ", BatchNorm in train mode (the original's)"
    settings = {"epochs": flags.get("epoch", flags.get("epochs")), "lr": flags.get("lr")}   # --epoch, or its alias
    detail = ", ".join(f"{name} {value}" for name, value in settings.items() if value is not None)
    split = flags.get("eval_split") or _eval_split(target)
    if flags.get("cv"):   # transfer.py --cv K scores K folds over the train and evaluation images together
        protocol, split = f"{flags['cv']}-fold cross-validated linear probe", f"train + {split}"
    return {"dataset": target, "split": split, "mode": mode,
            "protocol": protocol, "source": flags.get("source_dataset"),
            "detail": f"{protocol}{f' ({detail})' if detail else ''}"}


def _discriminability_facts(flags):
    dataset = flags.get("dataset")
    if flags.get("train_split"):
        split = DATASETS[dataset].train_split if dataset in DATASETS else "train"
    else:
        split = _eval_split(dataset)
    n_init = flags.get("n_init")
    return {"dataset": dataset, "split": split, "detail": f"k-means n_init {n_init}" if n_init else ""}


def _mi_facts(flags):
    mode, dataset = flags.get("mode"), flags.get("dataset")
    estimator, layer, holdout = flags.get("estimator") or "mine", flags.get("layer", -1), flags.get("holdout")
    variant = []
    if estimator != "mine":
        variant.append(f"{estimator} bound")
    if layer not in (-1, None) and mode != "xy":
        variant.append(f"layer {layer}")
    if holdout:
        variant.append(f"held-out {holdout:.0%} of rows" if isinstance(holdout, float) else "held-out rows")
    steps = ", ".join(f"{name} {flags[key]:g}" for key, name in (("iter_num", "steps"), ("lr", "lr"))
                      if isinstance(flags.get(key), (int, float)))
    return {"dataset": dataset, "split": _eval_split(dataset), "mode": mode,
            "quantity": MI_QUANTITIES.get(mode, f"I({mode})"), "estimator": estimator, "layer": layer,
            "holdout": bool(holdout), "variant": ", ".join(variant),
            "detail": ", ".join(x for x in (", ".join(variant) or "MINE", steps) if x)}


PCT, NATS = "%", "nats"
# plotted column -> Quantity, per kind of results file
QUANTITIES = {
    "transfer_concat": {"final_acc": Quantity("final_acc", "linear-probe accuracy", PCT)},
    "transfer": {"final_acc": Quantity("final_acc", "target accuracy", PCT),
                 "best_acc_on_eval": Quantity("best_acc_on_eval", "best target accuracy over probe epochs", PCT),
                 "source_acc": Quantity("source_acc", "source test accuracy", PCT),
                 "param_transferability": Quantity("param_transferability", "parameter-distance transferability",
                                                   "mean |w - w0|")},
    "discriminability": {"recall_at_1": Quantity("recall_at_1", "Recall@1", PCT),
                         "nmi": Quantity("nmi", "NMI of k-means clusters", "0-1"),
                         "nc1": Quantity("nc1", "within-class variability NC1", "tr(Σ_W Σ_B⁺) / C"),
                         "effective_rank": Quantity("effective_rank", "effective rank of the features", "dimensions"),
                         "coding_rate": Quantity("coding_rate", "coding rate (ε² = 0.5)", NATS)},
    "mi": {"mi": Quantity("mi", "mutual information", NATS),
           "mi_train": Quantity("mi_train", "bound on the fitted rows", NATS)},
}
# the flags (recorded, or read from the name) -> facts: data set, split, detail, ..., per kind
FACTS = {"transfer_concat": _transfer_facts, "transfer": _transfer_facts, "discriminability": _discriminability_facts,
         "mi": _mi_facts}


# ------------------------------------------------------------------ names of files without a protocol record
_NAME = r"[A-Za-z0-9_]+?"       # a data set name; lazy, so the known suffixes after it are matched first
# Each kind's file names (helper/sweep/results.py, `ResultKind.naming`) read back into the flags they encode.
NAMED_FLAGS = {
    "transfer_concat": re.compile(rf"^transfer_(?P<target_dataset>{_NAME})_concat$"),
    "transfer": re.compile(rf"^transfer_(?P<target_dataset>{_NAME})_(?P<mode>linear|finetune)"
                           r"(?P<bntrain>_bntrain)?(?:_(?P<eval_split>[a-z]+))?(?:_\w+)?$"),
    "discriminability": re.compile(rf"^discriminability_(?P<dataset>{_NAME})(?P<train>_train)?$"),
    "mi": re.compile(rf"^mi_(?P<mode>xt|ty|xy)_(?P<dataset>{_NAME})(?:_(?P<estimator>{'|'.join(ESTIMATORS)}))?"
                     r"(?:_layer(?P<layer>-?\d+))?(?P<holdout>_holdout)?$"),
}


def flags_from_name(kind, stem):
    """The flags the name `stem` of a `kind` file encodes, for a file without a protocol record (None when the
    name is not one its sweep writes)."""
    match = NAMED_FLAGS[kind.name].match(stem)
    if match is None:
        return None
    found = {k: v for k, v in match.groupdict().items() if v is not None}
    if kind.name == "transfer_concat":
        found["mode"] = "linear"
    if found.pop("bntrain", None):
        found["bn_mode"] = "train"
    if found.pop("train", None):
        found["train_split"] = True
    if "layer" in found:
        found["layer"] = int(found["layer"])
    found["holdout"] = bool(found.get("holdout"))
    return found


@dataclass
class Result:
    """One result file of one run (its shard files merged): rows with numbers parsed, and what it measured."""
    kind: ResultKind
    path: str
    flags: dict                 # the flags its sweep recorded ({} without a protocol record)
    rows: list
    facts: dict = field(default_factory=dict)

    @property
    def stem(self):
        return os.path.splitext(os.path.basename(self.path))[0]

    @property
    def quantities(self):
        """{plotted column: Quantity} of its kind."""
        return QUANTITIES[self.kind.name]

    def series(self, column):
        """{epoch: value} of a column; empty and non-finite cells left out."""
        return {row["epoch"]: row[column] for row in self.rows
                if isinstance(row.get(column), float) and math.isfinite(row[column])}


# What plot.py's user can do about a damaged results file.
PLOT_HINT = ("It was cut short, edited, or written by other code; fix or delete that line, or recompute it with "
             "the sweep's --force, then plot again.")


def parse_rows(path, kind):
    """The rows of one CSV file, numbers parsed; a malformed line is a UserError naming the file and line."""
    rows = []
    for _, row in csv_records(path, kind.key, kind.numeric, PLOT_HINT):
        for column in (("epoch",) if kind.by_epoch else ()) + kind.numeric:
            text = row.get(column, "")
            row[column] = None if text == "" else int(text) if column == "epoch" else float(text)
        rows.append(row)
    return rows


def read_result(path, kind):
    """The Result of a main results file path (whose shard files are merged in, later rows of an epoch winning);
    None for a file without a protocol record whose name its kind's sweep never writes."""
    files = ResultsCSV(path, []).files()
    flags = next((a for a in (read_args(protocol_record_path(f)) for f in files) if a is not None), None)
    stem = os.path.splitext(os.path.basename(path))[0]
    named = flags_from_name(kind, stem) if flags is None else None
    if flags is None and named is None:
        return None
    rows = [row for file in files for row in parse_rows(file, kind)]
    if kind.by_epoch:
        rows = sorted({row["epoch"]: row for row in rows}.values(), key=lambda row: row["epoch"])
    result = Result(kind, path, flags or {}, rows)
    result.facts = FACTS[kind.name](flags if flags is not None else named)
    result.facts["described_by"] = "args" if flags is not None else "name"
    if flags is None and kind.saves_args:
        print(f"note: {path} has no {PROTOCOL_RECORD} beside it; its panel is described from the file name")
    return result


def find_results(run_dir):
    """{stem: Result} of every result file in a run folder (a sweep run only as shards counts too)."""
    found, read = {}, set()
    for name in sorted(os.listdir(run_dir)):
        if not name.endswith(".csv"):
            continue
        main = main_results_path(name)
        stem = os.path.splitext(main)[0]
        kind = kind_of(stem)
        if kind is not None and stem in read:   # its shards were merged when the first of its files came up
            continue
        read.add(stem)
        result = read_result(os.path.join(run_dir, main), kind) if kind else None
        if result is None:
            print(f"note: {os.path.join(run_dir, name)} is not a result file plot.py knows; left out")
        elif result.rows:
            found[stem] = result
    return found
