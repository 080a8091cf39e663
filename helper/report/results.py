"""The result files the sweeps write, one table entry per kind, and a reader that checks them.

    for result in find_results(run_dir):           # every result file of a run folder, shards merged
        result.kind.name, result.facts, result.series("mi")

An entry says how its writer names a file (`file_name(flags)`, from the sweep's flags) and which
files belong to it (the pattern that reads such a name back), the column that names a row, which
columns hold numbers, and what each plotted column means (quantity, unit). What a file measured (data set, split,
estimator, probe protocol, ...) is read from the flags the sweep saved beside it (its protocol
record, `<results stem>` + `PROTOCOL_RECORD`); only a file without one is described from its name. A value
that is not a number is refused with the file and line named, never plotted.
"""
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from dataset.registry import DATASETS
from helper.core.errors import UserError
from helper.sweep.mi import ESTIMATORS
from helper.sweep.runner import (PROTOCOL_RECORD, DamageWords, ResultsCSV, csv_records, main_results_path,
                                 protocol_record_path)

MI_QUANTITIES = {"xt": "I(X;T)", "ty": "I(T;Y)", "xy": "I(X;Y)"}


@dataclass(frozen=True)
class Quantity:
    """A plotted column: `name` [unit] is the axis label."""
    column: str
    name: str
    unit: str

    def label(self, where=""):
        return f"{self.name}{f' on {where}' if where else ''} [{self.unit}]"


@dataclass(frozen=True)
class ResultKind:
    """One kind of result file: its name, columns and plotted quantities, shared by its writer and plot.py."""
    name: str
    naming: Callable            # the sweep's flags (dict) -> the main file's stem; `stem` reads it back
    stem: re.Pattern            # main file's stem -> the flags its name encodes (for files without a protocol record)
    numeric: tuple              # columns that must hold numbers (or be empty)
    quantities: dict            # plotted column -> Quantity
    key: str = "epoch"          # the column that names a row: the checkpoint epoch (the concat probe: its epochs)
    saves_args: bool = True     # its writer saves its protocol record (run_sweep does; the concat probe does not)
    describe: Callable = None   # the flags (recorded, or read from the name) -> facts: data set, split, detail, ...

    @property
    def by_epoch(self):
        """One row per checkpoint epoch (the concat probe has one row per combination of checkpoints)."""
        return self.key == "epoch"

    def file_name(self, flags):
        """The results file a sweep with `flags` (its flags as a dict) writes: '<stem>.csv'."""
        return self.naming(flags) + ".csv"

    def results_file(self, run_dir, flags, fields, shard=(0, 1)):
        """The `ResultsCSV` a sweep with `flags` writes in `run_dir`, checking this kind's numeric columns."""
        return ResultsCSV(os.path.join(run_dir, self.file_name(flags)), fields, shard, self.numeric)


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


def _transfer_name(flags):
    """transfer_<target>_<mode>; protocol variants get their own file so a rerun never mixes them."""
    target, mode, eval_split = flags["target_dataset"], flags["mode"], flags["eval_split"]
    name = f"transfer_{target}_{mode}"
    if mode == "linear" and flags["bn_mode"] == "train":
        name += "_bntrain"
    if eval_split != DATASETS[target].eval_split:
        name += f"_{eval_split}"
    if flags.get("cv"):
        name += f"_cv{flags['cv']}"
    return name


def _discriminability_name(flags):
    """discriminability_<dataset>, suffixed _train for the training split."""
    return f"discriminability_{flags['dataset']}{'_train' if flags.get('train_split') else ''}"


def _mi_name(flags):
    """mi_<mode>_<dataset>, suffixed by every setting that changes what the value means."""
    name = f"mi_{flags['mode']}_{flags['dataset']}"
    if flags["estimator"] != "mine":
        name += f"_{flags['estimator']}"
    if flags["layer"] != -1 and flags["mode"] != "xy":
        name += f"_layer{flags['layer']}"
    if flags["holdout"] is not None:
        name += "_holdout"
    return name


