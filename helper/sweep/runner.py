"""Sweeps over the checkpoints of a run: selection, resumable result rows, gaps and failures.

transfer.py, discriminability.py and mine.py all follow the same pattern:

    results = ResultsCSV(os.path.join(run_dir, "transfer_cinic10_linear.csv"), FIELDS)
    return run_sweep(sweep, flags, run_dir, results, evaluate_one, label="transfer")

(`sweep`: a `SweepConfig`, `flags`: the script's flags as a dict, both built in its main.)

`evaluate_one(epoch, path) -> dict` computes one row. Rows are appended and
flushed as each checkpoint finishes, so an interrupted sweep resumes where it
stopped. Each row records the SHA-1 of its checkpoint file (`FINGERPRINT`): a row
whose checkpoint has changed since is stale and computed again. A missing checkpoint
is skipped with a warning; an unreadable or damaged one (models.load_model's checks)
is reported by name and the sweep goes on; the last line counts the skipped ones
and why, and any makes the exit status 1.

Sharding (`--shard I/N`, or torchrun's RANK / WORLD_SIZE): shard I takes every
N-th selected checkpoint and appends to `<stem>.shard<I>of<N>.csv`; readers merge
all shard files with the main one, so shards never write to the same file.

One writer per file: run_sweep holds an flock on `<results>.lock` while it works (a second
sweep stops, or waits with --wait). Rows are complete or absent, damaged files are refused by
file and line, and the flags are kept beside the results file, in its protocol record (`PROTOCOL_RECORD`,
see docs/run_folder.md).
"""
import csv
import errno
import glob
import io
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from helper.core.checkpoint import (MAX_EPOCH, CheckpointError, atomic_write, changed_flags, checkpoint_files,
                                    describe_changes, file_sha1, parse_epoch, plain, write_flags)
from helper.core.errors import UserError
from helper.core.lock import exclusive_lock
from helper.core.protocol import SWEEP_FREE_ARGS
from helper.core.writes import guarded_write
from helper.sweep.board import SweepBoard
from helper.train.run_folder import DEFAULT_TB_PATH


@dataclass(frozen=True)
class Selection:
    """Which checkpoint epochs a sweep takes: start, start + skip, ... up to end (None: the newest present)."""
    start_epoch: int = 2
    skip: int = 2
    end_epoch: int | None = None

    def epochs(self, available):
        """The selected epochs of the checkpoints present, {epoch: path} `available`."""
        return select_epochs(available, self.start_epoch, self.skip, self.end_epoch)

    def selects(self, epoch, end=None):
        """Whether `epoch` is one of start, start + skip, ... up to `end_epoch` (and `end` when given)."""
        bounds = [bound for bound in (self.end_epoch, end) if bound is not None]
        return on_grid(epoch, self.start_epoch, self.skip, min(bounds) if bounds else None)

    def missing(self, available, leave_out=(), limit=20):
        """(how many epochs start, start + skip, ... up to `end_epoch` or the newest present checkpoint have
        no file in `available` nor an epoch in `leave_out`, the first `limit` of them): counted, never listed in
        full, however far apart the files are."""
        if not available:
            return 0, []
        top = max(available) if self.end_epoch is None else min(self.end_epoch, max(available))
        if top < self.start_epoch:
            return 0, []
        expected = (top - self.start_epoch) // self.skip + 1
        count = expected - sum(self.selects(e, end=top) for e in set(available) | set(leave_out))
        absent = (e for e in range(self.start_epoch, top + 1, self.skip) if e not in available and e not in leave_out)
        return count, list(itertools.islice(absent, min(limit, count)))


@dataclass(frozen=True)
class SweepConfig:
    """How a sweep walks a run's checkpoints and keeps its results file."""
    selection: Selection = Selection()
    force: bool = False             # recompute checkpoints already in the file (another protocol: start it anew)
    shard: tuple = (0, 1)           # (I, N): this process takes every N-th selected checkpoint from the I-th
    wait: bool = False              # wait for another writer of the same file instead of stopping
    progress: bool = True           # tqdm bars
    tb_path: str | None = DEFAULT_TB_PATH   # TensorBoard root for the rows as scalars ('' or None: none)


def parse_shard(text, environ=os.environ):
    """'1/4' -> (1, 4); None -> torchrun's (RANK, WORLD_SIZE) when set, else (0, 1)."""
    if text is None:
        return int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1))
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard expects I/N such as 0/4, got {text!r}.") from None
    if not 0 <= index < count:
        raise UserError(f"--shard {text}: I must be in 0..N-1.")
    return index, count


def select_epochs(available, start, skip, end=None):
    """The epochs of `available` ({epoch: path}) among start, start+skip, ... up to `end` (None: no bound),
    sorted. Only present files are listed, so a far `end` or a far epoch costs nothing."""
    if skip < 1:
        raise UserError(f"--skip must be at least 1, got {skip}.")
    if end is not None and end < start:
        raise UserError(f"--end_epoch {end} is before --start_epoch {start}, so no checkpoint is selected; "
                        "pass an --end_epoch at or after --start_epoch (or none: up to the newest checkpoint).")
    return [e for e in sorted(available) if on_grid(e, start, skip, end)]


