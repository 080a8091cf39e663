"""Small helpers shared by the script tests."""
import csv
import os
import shutil
import subprocess
import sysconfig

import pytest
import torch

from helper.train.engine import TrainingRun
from helper.core.errors import run_cli
from helper.sweep.mi import EVAL_EVERY, MineConfig, estimate_mi
from tests.conftest import REPO_ROOT

# torch.compile's CPU backend (inductor) builds C++ against Python's headers: without both, nothing to test.
needs_compiler = pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++"))
    or not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")),
    reason="torch.compile on CPU needs a C++ compiler and Python's headers")


def mine_fit(a, b, estimator="mine", device=torch.device("cpu"), eval_every=EVAL_EVERY, **settings):
    """`estimate_mi` with the `MineConfig` of `settings`, unseeded and without a progress bar unless they say."""
    config = MineConfig(estimator=estimator, **{"seed": None, "progress": False, **settings})
    return estimate_mi(a, b, config, device=device, eval_every=eval_every)


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


def dry_run(script, tmp_path, **env_vars):
    """Run a paper pipeline with a `python` that only records its arguments: the commands, in order."""
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    log = tmp_path / "calls.txt"
    (shim / "python").write_text(f'#!/usr/bin/env bash\necho "$*" >> "{log}"\n')
    (shim / "python").chmod(0o755)
    env = dict(os.environ, NO_SETUP="1", PATH=f"{shim}:{os.environ['PATH']}", **env_vars)
    result = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", script)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()
