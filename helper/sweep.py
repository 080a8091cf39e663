"""Sweeps over the checkpoints of a run: selection, resumable result rows, gaps and failures.

transfer.py, discriminability.py and mine.py all follow the same pattern:

    run_dir = resolve_run_dir(args.ckpt_path)
    results = ResultsCSV(os.path.join(run_dir, "transfer_cinic10_linear.csv"), FIELDS)
    return run_sweep(args, run_dir, results, evaluate_one, label="transfer")

`evaluate_one(epoch, path) -> dict` computes one row. Rows are appended and
flushed as each checkpoint finishes, so an interrupted sweep resumes where it
stopped. A missing checkpoint is skipped with a warning; an unreadable one is
reported by name and the sweep goes on; both are listed at the end, and a
failure makes the exit status non-zero.

Sharding (`--shard I/N`, or torchrun's RANK / WORLD_SIZE): shard I takes every
N-th selected checkpoint and appends to `<stem>.shard<I>of<N>.csv`; readers merge
all shard files with the main one, so shards never write to the same file.
"""
import csv
import glob
import json
import os
import sys

from tqdm import tqdm

from helper.checkpoint import CheckpointError, changed_flags, describe_changes, list_checkpoints, plain
from helper.errors import UserError
from helper.sweep_board import SweepBoard, add_board_args


def add_sweep_args(parser, start_epoch=2, skip=2):
    g = parser.add_argument_group("checkpoint sweep")
    g.add_argument("--ckpt_path", required=True,
                   help="run folder: a name under --model_path (as in the original) or any path")
    g.add_argument("--model_path", default="./save/model", help="where run folders live")
    g.add_argument("--start_epoch", type=int, default=start_epoch, help="first checkpoint epoch")
    g.add_argument("--skip", type=int, default=skip, help="epoch step between checkpoints (even, as saved)")
    g.add_argument("--end_epoch", type=int, default=None, help="last checkpoint epoch (default: newest present)")
    g.add_argument("--force", action="store_true", help="recompute checkpoints already in the results file")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="take every N-th checkpoint starting at the I-th (0-based); default from RANK/WORLD_SIZE")
    g.add_argument("--no_progress", action="store_true", help="no tqdm progress bars")
    add_board_args(g)
    return parser


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
    """Epochs start, start+skip, ... up to `end` (default: the newest available)."""
    if skip < 1:
        raise UserError(f"--skip must be at least 1, got {skip}.")
    if end is None:
        end = max(available) if available else start - 1
    return list(range(start, end + 1, skip))


class ResultsCSV:
    """One CSV row per checkpoint, appended and flushed as it finishes; shards merged on read."""

    def __init__(self, path, fields, shard=(0, 1)):
        self.path, self.fields = path, list(fields)
        stem, ext = os.path.splitext(path)
        self.stem, self.ext = stem, ext
        self.write_path = path if shard[1] == 1 else f"{stem}.shard{shard[0]}of{shard[1]}{ext}"

    def files(self):
        return [p for p in [self.path] + sorted(glob.glob(f"{self.stem}.shard*of*{self.ext}")) if os.path.isfile(p)]

    def all_rows(self):
        """Every row of the main file and then the shard files, as written (duplicates included)."""
        rows = []
        for path in self.files():
            with open(path, newline="") as f:
                rows.extend(csv.DictReader(f))
        return rows

    def rows(self):
        """One row per epoch, later rows of an epoch winning, by epoch."""
        merged = {int(row["epoch"]): row for row in self.all_rows()}
        return [merged[e] for e in sorted(merged)]

    def done(self):
        return {int(row["epoch"]) for row in self.rows()}

    def append(self, row):
        new = not os.path.isfile(self.write_path)
        os.makedirs(os.path.dirname(os.path.abspath(self.write_path)), exist_ok=True)
        with open(self.write_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _format(row.get(k)) for k in self.fields})
            f.flush()
            os.fsync(f.fileno())


def _format(value):
    return f"{value:.6g}" if isinstance(value, float) else ("" if value is None else value)


# Flags that say which checkpoints to take and how fast or where to compute, not what a row means.
SWEEP_FREE_ARGS = {"ckpt_path", "model_path", "start_epoch", "skip", "end_epoch", "force", "shard", "no_progress",
                   "device", "num_workers", "data_folder", "cache_dir", "extract_batch", "source_dataset",
                   "channels_last", "compile", "loader", "tb_path"}


def args_json_path(results):
    return os.path.splitext(results.write_path)[0] + ".args.json"


def check_protocol(results, args):
    """Refuse to append rows computed with other protocol flags (probe epochs, MINE lr, seed, ...)
    to a results file that already holds rows, unless --force: one file, one protocol."""
    path = args_json_path(results)
    if args.force or not os.path.isfile(path) or not results.done():
        return
    with open(path) as f:
        saved = json.load(f)
    current = plain(vars(args))
    changed = changed_flags(saved, current, SWEEP_FREE_ARGS)
    if changed:
        raise UserError(f"{results.write_path} already holds rows computed with other flags: "
                        f"{describe_changes(changed, flags=current)}. Rows of two "
                        "protocols would mix in one curve. Pass the same flags to continue it, or --force to "
                        "recompute every selected checkpoint with the new ones (later rows replace earlier).")


def write_args_json(results, args):
    with open(args_json_path(results), "w") as f:
        json.dump(plain(vars(args)), f, indent=1, sort_keys=True)


def run_sweep(args, run_dir, results, evaluate_one, label="sweep"):
    """Evaluate the selected checkpoints of `run_dir`; return the exit status (0, or 1 on failures)."""
    available = list_checkpoints(run_dir)
    shard = parse_shard(args.shard)
    epochs = select_epochs(available, args.start_epoch, args.skip, args.end_epoch)[shard[0]::shard[1]]
    done = set() if args.force else results.done()
    todo = [e for e in epochs if e not in done]
    missing, failed = [], []
    if done & set(epochs):
        print(f"{label}: {len(done & set(epochs))} checkpoints already in {results.path}; "
              f"{len(todo)} to go (--force recomputes)", flush=True)
    check_protocol(results, args)
    write_args_json(results, args)
    board = SweepBoard(args.tb_path, run_dir, results.path)
    for epoch in tqdm(todo, desc=label, disable=args.no_progress, dynamic_ncols=True):
        path = available.get(epoch)
        if path is None:
            missing.append(epoch)
            tqdm.write(f"warning: ckpt_epoch_{epoch}.pth is missing from {run_dir}; skipped")
            continue
        try:
            row = evaluate_one(epoch, path)
        except CheckpointError as err:
            failed.append((epoch, str(err)))
            tqdm.write(f"error: {err} Skipped; the sweep goes on.", file=sys.stderr)
            continue
        results.append({"epoch": epoch, **row})
        board.add(epoch, row)
    board.close()
    if missing:
        print(f"{label}: missing checkpoints (skipped): epochs {', '.join(map(str, missing))}")
    if failed:
        print(f"{label}: unreadable checkpoints: " + "; ".join(f"epoch {e}" for e, _ in failed), file=sys.stderr)
    print(f"{label}: results in {results.write_path}", flush=True)
    return 1 if failed else 0
