"""The results files of the sweeps: what each kind is named and holds, how a row is appended and read back,
and the protocol record beside each file. The sweeps write them (helper/sweep/runner.py); plot.py and the
tables read them (helper/report/).

    kind = KIND["mi"]
    results = kind.results_file(run_dir, flags)     # <run_dir>/mi_xt_cifar100.csv, its columns kind.fields(flags)
    results.append({"epoch": 2, "mi": 0.8, ...})    # one complete line, flushed
    results.rows()                                  # one row per epoch, shards merged, later rows winning

One column list per kind (`ResultKind.columns`) is both what the writer puts on the header and what the
readers check: every column but the key and the `text` ones must hold a number (or be empty). A damaged file
is refused naming the file and the line (`DamagedResultsError`). The flags a file's rows were computed with
are kept beside it, in its protocol record (`<results stem>` + `PROTOCOL_RECORD`, docs/run_folder.md).
"""
import csv
import errno
import glob
import io
import json
import os
import re
from dataclasses import dataclass
from typing import Callable

from dataset.registry import DATASETS
from helper.core.checkpoint import (MAX_EPOCH, atomic_write, changed_flags, describe_changes, parse_epoch, plain,
                                    write_flags)
from helper.core.errors import UserError, warn
from helper.core.lock import exclusive_lock


# ------------------------------------------------------------------ the kinds of results file
@dataclass(frozen=True)
class ResultKind:
    """One kind of results file: how its writer names it, its columns, and what names a row."""
    name: str
    naming: Callable            # the sweep's flags (dict) -> the main file's stem
    shape: str                  # a regular expression every stem of this kind matches (what tells kinds apart)
    columns: tuple              # the writer's columns, in file order (a sweep's FINGERPRINT follows them)
    text: tuple = ()            # columns that hold text; every other column but the key holds numbers
    extra: tuple = ()           # (flag, columns) pairs: the columns a file gains when that flag is set (--cv)
    key: str = "epoch"          # the column that names a row: the checkpoint epoch (the concat probe: its epochs)
    saves_args: bool = True     # its writer saves its protocol record (run_sweep does; the concat probe does not)

    @property
    def by_epoch(self):
        """One row per checkpoint epoch (the concat probe has one row per combination of checkpoints)."""
        return self.key == "epoch"

    @property
    def numeric(self):
        """The columns whose cells must be numbers (or empty), every variant's included."""
        every = self.columns + tuple(c for _, columns in self.extra for c in columns)
        return tuple(c for c in every if c != self.key and c not in self.text)

    def fields(self, flags):
        """The columns a sweep with `flags` writes: `columns`, then those of each `extra` flag it sets."""
        return list(self.columns) + [c for flag, columns in self.extra if flags.get(flag) for c in columns]

    def names(self, stem):
        """Whether `stem` (a file name without '.csv' or a shard suffix) is named like this kind's files."""
        return re.fullmatch(self.shape, stem, re.ASCII) is not None

    def file_name(self, flags):
        """The results file a sweep with `flags` (its flags as a dict) writes: '<stem>.csv'."""
        return self.naming(flags) + ".csv"

    def results_file(self, run_dir, flags, shard=(0, 1)):
        """The `ResultsCSV` a sweep with `flags` writes in `run_dir`: its name, columns and numeric columns."""
        return ResultsCSV(os.path.join(run_dir, self.file_name(flags)), self.fields(flags), shard, self.numeric)


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


# A file of fewer columns (written before a column existed) is still read by plot.py; appending to it asks
# for --force.
KINDS = (
    ResultKind("transfer_concat", lambda flags: f"transfer_{flags['target_dataset']}_concat", r"transfer_\w+_concat",
               ("protocol", "epochs", "paths", "feat_size", "final_acc", "best_acc_on_eval", "best_epoch",
                "members_acc", "seconds"),
               text=("protocol", "paths", "members_acc"), key="epochs", saves_args=False),
    ResultKind("transfer", _transfer_name, r"transfer_\w+",
               ("epoch", "final_acc", "best_acc_on_eval", "best_epoch", "source_acc", "param_transferability",
                "seconds", "param_transferability_blocks"),
               text=("param_transferability_blocks",), extra=(("cv", ("final_acc_std", "final_acc_sem", "folds")),)),
    ResultKind("discriminability", _discriminability_name, r"discriminability_\w+",
               ("epoch", "recall_at_1", "nmi", "source_acc", "seconds", "nc1", "effective_rank", "coding_rate")),
    ResultKind("mi", _mi_name, r"mi_(xt|ty|xy)_\w+",
               ("epoch", "mi", "std", "mi_train", "nan_steps", "iters", "batch_size", "seconds", "estimator", "layer",
                "best_step"), text=("estimator",)),
)
KIND = {kind.name: kind for kind in KINDS}


