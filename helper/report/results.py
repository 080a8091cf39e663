"""The result files the sweeps write, one table entry per kind, and a reader that checks them.

    for result in find_results(run_dir):           # every result file of a run folder, shards merged
        result.kind.name, result.facts, result.series("mi")

An entry says which files belong to a kind (file-name pattern), which columns its writer
writes, and what each plotted column means (quantity, unit). What a file measured (data set,
split, estimator, probe protocol, ...) is read from the resolved arguments the sweep saved
beside it (`<results>.args.json`); only a file without one is described from its name.
A value that is not a number is refused with the file and line named, never plotted.
"""
import csv
import json
import math
import os
import re
from dataclasses import dataclass, field

from dataset.registry import DATASETS
from helper.core.errors import UserError
from helper.sweep.mi import ESTIMATORS
from helper.sweep.runner import ResultsCSV

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
    name: str
    stem: re.Pattern            # main file's stem -> the flags its name encodes (for files without .args.json)
    columns: tuple              # what the sweep writes, in order
    numeric: tuple              # columns that must hold numbers (or be empty)
    quantities: dict            # plotted column -> Quantity
    by_epoch: bool = True       # one row per checkpoint epoch (the concat probe has one row per combination)
    saves_args: bool = True     # its writer saves <results>.args.json (run_sweep does; the concat probe does not)


def _eval_split(dataset):
    info = DATASETS.get(dataset)
    return info.eval_split if info else "evaluation"


def _transfer_facts(args):
    target, mode = args.get("target_dataset"), args.get("mode", "linear")
    protocol = {"linear": "linear probe", "finetune": "fine-tuning"}.get(mode, mode)
    if mode == "linear" and args.get("bn_mode") == "train":
        protocol += ", BatchNorm in train mode (the original's)"
    settings = {"epochs": args.get("epoch", args.get("epochs")), "lr": args.get("lr")}   # --epoch, or its alias
    detail = ", ".join(f"{name} {value}" for name, value in settings.items() if value is not None)
    split = args.get("eval_split") or _eval_split(target)
    if args.get("cv"):   # transfer.py --cv K scores K folds over the train and evaluation images together
        protocol, split = f"{args['cv']}-fold cross-validated linear probe", f"train + {split}"
    return {"dataset": target, "split": split, "mode": mode,
            "protocol": protocol, "source": args.get("source_dataset"),
            "detail": f"{protocol}{f' ({detail})' if detail else ''}"}


def _discriminability_facts(args):
    dataset = args.get("dataset")
    if args.get("train_split"):
        split = DATASETS[dataset].train_split if dataset in DATASETS else "train"
    else:
        split = _eval_split(dataset)
    n_init = args.get("n_init")
    return {"dataset": dataset, "split": split, "detail": f"k-means n_init {n_init}" if n_init else ""}


def _mi_facts(args):
    mode, dataset = args.get("mode"), args.get("dataset")
    estimator, layer, holdout = args.get("estimator") or "mine", args.get("layer", -1), args.get("holdout")
    variant = []
    if estimator != "mine":
        variant.append(f"{estimator} bound")
    if layer not in (-1, None) and mode != "xy":
        variant.append(f"layer {layer}")
    if holdout:
        variant.append(f"held-out {holdout:.0%} of rows" if isinstance(holdout, float) else "held-out rows")
    steps = ", ".join(f"{name} {args[key]:g}" for key, name in (("iter_num", "steps"), ("lr", "lr"))
                      if isinstance(args.get(key), (int, float)))
    return {"dataset": dataset, "split": _eval_split(dataset), "mode": mode,
            "quantity": MI_QUANTITIES.get(mode, f"I({mode})"), "estimator": estimator, "layer": layer,
            "holdout": bool(holdout), "variant": ", ".join(variant),
            "detail": ", ".join(x for x in (", ".join(variant) or "MINE", steps) if x)}


