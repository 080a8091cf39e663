"""Housekeeping of a training run's folder: the epoch log, leftovers of a kill, a write check before any
epoch, and finding the run a `--resume` meant (docs/run_folder.md says what this guarantees)."""
import json
import os
import shlex
import time

import torch

from helper.core.checkpoint import TEMP_PREFIX, save_atomic
from helper.core.errors import UserError
from helper.core.lock import exclusive_lock
from helper.core.writes import folder_problem

LOG_FILE = "log.txt"
RESUME_FILE = "resume.pth"
FLAGS_FILE = "args.json"    # the run's flags, as a JSON object, and the script that wrote them
SCRIPT_KEY = "script"       # args.json's entry naming that script (train_vanilla.py, train_ctc.py, distill_cat.py)
LOCK_FILE = "train.lock"    # held by the process training the run (run_lock)
DEFAULT_TB_PATH = "./save/tensorboard"      # --tb_path's default: the root of every run's TensorBoard events
# What the sweeps derive from a run's checkpoints: results files (shards too), protocol records, their .bak
# copies; and folders of MINE histories and fine-tuned weights. --overwrite moves them to ASIDE_PREFIX<time>/.
RESULTS_SUFFIXES = (".csv", ".csv.bak", ".args.json", ".args.json.bak")
FINETUNED_PREFIX, HISTORY_SUFFIX = "finetuned_", "_history"
ASIDE_PREFIX = "before_overwrite_"


# ------------------------------------------------------------------ log.txt
def tb_dir(tb_path, run_dir):
    """`<tb_path>/<run folder name>`: where a run's training events go (its sweeps' go to a sub-folder)."""
    return os.path.join(tb_path, os.path.basename(os.path.normpath(run_dir)))


def append_log_line(path, record):
    """`record` as one complete JSON line appended to `path` in a single write."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def read_log(run_dir):
    """The JSON records of `run_dir`/log.txt; a line cut short by a kill mid-write is skipped."""
    path = os.path.join(run_dir, LOG_FILE)
    records = []
    for line in open(path, encoding="utf-8", errors="replace") if os.path.isfile(path) else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def log_lines_through(run_dir, epoch):
    """(text of the log lines up to `epoch`, number of lines dropped): lines of later epochs (written before
    a kill, after the resume state) and lines cut short go. Each line carries `epoch` or, for the record of
    changed flags, `resumed_after_epoch`."""
    path = os.path.join(run_dir, LOG_FILE)
    if not os.path.isfile(path):
        return "", 0
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if line.endswith("\n") and record.get("epoch", record.get("resumed_after_epoch", 0)) <= epoch:
            kept.append(line)
    return "".join(kept), len(lines) - len(kept)


# ------------------------------------------------------------------ start-up checks
def remove_stale_temporaries(run_dir):
    """Remove the `.tmp_*.pth` files a kill -9 left mid-save; returns their names. Called before this run
    saves anything, so none of them is in progress."""
    removed = []
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        if name.startswith(TEMP_PREFIX) and name.endswith(".pth"):
            try:
                os.remove(os.path.join(run_dir, name))
                removed.append(name)
            except OSError:
                pass                                    # a read-only folder: check_writable reports it
    return removed


def check_writable(folders):
    """Write (and remove) a small probe checkpoint in each folder, so a read-only folder or a full disk stops
    the run before any epoch, with nothing trained, changed or lost."""
    for folder in folders:
        problem = folder_problem(folder, lambda probe: save_atomic({"write_check": torch.zeros(256)}, probe))
        if problem:
            raise unwritable(folder, problem)


def unwritable(folder, problem):
    """The UserError of a run or TensorBoard folder that cannot take the run's files, found at start-up."""
    return UserError(f"cannot write to {folder} ({problem}), so the run cannot save its checkpoints; it stopped "
                     "before any epoch, and nothing in the folder was changed or lost. Make the folder writable "
                     "or free space on its disk (or choose another --model_path / --tb_path), then run the same "
                     "command again.")


