"""Every flag of the original train_vanilla.py, train_ctc.py, transfer.py and mine.py, with every choice value
(tests/data/original_flags.tsv, a copy of the reference list), parses in the script of the same name; values
the original ignored are recorded and change nothing."""
import ast
import csv
import json
import os

import pytest

import mine
import train_ctc
import train_vanilla
import transfer
from helper.cli import ORIGINAL_AUGMENTATION
from helper.cli.train import schedule_config
from tests.conftest import REPO_ROOT

SCRIPTS = {"train_vanilla.py": train_vanilla, "train_ctc.py": train_ctc, "transfer.py": transfer, "mine.py": mine}
# Flags the sweeps require here (the original's defaulted to '' and then failed on them).
REQUIRED = {"transfer.py": ["--ckpt_path", "run"], "mine.py": ["--ckpt_path", "run", "--mode", "xt", "--dataset",
                                                               "cifar100"]}
# A value for a flag whose original default, '', names nothing.
INSTEAD_OF_EMPTY = {"--model": "wrn_28_4", "--ckpt_path": "run"}


def original_flags():
    """(script, spellings, values) of every row of the reference list; values: the choices, else the default
    (store_true flags: no value)."""
    with open(os.path.join(REPO_ROOT, "tests", "data", "original_flags.tsv"), newline="") as handle:
        rows = csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t")
        for row in rows:
            spellings = row["flags"].split()
            if row["action"] == "'store_true'":
                yield row["script"], spellings, [None]
            elif row["choices"]:
                yield row["script"], spellings, ast.literal_eval(" ".join(row["choices"].split()))
            else:
                default = row["default"].strip("'")
                yield row["script"], spellings, [default or INSTEAD_OF_EMPTY.get(spellings[-1], "x")]


ROWS = list(original_flags())


def test_the_reference_list_is_read_whole():
    assert len(ROWS) == 66 and {script for script, _, _ in ROWS} == set(SCRIPTS)
    assert sum(len(values) for _, _, values in ROWS) > 100


@pytest.mark.parametrize("script, spellings, values", ROWS, ids=[f"{s}:{f[-1]}" for s, f, _ in ROWS])
def test_every_original_flag_and_choice_parses(script, spellings, values, capsys):
    parser = SCRIPTS[script].get_args_parser()
    for spelling in spellings:
        for value in values:
            argv = REQUIRED.get(script, []) + [spelling] + ([] if value is None else [value])
            if value == "imagenet":         # in the original's choices, never implemented there
                with pytest.raises(SystemExit) as refused:
                    parser.parse_args(argv)
                err = " ".join(capsys.readouterr().err.split())
                assert refused.value.code == 2 and "never loaded it" in err and "tinyimagenet" in err
                continue
            args = parser.parse_args(argv)
            assert args is not None, argv


def parse_vanilla(argv, capsys):
    args = train_vanilla.get_args_parser().parse_args(argv)
    return args, capsys.readouterr().err


def test_lr_decay_epochs_of_train_vanilla_is_recorded_and_changes_nothing(capsys):
    plain, _ = parse_vanilla([], capsys)
    original, err = parse_vanilla(["--lr_decay_epochs", "100,150,200", "--optimizer", "adam"], capsys)
    assert original.original_lr_decay_epochs == "100,150,200" and original.optimizer == "adam"
    assert original.lr_decay_epochs == [] and err.count("has no effect here") == 2
    assert "--lr_decay_epochs 100,150,200 has no effect here" in err and "--step_decay_epochs" in err
    plain_schedule = schedule_config(plain, train_vanilla.WARMUP_EPOCHS)
    assert schedule_config(original, train_vanilla.WARMUP_EPOCHS) == plain_schedule
    assert plain_schedule.warmup_epochs == 5 and plain_schedule.lr_decay_epochs == ()
    stepped, _ = parse_vanilla(["--step_decay_epochs", "100,150"], capsys)
    assert schedule_config(stepped, 5).lr_decay_epochs == (100, 150)


def test_train_ctc_keeps_lr_decay_epochs_as_step_decay(capsys):
    for flag in ("--lr_decay_epochs", "--step_decay_epochs"):
        args = train_ctc.get_args_parser().parse_args([flag, "150,180,210", "--net_size", "0.5"])
        assert args.lr_decay_epochs == [150, 180, 210] and args.net_size == 0.5
    assert "--net_size 0.5 has no effect here" in capsys.readouterr().err


@pytest.mark.parametrize("script", [train_vanilla, train_ctc])
@pytest.mark.parametrize("value, augment", sorted(ORIGINAL_AUGMENTATION.items()))
def test_original_augmentation_values(script, value, augment):
    assert script.get_args_parser().parse_args(["--augmentation", value]).augment == augment
    assert (value, augment) in {("none", "standard"), ("vanilla", "standard"), ("auto", "auto"), ("mine", "none")}


def test_ignored_flags_are_recorded_in_args_json_and_resume_without_them(in_tmp, capsys):
    base = ["--dataset", "digits_a", "--model", "resnet8", "--epochs", "1", "--save_freq", "1", "--num_workers", "0",
            "--no_progress", "--note", "orig"]
    run = train_vanilla.main(train_vanilla.get_args_parser().parse_args(
        base + ["--lr_decay_epochs", "100,150,200", "--optimizer", "adam", "--net_size", "1.0"]))
    with open(os.path.join(run.run_dir, "args.json")) as handle:
        flags = json.load(handle)
    assert (flags["original_lr_decay_epochs"], flags["optimizer"], flags["net_size"]) == ("100,150,200", "adam", 1.0)
    assert flags["lr_decay_epochs"] == [] and flags["warmup_epochs"] == 5 and flags["script"] == "train_vanilla.py"
    resumed = train_vanilla.main(train_vanilla.get_args_parser().parse_args(base + ["--epochs", "1", "--resume"]))
    assert resumed.run_dir == run.run_dir
