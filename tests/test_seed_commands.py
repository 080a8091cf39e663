"""The original README's commands, exactly as written, parse to the paper's settings; and the real
CIFAR-100 -> CINIC-10 path runs on tiny data sets written in the real on-disk formats."""
import argparse
import os
import shlex

import pytest
import torch

import bench
import discriminability

import mine
import train_ctc
import train_vanilla
import transfer
from helper.train.loops import train_one_epoch
from helper.cli.train import warmup_epochs
from tests.fakedata import trust_fake_cifar, write_fake_cifar, write_fake_cinic
from tests.helpers import cli, read_rows

RUN = "resnext32_16x4d_cifar100_lr_0.05_trial_0_vanilla"
SEED_COMMANDS = {
    "vanilla": (train_vanilla, "--epochs 200 --dataset cifar100 --model resnext32_16x4d --weight_decay 0.0005 "
                "--momentum 0.9 --learning_rate 0.05 --batch_size 64 --save_freq 2 --note vanilla"),
    "ctc_transfer": (train_ctc, "--epochs 300 --dataset cifar100 --model resnext32_16x4d --momentum 0.9 "
                     "--learning_rate 0.05 --batch_size 64 --weight_decay 0.0005 --weight_decay_coef 2.0 "
                     "--stage_two_epoch 200 -a 0.5 -b 1.0 --instance_t 0.10 --instance_m 0.9 --nce_t 0.10 "
                     "--nce_m 0.9 --update_memory_bank --save_freq 2 --note ctc"),
    "ctc_discriminability": (train_ctc, "--epochs 300 --dataset cifar100 --model resnext32_16x4d --momentum 0.9 "
                             "--learning_rate 0.05 --batch_size 64 --weight_decay 0.0005 --weight_decay_coef 2.0 "
                             "--stage_two_epoch 200 -a 0.1 -b 1.0 --instance_t 0.50 --instance_m 0.9 --nce_t 0.40 "
                             "--nce_m 0.9 --update_memory_bank --save_freq 2 --note ctc"),
    "transfer": (transfer, f"--source_dataset cifar100 --target_dataset cinic10 --model resnext32_16x4d "
                 f"--ckpt_path {RUN} --start_epoch 2 --skip 2"),
    "mine_xt_source": (mine, f"--mode xt --model resnext32_16x4d --dataset cifar100 --ckpt_path {RUN} --lr 8e-5 "
                       "--iter_num 1e+4 --start_epoch 2 --skip 2"),
    "mine_ty_source": (mine, f"--mode ty --model resnext32_16x4d --dataset cifar100 --ckpt_path {RUN} --lr 1e-5 "
                       "--iter_num 2e+4 --start_epoch 2 --skip 2"),
    "mine_xt_target": (mine, f"--mode xt --model resnext32_16x4d --dataset cinic10 --ckpt_path {RUN} --lr 8e-5 "
                       "--iter_num 1e+4 --start_epoch 2 --skip 2"),
    "mine_ty_target": (mine, f"--mode ty --model resnext32_16x4d --dataset cinic10 --ckpt_path {RUN} --lr 1e-5 "
                       "--iter_num 2e+4 --start_epoch 2 --skip 2"),
}


@pytest.mark.parametrize("name", SEED_COMMANDS)
def test_seed_command_parses_as_written(name):
    script, command = SEED_COMMANDS[name]
    args = script.get_args_parser().parse_args(shlex.split(command))
    if name == "vanilla":
        assert (args.epochs, args.batch_size, args.learning_rate, args.save_freq) == (200, 64, 0.05, 2)
        assert args.lr_decay_epochs == [] and train_vanilla.run_name(args) == RUN
        assert (warmup_epochs(args, train_vanilla.WARMUP_EPOCHS), args.min_lr_scale) == (5, 0.1)   # the original's
    elif name.startswith("ctc"):
        assert (args.epochs, args.stage_two_epoch, args.weight_decay_coef, args.nce_k) == (300, 200, 2.0, 16384)
        assert args.update_memory_bank and train_ctc.run_name(args) == f"resnext32_16x4d_cifar100_a{args.alpha}_b1.0_ctc"
        assert (warmup_epochs(args, 0), args.min_lr_scale) == (0, 0.0)
    elif name == "transfer":
        assert (args.epoch, args.wd, args.batch, args.bn_mode, args.mode) == (30, 5e-4, 512, "eval", "linear")
        assert args.lr is None and transfer.DEFAULT_LR["linear"] == 0.4  # resolved per --mode in main
    else:
        assert args.iter_num in (10000, 20000) and isinstance(args.iter_num, int) and args.batch_size == 5000