_NAME = r"[A-Za-z0-9_]+?"       # a data set name; lazy, so the known suffixes after it are matched first
PCT, NATS = "%", "nats"
KINDS = (
    ResultKind("transfer_concat", re.compile(rf"^transfer_(?P<target_dataset>{_NAME})_concat$"),
               ("epochs", "paths", "feat_size", "final_acc", "best_acc_on_eval", "best_epoch", "seconds"),
               ("feat_size", "final_acc", "best_acc_on_eval", "best_epoch", "seconds"),
               {"final_acc": Quantity("final_acc", "linear-probe accuracy", PCT)}, by_epoch=False, saves_args=False),
    ResultKind("transfer", re.compile(rf"^transfer_(?P<target_dataset>{_NAME})_(?P<mode>linear|finetune)"
                                      r"(?P<bntrain>_bntrain)?(?:_(?P<eval_split>[a-z]+))?(?:_\w+)?$"),
               ("epoch", "final_acc", "best_acc_on_eval", "best_epoch", "source_acc", "param_transferability",
                "seconds"),
               ("final_acc", "best_acc_on_eval", "best_epoch", "source_acc", "param_transferability", "seconds"),
               {"final_acc": Quantity("final_acc", "target accuracy", PCT),
                "best_acc_on_eval": Quantity("best_acc_on_eval", "best target accuracy over probe epochs", PCT),
                "source_acc": Quantity("source_acc", "source test accuracy", PCT),
                "param_transferability": Quantity("param_transferability", "parameter-distance transferability",
                                                  "mean |w - w0|")}),
    ResultKind("discriminability", re.compile(rf"^discriminability_(?P<dataset>{_NAME})(?P<train>_train)?$"),
               ("epoch", "recall_at_1", "nmi", "source_acc", "seconds"),
               ("recall_at_1", "nmi", "source_acc", "seconds"),
               {"recall_at_1": Quantity("recall_at_1", "Recall@1", PCT),
                "nmi": Quantity("nmi", "NMI of k-means clusters", "0-1")}),
    ResultKind("mi", re.compile(rf"^mi_(?P<mode>xt|ty|xy)_(?P<dataset>{_NAME})(?:_(?P<estimator>"
                                rf"{'|'.join(ESTIMATORS)}))?(?:_layer(?P<layer>-?\d+))?(?P<holdout>_holdout)?$"),
               ("epoch", "mi", "std", "mi_train", "best_step", "nan_steps", "iters", "batch_size", "seconds",
                "estimator", "layer"),
               ("mi", "std", "mi_train", "best_step", "nan_steps", "iters", "batch_size", "seconds", "layer"),
               {"mi": Quantity("mi", "mutual information", NATS),
                "mi_train": Quantity("mi_train", "bound on the fitted rows", NATS)}),
)
FACTS = {"transfer": _transfer_facts, "transfer_concat": _transfer_facts,
         "discriminability": _discriminability_facts, "mi": _mi_facts}


def args_from_name(kind, match):
    """The flags a result file's name encodes (the writers' naming), for a file without .args.json."""
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
    args: dict
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


def csv_lines(path):
    """(line number, values) of each non-empty line; a file that is not CSV text is a UserError naming the line."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            try:
                for values in reader:
                    if values:
                        yield reader.line_num, values
            except (csv.Error, UnicodeDecodeError) as err:
                raise damaged(path, reader.line_num + 1, f"it is not CSV text ({err})") from None
    except OSError as err:
        raise UserError(f"{path} could not be read ({err.strerror}).") from None


def parse_rows(path, kind):
    """The rows of one CSV file, numbers parsed; a malformed line is a UserError naming the file and line."""
    lines = csv_lines(path)
    _, header = next(lines, (0, None))
    if header is None:
        return []
    key = "epoch" if kind.by_epoch else kind.columns[0]
    if key not in header:
        raise damaged(path, 1, f"the first line {','.join(header)!r} is not a header with an '{key}' column")
    rows = []
    for line, values in lines:
        if len(values) != len(header):
            raise damaged(path, line, f"{len(values)} values for the {len(header)} columns of the header")
        row = dict(zip(header, values))
        for column in (("epoch",) if kind.by_epoch else ()) + kind.numeric:
            text = row.get(column, "")
            try:
                row[column] = None if text == "" else int(text) if column == "epoch" else float(text)
            except ValueError:
                raise damaged(path, line, f"column '{column}' holds {text!r}, not a number") from None
        rows.append(row)
    return rows


def read_args(path):
    """The resolved arguments a sweep saved beside its results (None when there is no such file)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            args = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f"{path} could not be read as JSON ({err}); it records the arguments of the results "
                        "beside it. Restore it, or delete it and the panel is described from the file name.") from None
    if not isinstance(args, dict):
        raise UserError(f"{path} holds no argument record (a JSON object is expected).")
    return args


def read_result(path, kind, match):
    """The Result of a main results file path (whose shard files are merged in, later rows of an epoch winning)."""
    files = ResultsCSV(path, []).files()
    rows = [row for file in files for row in parse_rows(file, kind)]
    if kind.by_epoch:
        rows = sorted({row["epoch"]: row for row in rows}.values(), key=lambda row: row["epoch"])
    args = next((a for a in (read_args(os.path.splitext(f)[0] + ".args.json") for f in files) if a is not None), None)
    result = Result(kind, path, args or {}, rows)
    result.facts = FACTS[kind.name](args if args is not None else args_from_name(kind, match))
    result.facts["described_by"] = "args" if args is not None else "name"
    if args is None and kind.saves_args:
        print(f"note: {path} has no .args.json beside it; its panel is described from the file name")
    return result


def find_results(run_dir):
    """{stem: Result} of every result file in a run folder (a sweep run only as shards counts too)."""
    found = {}
    for name in sorted(os.listdir(run_dir)):
        if not name.endswith(".csv"):
            continue
        main = re.sub(r"\.shard\d+of\d+\.csv$", ".csv", name)
        stem = os.path.splitext(main)[0]
        kind, match = kind_of(stem)
        if kind is None:
            print(f"note: {os.path.join(run_dir, name)} is not a result file plot.py knows; left out")
            continue
        if stem in found:
            continue
        result = read_result(os.path.join(run_dir, main), kind, match)
        if result.rows:
            found[stem] = result
    return found