def kind_of(stem):
    """The ResultKind whose files are named like `stem` (None for another file)."""
    return next((kind for kind in KINDS if kind.names(stem)), None)


# ------------------------------------------------------------------ reading and appending rows
class DamagedResultsError(UserError):
    """A results file that cannot be read as written, named by file and line, with what its reader's user can do."""

    def __init__(self, path, line, why, hint):
        super().__init__(f"results file {path} is damaged at line {line}: {why}. {hint}")


# What a sweep's user can do about a damaged file (plot.py, which can only refuse it, says otherwise: PLOT_HINT).
SWEEP_HINT = ("Nothing was read from it or appended to it. Fix or delete that line, or pass --force to the sweep "
              "to start the file anew (the old one is kept as {path}.bak).")


def _csv_line(values):
    """One complete CSV line (with its newline) of `values`."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def is_number(text):
    """Whether a numeric cell holds a number or is empty (not computed): float() would take '1_0' and ' 1 '."""
    return text == "" or re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(nan|inf)", text,
                                      re.ASCII | re.IGNORECASE) is not None


def csv_records(path, key, numeric=(), hint=SWEEP_HINT):
    """Yield (line number, row dict) of each row of the results file `path`, the one reader of results files.

    The first non-empty line must be a header with the `key` column; every row has its length, with
    key 'epoch' a whole-number epoch (`parse_epoch`), and a number or nothing in each of its `numeric`
    columns. Any damage raises `DamagedResultsError` naming the file and the line, with `hint` (`{path}`: the
    file). An incomplete last line (a writer killed mid-write on a file system without atomic appends) is left
    out with a warning.
    """
    def damaged(line, why):
        return DamagedResultsError(path, line, why, hint.format(path=path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise UserError(f"{path} could not be read ({err.strerror}).") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise damaged(data[:err.start].count(b"\n") + 1, "it is not UTF-8 text") from None
    if text and not text.endswith("\n"):
        warn(f"{path}: its last line is incomplete (a sweep stopped while writing it); it is left out, "
             "and the next sweep on this file drops it and recomputes that checkpoint.")
        text = text[:text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    header = None
    try:
        for values in reader:
            if not values:
                continue
            if header is None:
                if key not in values:
                    raise damaged(reader.line_num, f"it should be the header, with a {key!r} column, but reads "
                                                   f"{','.join(values)[:80]!r}")
                header = values
                continue
            if len(values) != len(header):
                raise damaged(reader.line_num, f"it has {len(values)} values where the header has {len(header)} "
                                               "columns")
            row = dict(zip(header, values))
            if key == "epoch" and parse_epoch(row["epoch"]) is None:
                raise damaged(reader.line_num, f"its epoch {row['epoch']!r} is not a whole number of ASCII digits "
                                               f"up to {MAX_EPOCH}")
            for column in numeric:
                if not is_number(row.get(column, "")):
                    raise damaged(reader.line_num, f"its {column!r} value {row[column]!r} is not a number")
            yield reader.line_num, row
    except csv.Error as err:
        raise damaged(reader.line_num, str(err)) from None


SHARD_SUFFIX = re.compile(r"\.shard(\d+)of(\d+)(\.\w+)$")     # <stem>.shard<I>of<N><ext>: shard I of N's file


def main_results_path(path):
    """The main results file a shard's file belongs to ('x.shard1of4.csv' -> 'x.csv'); others unchanged."""
    return SHARD_SUFFIX.sub(r"\3", path)


FINGERPRINT = "checkpoint_sha1"     # the last column of a sweep's rows: the SHA-1 of the checkpoint file it read


