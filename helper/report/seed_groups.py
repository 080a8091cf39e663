"""Runs that repeat one configuration with other seeds, and their mean +- std curves (intervals: helper.core.stats).

    groups = group_runs(run_dirs)                    # [[run, run, run], [run, run], ...]
    epochs, mean, std = seed_band([curve, curve])    # curve: {epoch: value} of one run

Two runs belong together when their recorded flags (the run folder's FLAGS_FILE)
are equal once the seed, the trial id and the note are set aside, together with the
flags that never change what a run computes (device, workers, paths, resume). A run
folder without that file (the original code's) is matched by its name instead, with
its `_trial_<N>` part set aside.
"""
import os
import re

from helper.core.protocol import RESUME_FREE_ARGS
from helper.core.stats import mean_std
from helper.sweep.results import read_args
from helper.train.run_folder import FLAGS_FILE, SCRIPT_KEY

SEED_ARGS = {"seed", "trial", "note"}   # the note names a repetition as often as a method; the flags name methods
# Left out of the comparison with the seed: the script (its flags name the method, and runs recorded before
# args.json named its script group with runs recorded since), and what only says how a run executed.
IGNORED = SEED_ARGS | RESUME_FREE_ARGS | {SCRIPT_KEY}
TRIAL_IN_NAME = re.compile(r"_trial_[^_]+")


def run_args(run_dir):
    """The resolved flags a training run recorded (its FLAGS_FILE), or None for a folder without one."""
    return read_args(os.path.join(run_dir, FLAGS_FILE))


def configuration(run_dir):
    """What a run computes, seed aside: a hashable key equal for runs that differ only in seed/trial/note."""
    flags = run_args(run_dir)
    if flags is None:
        return "name", TRIAL_IN_NAME.sub("_trial_*", os.path.basename(os.path.normpath(run_dir)))
    return "args", tuple(sorted((k, repr(v)) for k, v in flags.items() if k not in IGNORED))


def group_runs(run_dirs):
    """Run folders grouped by configuration, groups and members in the order given."""
    groups = {}
    for run_dir in run_dirs:
        groups.setdefault(configuration(run_dir), []).append(run_dir)
    return list(groups.values())


def group_label(names):
    """One legend label for runs named `names`: the name with its trial id starred, else their common prefix."""
    starred = {TRIAL_IN_NAME.sub("_trial_*", n) for n in names}
    if len(names) == 1:
        return names[0]
    return starred.pop() if len(starred) == 1 else os.path.commonprefix(names).rstrip("_-") + "*"


def seed_band(curves):
    """(epochs, means, stds) over the epochs every curve ({epoch: value}) has; other epochs are left out."""
    common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    stats = [mean_std([c[e] for c in curves]) for e in common]
    return common, [m for m, _ in stats], [s for _, s in stats]
