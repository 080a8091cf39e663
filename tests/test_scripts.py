"""The shell pipelines: syntax, shellcheck (when installed), and the quick start end to end at a tiny size."""
import glob
import os
import shutil
import subprocess
import sys

import pytest

import train_vanilla
from helper.schedule import make_lr_schedule, resolve_warmup
from tests.conftest import REPO_ROOT
from tests.helpers import read_rows

SCRIPTS = sorted(glob.glob(os.path.join(REPO_ROOT, "scripts", "*.sh"))) + [os.path.join(REPO_ROOT, ".ci", "run")]


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", script], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck():
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout


def test_quickstart_pipeline_end_to_end(tmp_path):
    """Every step of scripts/quickstart.sh (vanilla, CTC, transfer, discriminability, MINE, plots), tiny."""
    env = dict(os.environ, NO_SETUP="1", WORKDIR=str(tmp_path), PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
               EPOCHS="2", STAGE_TWO="1", NCE_K="32", PROBE_EPOCHS="3", MINE_ITERS="10", MINE_BATCH="64",
               MINE_HIDDEN="16", MINE_SKIP="2", OMP_NUM_THREADS="2")
    script = os.path.join(REPO_ROOT, "scripts", "quickstart.sh")
    result = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = {"vanilla": tmp_path / "save/model/resnet8_digits_a_lr_0.05_trial_0_vanilla",
            "ctc": tmp_path / "save/model/resnet8_digits_a_a0.5_b1.0_ctc"}
    for run in runs.values():
        assert [r["epoch"] for r in read_rows(run / "transfer_digits_b_linear.csv")] == ["1", "2"]
        assert [r["epoch"] for r in read_rows(run / "discriminability_digits_a.csv")] == ["1", "2"]
        for name in ("mi_xt_digits_a", "mi_ty_digits_a", "mi_xt_digits_b", "mi_ty_digits_b"):
            assert [r["epoch"] for r in read_rows(run / f"{name}.csv")] == ["2"], name
    for figure in ("transfer", "discriminability", "information", "information_plane"):
        assert (tmp_path / "figures" / f"{figure}.png").stat().st_size > 1000
    # idempotent: a second run trains nothing and recomputes nothing
    again = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished" in again.stdout and "0 to go" in again.stdout


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


def test_alleviate_runs_both_paper_settings_then_plots_them_together(tmp_path):
    calls = dry_run("alleviate_overcompression.sh", tmp_path, MODEL="resnet8")
    training = [c for c in calls if c.startswith("train_ctc.py")]
    assert len(training) == 2
    assert "-a 0.5" in training[0] and "--instance_t 0.10" in training[0] and "--nce_t 0.10" in training[0]
    assert "-a 0.1" in training[1] and "--instance_t 0.50" in training[1] and "--nce_t 0.40" in training[1]
    assert all("--note ctc " in c and "--epochs 300" in c and "--stage_two_epoch 200" in c for c in training)
    assert sum(c.startswith("mine.py") for c in calls) == 8 and sum(c.startswith("transfer.py") for c in calls) == 2
    (plot_call,) = [c for c in calls if c.startswith("plot.py")]
    assert "save/model/resnet8_cifar100_a0.5_b1.0_ctc save/model/resnet8_cifar100_a0.1_b1.0_ctc" in plot_call
    (tmp_path / "one").mkdir()
    one = dry_run("alleviate_overcompression.sh", tmp_path / "one", MODEL="resnet8", SETTING="discriminability")
    assert [c for c in one if c.startswith("train_ctc.py")] == training[1:]


def test_observe_runs_the_seed_commands_in_order(tmp_path):
    calls = dry_run("observe_overcompression.sh", tmp_path)
    scripts = [c.split()[0] for c in calls]
    assert scripts == ["train_vanilla.py", "transfer.py", "discriminability.py"] + ["mine.py"] * 4 + ["plot.py"]
    assert "--epochs 200" in calls[0] and "--save_freq 2" in calls[0]
    training = train_vanilla.get_args_parser().parse_args(calls[0].split()[1:])   # the original's schedule
    lr_at = make_lr_schedule(resolve_warmup(training, train_vanilla.WARMUP_EPOCHS))
    assert (training.warmup_epochs, training.min_lr_scale, training.lr_decay_epochs) == (5, 0.1, [])
    assert lr_at(1) == pytest.approx(0.01) and lr_at(180) == pytest.approx(0.0062, abs=1e-4)
    xt, ty = calls[3], calls[4]
    assert "--mode xt" in xt and "--lr 8e-5" in xt and "--iter_num 1e+4" in xt
    assert "--mode ty" in ty and "--lr 1e-5" in ty and "--iter_num 2e+4" in ty