class ResultsCSV:
    """One CSV row per checkpoint, appended as it finishes; shards merged on read.

    Appending a row is one write of a complete line (a new file gets its header and first
    row in one atomic file creation), so no crash leaves a partial row or a headerless file.
    Reading refuses a damaged file with `DamagedResultsError` naming the file and the line; an
    incomplete last line (a writer killed mid-write on a file system without atomic appends)
    is left out with a warning, and `repair` drops it from the file this process writes. A file keyed by
    epoch gets the `FINGERPRINT` column last; `numeric`: the columns whose cells must be numbers (or empty).
    """

    def __init__(self, path, fields, shard=(0, 1), numeric=()):
        self.path, self.fields, self.numeric = path, list(fields), tuple(numeric)
        stem, ext = os.path.splitext(path)
        self.stem, self.ext = stem, ext
        self.write_path = path if shard[1] == 1 else f"{stem}.shard{shard[0]}of{shard[1]}{ext}"
        self.key = "epoch" if "epoch" in self.fields or not self.fields else self.fields[0]
        if self.key == "epoch" and self.fields and FINGERPRINT not in self.fields:
            self.fields.append(FINGERPRINT)

    def files(self):
        return [p for p in [self.path] + sorted(glob.glob(f"{self.stem}.shard*of*{self.ext}")) if os.path.isfile(p)]

    def read_file(self, path):
        """The rows of one file as dicts; `DamagedResultsError` names the file and line of any damage."""
        return [row for _, row in csv_records(path, self.key, self.numeric)]

    def header(self, path):
        """The column names on the first line of `path` (None when the file is empty)."""
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            return next(csv.reader(f), None)

    def all_rows(self):
        """Every row of the main file and then the shard files, as written (duplicates included)."""
        return [row for path in self.files() for row in self.read_file(path)]

    def latest(self):
        """{epoch: its last row}, sorted by epoch."""
        merged = {int(row["epoch"]): row for row in self.all_rows()}
        return dict(sorted(merged.items()))

    def rows(self):
        """One row per epoch, later rows of an epoch winning, by epoch."""
        return list(self.latest().values())

    def done(self):
        return set(self.latest())

    def add_fingerprint_column(self):
        """Give the file this process writes, when written before the `FINGERPRINT` column, that column,
        empty in its old rows (docs/run_folder.md: such a row is taken as computed from the checkpoint in
        place); rewritten atomically, with a note."""
        path = self.write_path
        if FINGERPRINT not in self.fields or not os.path.isfile(path) or os.path.getsize(path) == 0:
            return
        if (self.header(path) or []) + [FINGERPRINT] != self.fields:
            return                          # up to date, or other columns: append() says so
        rows = self.read_file(path)
        self.rewrite(rows)
        print(f"note: gave {path} its {FINGERPRINT} column; its {len(rows)} earlier rows have none and are "
              "kept as computed from the checkpoints in place", flush=True)

    def add_protocol_column(self):
        """Give a concat probe's file, when written before its `protocol` column, that column: 'linear' in its
        old rows (the only protocol then); rewritten atomically."""
        path = self.write_path
        if not os.path.isfile(path) or "protocol" in (self.header(path) or ["protocol"]):
            return
        rows = [row for _, row in csv_records(path, "epochs")]
        self.rewrite([{**row, "protocol": "linear"} for row in rows])

    def rewrite(self, rows):
        """Replace the file this process writes by the header and `rows` (dicts; a missing column left empty),
        atomically."""
        text = _csv_line(self.fields) + "".join(_csv_line([row.get(k, "") for k in self.fields]) for row in rows)
        atomic_write(self.write_path, lambda f: f.write(text.encode()))

    def repair(self):
        """Drop an incomplete last line from the file this process writes, with a warning."""
        if not os.path.isfile(self.write_path):
            return
        with open(self.write_path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
                warn(f"{self.write_path}: dropped its incomplete last line (a sweep stopped while writing "
                     "it); that checkpoint is computed again.")

    def append(self, row):
        """Append `row` as one complete line; a new (or empty) file is created with its header atomically."""
        line = _csv_line([_format(row.get(k)) for k in self.fields])
        if not os.path.isfile(self.write_path) or os.path.getsize(self.write_path) == 0:
            atomic_write(self.write_path, lambda f: f.write((_csv_line(self.fields) + line).encode()))
            return
        self.repair()
        header = self.header(self.write_path)
        if header != self.fields:
            raise UserError(f"results file {self.write_path} has the columns {','.join(header or [])}, but "
                            f"this sweep writes {','.join(self.fields)}; nothing was appended. Pass --force "
                            f"to start the file anew (the old one is kept as {self.write_path}.bak).")
        data = line.encode()
        fd = os.open(self.write_path, os.O_WRONLY | os.O_APPEND)
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write (disk full?)", self.write_path)
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)          # no partial row stays behind
            raise
        finally:
            os.close(fd)

    def start_anew(self):
        """Move the file this process writes and its protocol record to `<name>.bak`; say so."""
        for path in (self.write_path, protocol_record_path(self.write_path)):
            if os.path.isfile(path):
                os.replace(path, path + ".bak")
                print(f"note: kept the previous {os.path.basename(path)} as {path}.bak", flush=True)

    def lock(self, wait=False):
        """Hold the advisory lock `<write file>.lock`: one writer per results file (shards have their own).

        Another holder: a `UserError` naming its process, or with `wait`, wait for it.
        """
        path = self.write_path
        return exclusive_lock(
            path + ".lock", wait=wait,
            busy=lambda holder: UserError(f"{path} is being written by another sweep ({holder}). Two writers "
                                          "would compute every checkpoint twice; wait for it to finish, or pass "
                                          "--wait to start once it has."),
            waiting=lambda holder: f"waiting for {holder} to finish writing {path} (--wait)")