_NAME = r"[A-Za-z0-9_]+?"       # a data set name; lazy, so the known suffixes after it are matched first
PCT, NATS = "%", "nats"
KINDS = (
    ResultKind("transfer_concat", lambda flags: f"transfer_{flags['target_dataset']}_concat",
               re.compile(rf"^transfer_(?P<target_dataset>{_NAME})_concat$"),
               ("feat_size", "final_acc", "best_acc_on_eval", "best_epoch", "seconds"),
               {"final_acc": Quantity("final_acc", "linear-probe accuracy", PCT)}, key="epochs", saves_args=False,
               describe=_transfer_facts),
    ResultKind("transfer", _transfer_name,
               re.compile(rf"^transfer_(?P<target_dataset>{_NAME})_(?P<mode>linear|finetune)"
                          r"(?P<bntrain>_bntrain)?(?:_(?P<eval_split>[a-z]+))?(?:_\w+)?$"),
               ("final_acc", "best_acc_on_eval", "best_epoch", "source_acc", "param_transferability", "seconds"),
               {"final_acc": Quantity("final_acc", "target accuracy", PCT),
                "best_acc_on_eval": Quantity("best_acc_on_eval", "best target accuracy over probe epochs", PCT),
                "source_acc": Quantity("source_acc", "source test accuracy", PCT),
                "param_transferability": Quantity("param_transferability", "parameter-distance transferability",
                                                  "mean |w - w0|")}, describe=_transfer_facts),
    ResultKind("discriminability", _discriminability_name,
               re.compile(rf"^discriminability_(?P<dataset>{_NAME})(?P<train>_train)?$"),
               ("recall_at_1", "nmi", "source_acc", "seconds", "nc1", "effective_rank", "coding_rate"),
               {"recall_at_1": Quantity("recall_at_1", "Recall@1", PCT),
                "nmi": Quantity("nmi", "NMI of k-means clusters", "0-1"),
                "nc1": Quantity("nc1", "within-class variability NC1", "tr(Σ_W Σ_B⁺) / C"),
                "effective_rank": Quantity("effective_rank", "effective rank of the features", "dimensions"),
                "coding_rate": Quantity("coding_rate", "coding rate (ε² = 0.5)", NATS)},
               describe=_discriminability_facts),
    ResultKind("mi", _mi_name, re.compile(rf"^mi_(?P<mode>xt|ty|xy)_(?P<dataset>{_NAME})(?:_(?P<estimator>"
                                rf"{'|'.join(ESTIMATORS)}))?(?:_layer(?P<layer>-?\d+))?(?P<holdout>_holdout)?$"),
               ("mi", "std", "mi_train", "best_step", "nan_steps", "iters", "batch_size", "seconds", "layer"),
               {"mi": Quantity("mi", "mutual information", NATS),
                "mi_train": Quantity("mi_train", "bound on the fitted rows", NATS)}, describe=_mi_facts),
)
KIND = {kind.name: kind for kind in KINDS}


def flags_from_name(kind, match):
    """The flags a result file's name encodes (`kind.naming`), for a file without a protocol record."""
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


def kind_of(stem):
    """(ResultKind, match) of a result file stem, or (None, None) for another file."""
    for kind in KINDS:
        match = kind.stem.match(stem)
        if match:
            return kind, match
    return None, None


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

    def series(self, column):
        """{epoch: value} of a column; empty and non-finite cells left out."""
        return {row["epoch"]: row[column] for row in self.rows
                if isinstance(row.get(column), float) and math.isfinite(row[column])}


def damaged(path, line, why):
    return UserError(f"{path}, line {line}: {why}. The file is damaged (cut short, edited, or written by other "
                     "code); fix or delete that line, or recompute it with the sweep's --force, then plot again.")


PLOT_WORDS = DamageWords(
    error=damaged,
    not_text=lambda err: f"it is not CSV text ({err})",
    no_header=lambda key, values: f"the first line {','.join(values)!r} is not a header with an '{key}' column",
    length=lambda values, header: f"{len(values)} values for the {len(header)} columns of the header",
    epoch=lambda text: f"column 'epoch' holds {text!r}, not a number",
    number=lambda column, text: f"column '{column}' holds {text!r}, not a number")


def parse_rows(path, kind):
    """The rows of one CSV file, numbers parsed; a malformed line is a UserError naming the file and line."""
    rows = []
    for _, row in csv_records(path, kind.key, PLOT_WORDS, kind.numeric):
        for column in (("epoch",) if kind.by_epoch else ()) + kind.numeric:
            text = row.get(column, "")
            row[column] = None if text == "" else int(text) if column == "epoch" else float(text)
        rows.append(row)
    return rows


def read_args(path):
    """The resolved arguments a sweep saved beside its results (None when there is no such file)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            flags = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f"{path} could not be read as JSON ({err}); it records the arguments of the results "
                        "beside it. Restore it, or delete it and the panel is described from the file name.") from None
    if not isinstance(flags, dict):
        raise UserError(f"{path} holds no argument record (a JSON object is expected).")
    return flags


def read_result(path, kind, match):
    """The Result of a main results file path (whose shard files are merged in, later rows of an epoch winning)."""
    files = ResultsCSV(path, []).files()
    rows = [row for file in files for row in parse_rows(file, kind)]
    if kind.by_epoch:
        rows = sorted({row["epoch"]: row for row in rows}.values(), key=lambda row: row["epoch"])
    flags = next((a for a in (read_args(protocol_record_path(f)) for f in files) if a is not None), None)
    result = Result(kind, path, flags or {}, rows)
    result.facts = kind.describe(flags if flags is not None else flags_from_name(kind, match))
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
        kind, match = kind_of(stem)
        if kind is None:
            print(f"note: {os.path.join(run_dir, name)} is not a result file plot.py knows; left out")
            continue
        if stem in read:                    # its shards were merged when the first of its files came up
            continue
        read.add(stem)
        result = read_result(os.path.join(run_dir, main), kind, match)
        if result.rows:
            found[stem] = result
    return found