def test_cifar100_training_and_cinic10_transfer_in_the_real_formats(in_tmp, capsys, monkeypatch):
    """train_vanilla.py on CIFAR-100 pickles, then transfer.py to CINIC-10 PNG folders (tiny, resnet8)."""
    data = str(in_tmp / "data")
    write_fake_cifar(data, num_classes=100, n_train=200, n_test=100)
    trust_fake_cifar(monkeypatch, data)
    write_fake_cinic(data, n_per_class=4)
    train = ["--dataset", "cifar100", "--model", "resnet8", "--epochs", "2", "--save_freq", "2", "--data_folder",
             data, "--num_workers", "0", "--no_progress", "--note", "vanilla"]
    train_vanilla.main(train_vanilla.get_args_parser().parse_args(train))
    run = "resnet8_cifar100_lr_0.05_trial_0_vanilla"
    assert sorted(f for f in os.listdir(f"save/model/{run}") if f.startswith("ckpt_")) == [
        "ckpt_epoch_0.pth", "ckpt_epoch_2.pth"]
    sweep = ["--source_dataset", "cifar100", "--target_dataset", "cinic10", "--model", "resnet8", "--ckpt_path", run,
             "--start_epoch", "2", "--skip", "2", "--epoch", "2", "--data_folder", data, "--num_workers", "0",
             "--no_progress"]
    code, out, err = cli(transfer.main, transfer.get_args_parser(), sweep, capsys)
    assert code == 0, err
    (row,) = read_rows(f"save/model/{run}/transfer_cinic10_linear.csv")
    assert row["epoch"] == "2" and 0 <= float(row["final_acc"]) <= 100
    assert "Source Epoch: 2, Target Acc:" in out


# Flags of the original scripts that the seed README does not use, with their original meaning.
@pytest.mark.parametrize("script", [train_vanilla, train_ctc])
def test_original_training_flags(script):
    parse = script.get_args_parser().parse_args
    args = parse(["--notes", "vanilla", "-t", "3", "--augmentation", "auto", "--print_freq", "100"])
    assert (args.note, args.trial, args.augment, args.print_freq) == ("vanilla", "3", "auto", 100)
    assert parse(["--augmentation", "none"]).augment == "standard"   # the original's none = crop + flip
    assert parse([]).augment == "standard" and parse(["--augment", "none"]).augment == "none"


def test_no_effect_flags_are_noted_and_recorded(capsys):
    """The original parsed --optimizer and --net_size and ignored them: any value is noted and kept for args.json
    (tests/test_original_flags.py runs every original flag)."""
    args = train_ctc.get_args_parser().parse_args(["--optimizer", "adam", "--net_size", "0.5"])
    err = capsys.readouterr().err
    assert "--optimizer adam has no effect here" in err and "--net_size 0.5 has no effect here" in err
    assert (args.optimizer, args.net_size) == ("adam", 0.5)
    plain = train_ctc.get_args_parser().parse_args([])
    assert not hasattr(plain, "optimizer") and not hasattr(plain, "net_size")     # absent unless given


def test_transfer_accepts_the_training_scripts_spelling_and_the_original_name(capsys):
    args = transfer.get_args_parser().parse_args(["--ckpt_path", RUN, "--mode", "finetune", "--epochs", "100",
                                                  "--batch_size", "18", "--lr", "0.01", "--wd", "1e-4",
                                                  "--name", "cinic"])
    assert (args.epoch, args.batch, args.lr, args.wd) == (100, 18, 0.01, 1e-4)   # seed 002's fine-tuning
    assert "--name cinic has no effect here" in capsys.readouterr().err and not hasattr(args, "name")
    old = transfer.get_args_parser().parse_args(["--ckpt_path", RUN, "--epoch", "5", "--batch", "64"])
    assert (old.epoch, old.batch) == (5, 64)


@pytest.mark.parametrize("script", [train_vanilla, train_ctc, transfer, discriminability, bench])
def test_help_shows_every_default(script):
    parser = script.get_args_parser()
    text = "".join(parser.format_help().split())       # wrapping may break lines at any space or hyphen
    for action in parser._actions:
        if action.help in (None, argparse.SUPPRESS) or action.default is argparse.SUPPRESS:
            continue
        shown = parser._get_formatter()._expand_help(action)
        assert "default" in shown.lower() and "".join(shown.split()) in text, action.option_strings


def test_print_freq_prints_a_line_every_n_steps(capsys):
    model = torch.nn.Linear(4, 3)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(5)]

    def compute_loss(batch):
        logits = model(batch[0])
        return torch.nn.functional.cross_entropy(logits, batch[1]), logits, batch[1], {}
    train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), compute_loss, "cpu", epoch=7,
                    progress=False, print_freq=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch: [7]")]
    assert [line.split()[1] for line in lines] == ["[7][2/5]", "[7][4/5]"]