def on_grid(epoch, start, skip, end=None):
    """Whether `epoch` is one of start, start + skip, ... up to `end` (None: no bound): the selection rule."""
    return epoch >= start and (end is None or epoch <= end) and (epoch - start) % skip == 0


class DamagedResultsError(UserError):
    """A results file that cannot be read as written: the message names the file and the line."""


def warn(message):
    """One 'warning: ...' line on stderr, as the sweeps print them."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _csv_line(values):
    """One complete CSV line (with its newline) of `values`."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


@dataclass(frozen=True)
class DamageWords:
    """How one reader of results files words each damage for its user: a sweep can start the file anew
    (--force), plot.py and the tables can only refuse it. Each entry returns the `why` of the message."""
    error: Callable             # (path, line, why) -> the UserError raised
    not_text: Callable          # (UnicodeDecodeError or csv.Error) -> why
    no_header: Callable         # (key column, values of the first line) -> why
    length: Callable            # (values, header) -> why
    epoch: Callable             # (epoch text that is not a whole number) -> why
    number: Callable            # (column, text of a numeric column that is not a number) -> why


SWEEP_WORDS = DamageWords(
    error=lambda path, line, why: DamagedResultsError(
        f"results file {path} is damaged at line {line}: {why}. Nothing was read from it or appended to it. Fix "
        f"or delete that line, or pass --force to the sweep to start the file anew (the old one is kept as "
        f"{path}.bak)."),
    not_text=lambda err: "it is not UTF-8 text" if isinstance(err, UnicodeDecodeError) else str(err),
    no_header=lambda key, values: (f"it should be the header, with a {key!r} column, but reads "
                                   f"{','.join(values)[:80]!r}"),
    length=lambda values, header: f"it has {len(values)} values where the header has {len(header)} columns",
    epoch=lambda text: f"its epoch {text!r} is not a whole number of ASCII digits up to {MAX_EPOCH}",
    number=lambda column, text: f"its {column!r} value {text!r} is not a number")


def is_number(text):
    """Whether a numeric cell holds a number or is empty (not computed): float() would take '1_0' and ' 1 '."""
    return text == "" or re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(nan|inf)", text,
                                      re.ASCII | re.IGNORECASE) is not None


def csv_records(path, key, words, numeric=()):
    """Yield (line number, row dict) of each row of the results file `path`, the one reader of results files.

    The first non-empty line must be a header with the `key` column; every row has its length, with
    key 'epoch' a whole-number epoch (`parse_epoch`), and a number or nothing in each of its `numeric`
    columns. Any damage raises `words.error` naming the file and the line. An
    incomplete last line (a writer killed mid-write on a file system without atomic appends) is left out
    with a warning.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise UserError(f"{path} could not be read ({err.strerror}).") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise words.error(path, data[:err.start].count(b"\n") + 1, words.not_text(err)) from None
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
                    raise words.error(path, reader.line_num, words.no_header(key, values))
                header = values
                continue
            if len(values) != len(header):
                raise words.error(path, reader.line_num, words.length(values, header))
            row = dict(zip(header, values))
            if key == "epoch" and parse_epoch(row["epoch"]) is None:
                raise words.error(path, reader.line_num, words.epoch(row["epoch"]))
            for column in numeric:
                if not is_number(row.get(column, "")):
                    raise words.error(path, reader.line_num, words.number(column, row[column]))
            yield reader.line_num, row
    except csv.Error as err:
        raise words.error(path, reader.line_num, words.not_text(err)) from None


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
        return [row for _, row in csv_records(path, self.key, SWEEP_WORDS, self.numeric)]

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
        text = _csv_line(self.fields) + "".join(_csv_line([row.get(k, "") for k in self.fields]) for row in rows)
        atomic_write(path, lambda f: f.write(text.encode()))
        print(f"note: gave {path} its {FINGERPRINT} column; its {len(rows)} earlier rows have none and are "
              "kept as computed from the checkpoints in place", flush=True)

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


PROTOCOL_RECORD = ".args.json"     # `<results stem>` + this: the flags the rows were computed with


def protocol_record_path(results_path):
    """The protocol record beside a results file: its stem + `PROTOCOL_RECORD`."""
    return os.path.splitext(results_path)[0] + PROTOCOL_RECORD


def check_protocol(results, flags, force=False):
    """Refuse to append rows computed with other protocol flags (probe epochs, MINE lr, seed, ...), or
    of an unknown protocol (no or a damaged protocol record), to a file that holds rows: one file, one protocol.

    `flags`: the sweep's flags as a dict. With `force` (--force) such a file, or one with other columns (written
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
    changed = changed_flags(saved, current, SWEEP_FREE_ARGS)
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


