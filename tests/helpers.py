"""Small helpers shared by the script tests."""
import csv
import os
import shutil
import sysconfig

import pytest

from helper.train.engine import TrainingRun
from helper.core.errors import run_cli

# torch.compile's CPU backend (inductor) builds C++ against Python's headers: without both, nothing to test.
needs_compiler = pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++"))
    or not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")),
    reason="torch.compile on CPU needs a C++ compiler and Python's headers")


def cli(main, parser, argv, capsys):
    """(exit status, stdout, stderr) of one script call, as the shell would see them."""
    try:
        code = run_cli(main, parser, argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def copy_run(run, dest):
    """A fresh copy of a run's checkpoints, so each test writes its own result files."""
    os.makedirs(dest)
    for name in os.listdir(run):
        if name.startswith("ckpt_epoch_"):
            shutil.copy(os.path.join(run, name), dest)
    return str(dest)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def stop_after(monkeypatch, last_epoch):
    """Make TrainingRun raise KeyboardInterrupt once epoch `last_epoch` is fully written: an interrupted run.

    Returns the original `end_epoch`, to put back before resuming.
    """
    original = TrainingRun.end_epoch

    def end_epoch(self, epoch, *args, **kw):
        original(self, epoch, *args, **kw)
        if epoch == last_epoch:
            raise KeyboardInterrupt
    monkeypatch.setattr(TrainingRun, "end_epoch", end_epoch)
    return original
