"""ITRD's CIFAR-100 distillation tables: the published numbers beside this repository's runs.

`collect_runs(model_path, ...)` reads the run folders that scripts/distill_cifar100.sh writes
(their recorded flags and log.txt, nothing parsed from folder names); `build_table` pairs every cell
of the published tables with the mean +- sample std of the matching finished runs.
The pairs and numbers are those of ITRD (Miles et al., BMVC 2022), whose teacher and student
rows are CRD's; KD, CRD and ITRD are the rows this repository runs.
"""
import csv
import io
import os
import statistics

from helper.train.run_folder import read_log
from helper.report.seed_groups import run_args

# The rows of each table, and the method names the distillation script writes (notes "<method>_trial_<seed>").
ROWS = ("teacher", "student", "kd", "crd", "itrd")
ROW_LABELS = {"teacher": "Teacher", "student": "Student", "kd": "KD", "crd": "CRD", "itrd": "ITRD"}
DISTILL_METHODS = ("kd", "crd", "itrd")

PUBLISHED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "itrd_cifar100.tsv")


def published_tables(path=PUBLISHED_FILE):
    """{table: {(teacher, student): published top-1 % for ROWS}} from ITRD's tables, kept as data in `path`."""
    tables = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            pair = (row["teacher_model"], row["student_model"])
            tables.setdefault(row["table"], {})[pair] = tuple(float(row[name]) for name in ROWS)
    return tables


_PUBLISHED = published_tables()
SAME_FAMILY, CROSS_FAMILY = _PUBLISHED["same"], _PUBLISHED["cross"]
TABLES = {"same": ("Teacher and student of the same family", SAME_FAMILY),
          "cross": ("Teacher and student of different families", CROSS_FAMILY)}
METRICS = {"last": "val_acc1", "best": "best_acc"}
MISSING = "—"


def finished_accuracy(run_dir, flags, metric):
    """The run's final `metric` accuracy if it trained all its epochs and wrote its final checkpoint, else None."""
    epochs = [record for record in read_log(run_dir) if "epoch" in record]
    if not epochs or epochs[-1]["epoch"] != flags.get("epochs"):
        return None
    if not os.path.isfile(os.path.join(run_dir, f"{flags['model']}_last.pth")):
        return None
    return float(epochs[-1][METRICS[metric]])


def run_key(flags):
    """(row, teacher, student) of a run written by the distillation script; None for any other run."""
    note, teacher = flags.get("note", ""), flags.get("teacher_model")
    if teacher is None:
        if note == "teacher":
            return "teacher", flags["model"], None
        if note == "student":
            return "student", None, flags["model"]
        return None
    for method in DISTILL_METHODS:
        if note == f"{method}_trial_{flags.get('seed')}":
            return method, teacher, flags["model"]
    return None


def collect_runs(model_path, dataset="cifar100", epochs=240, metric="last"):
    """{(row, teacher, student): [(seed, accuracy), ...]} of the finished runs under `model_path`.

    Only runs on `dataset` with `epochs` epochs count, so a short trial run never mixes in.
    """
    found = {}
    names = sorted(os.listdir(model_path)) if os.path.isdir(model_path) else []
    for name in names:
        run_dir = os.path.join(model_path, name)
        flags = run_args(run_dir)
        if flags is None:
            continue
        key = run_key(flags)
        if key is None or flags.get("dataset") != dataset or flags.get("epochs") != epochs:
            continue
        accuracy = finished_accuracy(run_dir, flags, metric)
        if accuracy is not None:
            found.setdefault(key, []).append((flags.get("seed"), accuracy))
    return found


def measured_cell(runs, key):
    """(mean, sample std or None, run count, seeds) of the runs of one cell; mean None when none ran."""
    values = runs.get(key, [])
    accuracies = [accuracy for _seed, accuracy in values]
    if not accuracies:
        return None, None, 0, []
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else None
    return statistics.fmean(accuracies), std, len(accuracies), sorted(seed for seed, _ in values)


def cell_key(row, teacher, student):
    """Teachers count once whatever they taught; students alone whatever teacher their column has."""
    return {"teacher": ("teacher", teacher, None), "student": ("student", None, student)}.get(
        row, (row, teacher, student))


def build_table(runs):
    """[{table, teacher, student, row, published, mean, std, n, seeds}] over both tables, rows in ITRD's order."""
    cells = []
    for table, (_title, pairs) in TABLES.items():
        for (teacher, student), published in pairs.items():
            for row, number in zip(ROWS, published):
                mean, std, count, seeds = measured_cell(runs, cell_key(row, teacher, student))
                cells.append({"table": table, "teacher": teacher, "student": student, "row": row,
                              "published": number, "mean": mean, "std": std, "n": count, "seeds": seeds})
    return cells


def format_measured(cell):
    """'75.03 ± 0.18 (n=3)', '75.03' for one run, '—' for none."""
    if cell["mean"] is None:
        return MISSING
    if cell["std"] is None:
        return f"{cell['mean']:.2f}"
    return f"{cell['mean']:.2f} ± {cell['std']:.2f} (n={cell['n']})"


def to_markdown(cells):
    """Both tables in ITRD's layout; each cell 'published / measured'."""
    lines = []
    for table, (title, pairs) in TABLES.items():
        by_pair = {(c["teacher"], c["student"], c["row"]): c for c in cells if c["table"] == table}
        lines += [f"**{title}**", "",
                  "| Teacher <br> Student | " + " | ".join(f"{t} <br> {s}" for t, s in pairs) + " |",
                  "|:--|" + ":--:|" * len(pairs)]
        for row in ROWS:
            values = [f"{by_pair[t, s, row]['published']:.2f} / {format_measured(by_pair[t, s, row])}"
                      for t, s in pairs]
            lines.append(f"| {ROW_LABELS[row]} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def to_csv(cells):
    """One line per cell: table, teacher, student, row, published, mean, std, n, seeds (';'-separated)."""
    out = io.StringIO()
    fields = ["table", "teacher", "student", "row", "published", "mean", "std", "n", "seeds"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for cell in cells:
        row = dict(cell, seeds=";".join(str(seed) for seed in cell["seeds"]))
        for name in ("mean", "std"):
            row[name] = "" if cell[name] is None else f"{cell[name]:.4f}"
        writer.writerow(row)
    return out.getvalue()