def _format(value):
    return f"{value:.6g}" if isinstance(value, float) else ("" if value is None else value)


# ------------------------------------------------------------------ the protocol record
PROTOCOL_RECORD = ".args.json"     # `<results stem>` + this: the flags the rows were computed with


def protocol_record_path(results_path):
    """The protocol record beside a results file: its stem + `PROTOCOL_RECORD`."""
    return os.path.splitext(results_path)[0] + PROTOCOL_RECORD


def check_protocol(results, flags, free_args, force=False):
    """Refuse to append rows computed with other protocol flags (probe epochs, MINE lr, seed, ...), or
    of an unknown protocol (no or a damaged protocol record), to a file that holds rows: one file, one protocol.

    `flags`: the sweep's flags as a dict, of which `free_args` may differ (they do not change what a row means).
    With `force` (--force) such a file, or one with other columns (written
    before a column existed), is started anew, the old one kept as `<name>.bak`; --force on a file of the same
    protocol and columns recomputes the selected checkpoints and appends (later rows win).
    """
    path, target = protocol_record_path(results.write_path), results.write_path
    try:
        has_rows = os.path.isfile(target) and bool(results.read_file(target))
    except DamagedResultsError:
        if not force:
            raise
        return results.start_anew()
    if not has_rows:
        return None
    if not os.path.isfile(path):
        problem = (f"{target} holds rows but not its protocol record {path} (deleted?), so the flags they "
                   "were computed with are unknown and new rows could mix two protocols in one curve.")
        if force:
            return results.start_anew()
        raise UserError(f"{problem} Restore {os.path.basename(path)}, or pass --force to start the file anew "
                        f"(the old one is kept as {os.path.basename(target)}.bak).")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError("it does not hold a JSON object of flags")
    except (ValueError, UnicodeDecodeError) as err:
        if force:
            return results.start_anew()
        raise UserError(f"the protocol record {path} is damaged ({err}), so the flags the rows of {target} "
                        f"were computed with are unknown. Restore it, or pass --force to start the results "
                        f"file anew (both old files are kept as <name>.bak).") from None
    current = plain(flags)
    changed = changed_flags(saved, current, free_args)
    if force and (changed or results.header(target) != results.fields):   # other flags, or written before a column
        return results.start_anew()
    if changed:
        raise UserError(f"{target} already holds rows computed with other flags: "
                        f"{describe_changes(changed, flags=current)}. Rows of two "
                        "protocols would mix in one curve. Pass the same flags to continue it, or --force to "
                        f"start it anew with the new ones (the old file is kept as {os.path.basename(target)}.bak).")
    return None


def write_args_json(results, flags):
    """Record the sweep's flags (a plain dict) beside its results file, as its protocol record."""
    write_flags(protocol_record_path(results.write_path), flags)


def read_args(path):
    """The flags a sweep recorded beside its results (a protocol record; None when there is no such file)."""
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
