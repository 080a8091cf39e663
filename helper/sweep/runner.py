"""Sweeps over the checkpoints of a run: which checkpoints to take, and the loop that computes their rows,
resuming, with gaps and failures reported.

transfer.py, discriminability.py and mine.py all follow the same pattern:

    results = KIND["transfer"].results_file(run_dir, flags, sweep.shard)
    return run_sweep(sweep, flags, run_dir, results, evaluate_one, label="transfer")

(`sweep`: a `SweepConfig`, `flags`: the script's flags as a dict, both built in its main; the results file,
its columns and its protocol record are helper/sweep/results.py.)

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

One writer per file: run_sweep holds the results file's lock while it works (a second sweep stops, or
waits with --wait), and refuses to append rows of other protocol flags than its protocol record holds.
"""
import itertools
import os
import sys
from dataclasses import dataclass

from tqdm import tqdm

from helper.core.checkpoint import MAX_EPOCH, CheckpointError, checkpoint_files, file_sha1
from helper.core.errors import UserError, warn
from helper.core.protocol import SWEEP_FREE_ARGS
from helper.core.writes import guarded_write
from helper.sweep.board import SweepBoard
from helper.sweep.results import FINGERPRINT, check_protocol, protocol_record_path, write_args_json
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
        check_protocol(results, flags, SWEEP_FREE_ARGS, config.force)
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