def run_sweep(config, flags, run_dir, results, evaluate_one, label="sweep"):
    """Evaluate the selected checkpoints of `run_dir`; return the exit status: 0, or 1 when checkpoints were
    skipped as unreadable or damaged (a missing one only warns).

    `config`: a `SweepConfig`; `flags`: the sweep's flags as a dict (`vars(args)`), the protocol record
    kept beside the results file.

    Holds the results file's lock throughout, so a second sweep on it waits (--wait) or stops, and
    reads what is done only once it holds it: every checkpoint is computed once. A row whose checkpoint
    file changed since it was computed (another fingerprint) is computed again.
    """
    for path in (results.write_path, protocol_record_path(results.write_path)):
        if os.path.isdir(path):
            raise UserError(f"{path} is a directory, where this sweep keeps its results; nothing was computed or "
                            "written. Move or rename that directory, then run the same command again.")
    available, odd_names = checkpoint_files(run_dir)
    index, count = config.shard
    epochs = config.selection.epochs(available)[index::count]
    with results.lock(wait=config.wait):
        results.repair()
        check_protocol(results, flags, config.force)
        results.add_fingerprint_column()
        done = {} if config.force else results.latest()
        stale = stale_rows(label, results, done, available, epochs, config.selection)
        todo = [e for e in epochs if e not in done or e in stale]
        kept = len(set(done) & set(epochs)) - len(stale)
        if kept:
            print(f"{label}: {kept} checkpoints already in {results.path}; {len(todo)} to go (--force recomputes)",
                  flush=True)
        write_args_json(results, flags)
        if index == 0:
            report_missing(label, run_dir, config.selection, available, done)
        failed = [(name, f"its epoch is not a whole number up to {MAX_EPOCH}") for name in odd_names]
        for name, why in failed:
            print(f"error: {os.path.join(run_dir, name)} is named like a checkpoint but {why}; skipped.",
                  file=sys.stderr, flush=True)
        failed += sweep_checkpoints(config, run_dir, results, evaluate_one, label, available, todo)
    where = f"results in {results.write_path}"
    if failed:
        reasons = "; ".join(f"{name} ({why})" for name, why in failed)
        print(f"{label}: {where}; {len(failed)} checkpoint{'s' * (len(failed) > 1)} skipped, not computed: "
              f"{reasons} (exit status 1)", file=sys.stderr, flush=True)
        return 1
    print(f"{label}: {where}", flush=True)
    return 0


def stale_rows(label, results, done, available, epochs, selection):
    """The epochs of `epochs` whose row in `done` ({epoch: row}) records another fingerprint than its
    checkpoint file has now, to compute again; one warning line names them, and the rows of selected
    epochs whose checkpoint is gone. A row without a fingerprint (an older file's) is trusted."""
    def changed(epoch):
        try:
            return file_sha1(available[epoch]) != done[epoch][FINGERPRINT]
        except CheckpointError:
            return True                     # unreadable now: computing it again reports it
    recorded = {e for e, row in done.items() if row.get(FINGERPRINT)}
    stale = [e for e in epochs if e in recorded and changed(e)]
    gone = [e for e in sorted(recorded) if selection.selects(e) and e not in available]
    parts = [f"epochs {', '.join(map(str, stale))}: the checkpoint file changed since (another SHA-1); "
             "computed again"] if stale else []
    if gone:
        parts.append(f"epochs {', '.join(map(str, gone))}: the checkpoint file is gone; the rows stay")
    if parts:
        warn(f"{label}: stale rows in {results.path}: {'; '.join(parts)}.")
    return stale


def report_missing(label, run_dir, selection, available, done):
    """Warn about the selected epochs without a checkpoint file (nor a row), the first 20 by name."""
    count, first = selection.missing(available, leave_out=done)
    for epoch in first:
        warn(f"ckpt_epoch_{epoch}.pth is missing from {run_dir}; skipped")
    if count:
        more = f" and {count - len(first)} more" if count > len(first) else ""
        print(f"{label}: missing checkpoints (skipped): epochs {', '.join(map(str, first))}{more}", flush=True)


def sweep_checkpoints(config, run_dir, results, evaluate_one, label, available, todo):
    """Evaluate and append each epoch of `todo` with its checkpoint's fingerprint; returns
    [(file name, why)] of the checkpoints skipped as unreadable or damaged."""
    failed = []
    board = SweepBoard(config.tb_path, run_dir, results.path)
    for epoch in tqdm(todo, desc=label, disable=not config.progress, dynamic_ncols=True):
        path = available[epoch]
        try:
            fingerprint = file_sha1(path)
            row = evaluate_one(epoch, path)
        except CheckpointError as err:
            failed.append((os.path.basename(path), getattr(err, "reason", "does not fit the model")))
            tqdm.write(f"error: {err} Skipped; the sweep goes on.", file=sys.stderr)
            continue
        with guarded_write(results.write_path, safe=f"The row of epoch {epoch} was not appended; nothing else "
                           "was lost: the file keeps every row written before.",
                           then="Free space on that disk or make the folder writable; rerunning the same "
                                "command then computes the rest."):
            results.append({"epoch": epoch, **row, FINGERPRINT: fingerprint})
        board.add(epoch, row)
    board.close()
    return failed