def run_lock(run_dir):
    """The advisory lock a training run holds on its folder from start-up to its last file (`LOCK_FILE`),
    so that a second trainer of the folder, a new run or --resume, stops before touching anything."""
    def busy(holder):
        return UserError(f"run folder {run_dir} is being trained by another process ({holder}). Two trainers "
                         "in one folder would interleave log.txt and overwrite each other's checkpoints, so this "
                         "one stopped before touching anything. Wait for that run to finish (or stop it), then "
                         "run this command again with --resume; to train both, give this one another --note or "
                         "--trial.")
    return exclusive_lock(os.path.join(run_dir, LOCK_FILE), busy,
                          unwritable=lambda problem: unwritable(run_dir, problem))


def move_results_aside(run_dir):
    """--overwrite: move what the sweeps computed from the old run's checkpoints (results files and their
    shards, protocol records, `.bak` copies, MINE histories, fine-tuned weights) into a new
    `<run_dir>/before_overwrite_<time>/`, so no row of the old run is taken for the new run's. Returns
    (that folder, the names moved); (None, []) when there was nothing to move."""
    names = sorted(name for name in (os.listdir(run_dir) if os.path.isdir(run_dir) else [])
                   if name.endswith(RESULTS_SUFFIXES) and name != FLAGS_FILE
                   or os.path.isdir(os.path.join(run_dir, name)) and (name.startswith(FINETUNED_PREFIX)
                                                                      or name.endswith(HISTORY_SUFFIX)))
    if not names:
        return None, []
    aside = os.path.join(run_dir, time.strftime(f"{ASIDE_PREFIX}%Y%m%d_%H%M%S"))
    while os.path.exists(aside):
        aside += "_"
    os.makedirs(aside)
    for name in names:
        os.replace(os.path.join(run_dir, name), os.path.join(aside, name))
    return aside, names


# ------------------------------------------------------------------ finding a run
def run_record(script, flags):
    """What `args.json` holds: the script that wrote the run (its `SCRIPT_KEY`) and the run's flags."""
    return {SCRIPT_KEY: script, **flags}


def similar_runs(model_root, script, current, changed):
    """[(run folder, changed(saved, current))] of the resumable runs under `model_root` that `script` wrote
    with the note of the flags `current`."""
    found = []
    for name in sorted(os.listdir(model_root)) if os.path.isdir(model_root) else []:
        folder = os.path.join(model_root, name)
        try:
            with open(os.path.join(folder, FLAGS_FILE), encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError):
            continue
        if (isinstance(saved, dict) and os.path.isfile(os.path.join(folder, RESUME_FILE))
                and saved.pop(SCRIPT_KEY, None) == script and saved.get("note") == current.get("note")):
            found.append((folder, changed(saved, current)))
    return found


def continue_command(script, command_line, run_dir, learning_rate=None):
    """The command that continues the run in `run_dir` that `script` wrote, with the flags of `command_line`
    (the command's argv as typed, script path first; None when not known) and `learning_rate`."""
    replaced = {"--resume", "--allow_arg_changes", "--overwrite", "--run_dir"} | (
        {"--learning_rate"} if learning_rate is not None else set())
    if command_line is not None:
        flags, skip = [], False
        for arg in command_line[1:]:
            name = arg.split("=", 1)[0]
            if skip:
                skip = False
            elif name in replaced:
                skip = "=" not in arg and name in ("--run_dir", "--learning_rate")
            else:
                flags.append(arg)
        command = ["python", command_line[0], *flags]
    else:
        command = ["python", script, "<the same flags>"]
    if learning_rate is not None:
        command += ["--learning_rate", repr(float(learning_rate))]
    return shlex.join(command + ["--resume", "--allow_arg_changes", "--run_dir", run_dir]).replace(
        "'<the same flags>'", "<the same flags>")
