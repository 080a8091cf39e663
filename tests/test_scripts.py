"""The shell pipelines: syntax, shellcheck (when installed), and what each one runs (dry runs)."""
import glob
import os
import shutil
import subprocess

import pytest

import train_vanilla
from helper.cli.train import schedule_config
from helper.train.schedule import make_lr_schedule
from tests.conftest import REPO_ROOT
from tests.helpers import dry_run

SCRIPTS = sorted(glob.glob(os.path.join(REPO_ROOT, "scripts", "*.sh"))) + [os.path.join(REPO_ROOT, ".ci", "run")]


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", script], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck():
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout


def test_quickstart_is_the_cpu_experiment_at_its_size(tmp_path):
    """The quick start runs scripts/cpu_experiment.sh (tested end to end in test_cpu_experiment.py) with 10
    epochs, a checkpoint every second epoch, 2 seeds of vanilla and CTC trained channels_last (the CPU variant
    bench.py cpu picks), every sweep including the held-out MINE fits, and draws the seed bands."""
    calls = dry_run("quickstart.sh", tmp_path, WORKDIR=str(tmp_path))
    runs = [c.split(" :: ") for c in calls if "scripts.run_steps" in c]
    trainings = sorted(steps[0].split("scripts.run_steps ")[1] for steps in runs)
    assert len(trainings) == 4 and all("--epochs 10 " in t and "--save_freq 2 " in t for t in trainings)
    assert all("--channels_last" in t for t in trainings)
    assert all(sum(step.startswith("mine.py") and "--holdout 0.5" in step for step in steps) == 2 for steps in runs)
    assert [t.split()[0] for t in trainings] == ["train_ctc.py"] * 2 + ["train_vanilla.py"] * 2
    assert all("--stage_two_epoch 6 " in t and "--note ctc_s" in t for t in trainings[:2])
    assert sorted(t.split("--seed ")[1].split()[0] for t in trainings) == ["0", "0", "1", "1"]
    assert all(any(step.startswith("transfer.py") and "--cv 5" in step for step in steps) for steps in runs)
    (plot,) = [c for c in calls if "plot.py" in c]
    assert "--group_seeds" in plot and "--out figures" in plot and plot.count("save/model/") == 4
    (tmp_path / "three").mkdir()
    three = dry_run("quickstart.sh", tmp_path / "three", WORKDIR=str(tmp_path / "three"), SEEDS="3")
    assert sum("scripts.run_steps" in c for c in three) == 6


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
    schedule = schedule_config(training, train_vanilla.WARMUP_EPOCHS)
    lr_at = make_lr_schedule(schedule)
    assert (schedule.warmup_epochs, training.min_lr_scale, training.lr_decay_epochs) == (5, 0.1, [])
    assert lr_at(1) == pytest.approx(0.01) and lr_at(180) == pytest.approx(0.0062, abs=1e-4)
    xt, ty = calls[3], calls[4]
    assert "--mode xt" in xt and "--lr 8e-5" in xt and "--iter_num 1e+4" in xt
    assert "--mode ty" in ty and "--lr 1e-5" in ty and "--iter_num 2e+4" in ty
