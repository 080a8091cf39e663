"""Each setting in one place: every recorded flag has a role in helper/core/protocol.py, and every flag default
that a config also holds is the config's."""
import argparse
import dataclasses

import pytest

import discriminability
import distill_cat
import mine
import train_ctc
import train_vanilla
import transfer
from helper.cli import NoEffectFlag
from helper.core import protocol
from helper.core.protocol import FLAGS
from helper.sweep.features import FeatureConfig
from helper.sweep.mi import MineConfig
from helper.sweep.probe import ProbeConfig
from helper.sweep.runner import Selection, SweepConfig
from helper.sweep.transfer import TransferConfig
from helper.train.engine import RunConfig
from helper.train.schedule import ScheduleConfig

TRAINING = (train_vanilla, train_ctc, distill_cat)
SWEEPS = (transfer, discriminability, mine)


def recorded_flags(script):
    """The dests of `script`'s flags that can reach its recorded flags (not those that only set another)."""
    return {action.dest for action in script.get_args_parser()._actions
            if action.dest != "help" and action.default is not argparse.SUPPRESS
            or isinstance(action, NoEffectFlag) and action.record}


@pytest.mark.parametrize("script", TRAINING + SWEEPS, ids=lambda s: s.__name__)
def test_every_recorded_flag_has_a_role_for_its_kind_of_script(script):
    role = "train" if script in TRAINING else "sweep"
    missing = sorted(flag for flag in recorded_flags(script) if getattr(FLAGS.get(flag), role, None) is None)
    assert not missing, f"{script.__name__}: add these flags to helper/core/protocol.py: {missing}"


def test_every_role_in_the_table_belongs_to_a_script_that_has_the_flag():
    training = set.union(*(recorded_flags(s) for s in TRAINING))
    sweeps = set.union(*(recorded_flags(s) for s in SWEEPS))
    assert {name for name, flag in FLAGS.items() if flag.train} == training
    assert {name for name, flag in FLAGS.items() if flag.sweep} == sweeps


def test_the_sets_are_what_the_roles_say():
    assert {"learning_rate", "trial", "alpha", "teacher"} <= protocol.RUN_NAME_ARGS
    assert protocol.RESUME_FREE_ARGS >= {"device", "amp", "resume", "optimizer"}
    assert not protocol.RESUME_FREE_ARGS & {"seed", "epochs", "warmup_epochs", "stage_two_epoch"}
    assert "amp" not in protocol.SWEEP_FREE_ARGS and {"shard", "cache_dir"} <= protocol.SWEEP_FREE_ARGS
    assert protocol.FINETUNE_MEMBER_ARGS == {"target_dataset", "epoch", "lr", "wd", "batch", "seed"}
    assert protocol.LEGACY_ARGS == {"warmup_epochs": 0}


def field_default(config_class, name):
    field = {f.name: f for f in dataclasses.fields(config_class)}[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


# (script, config class, {flag: field}): each flag's parser default must be the field's default.
SHARED_DEFAULTS = [
    (mine, MineConfig, {"estimator": "estimator", "lr": "lr", "iter_num": "iters", "batch_size": "batch_size",
                        "hidden_size": "hidden_size", "ma_rate": "ma_rate", "holdout": "holdout", "tf32": "tf32",
                        "seed": "seed", "amp": "amp"}),
    (transfer, ProbeConfig, {"epoch": "epochs", "wd": "weight_decay", "batch": "batch_size", "seed": "seed"}),
    (transfer, TransferConfig, {"mode": "mode", "bn_mode": "bn_mode", "cv": "cv", "probe_lr": "probe_lr",
                                "save_finetuned": "save_finetuned"}),
    *[(script, Selection, {"start_epoch": "start_epoch", "skip": "skip", "end_epoch": "end_epoch"})
      for script in SWEEPS],
    *[(script, SweepConfig, {"force": "force", "wait": "wait"}) for script in SWEEPS],
    *[(script, FeatureConfig, {"data_folder": "data_folder", "loader": "loader", "cache_dir": "cache_dir",
                               "amp": "amp"}) for script in SWEEPS],
    (transfer, FeatureConfig, {"extract_batch": "extract_batch"}),
    (discriminability, FeatureConfig, {"extract_batch": "extract_batch"}),
    *[(script, ScheduleConfig, {"lr_decay_rate": "lr_decay_rate"}) for script in TRAINING],
    (train_ctc, ScheduleConfig, {"min_lr_scale": "min_lr_scale"}),
    *[(script, RunConfig, {"run_dir": "run_dir", "resume": "resume", "overwrite": "overwrite",
                           "allow_arg_changes": "allow_arg_changes"}) for script in TRAINING],
]


@pytest.mark.parametrize("script, config_class, flags", SHARED_DEFAULTS,
                         ids=lambda x: getattr(x, "__name__", None) or "")
def test_parser_defaults_are_the_config_defaults(script, config_class, flags):
    parser = script.get_args_parser()
    differ = {flag: (parser.get_default(flag), field_default(config_class, field)) for flag, field in flags.items()
              if parser.get_default(flag) != field_default(config_class, field)}
    assert not differ, f"{script.__name__} --flag: (parser default, {config_class.__name__} default): {differ}"


def test_defaults_resolved_from_other_flags_are_the_config_defaults():
    """--lr of the linear probe and MINE's --window have no parser default of their own: the config's is taken."""
    args = transfer.get_args_parser().parse_args(["--ckpt_path", "x"])
    assert transfer.probe_config(args) == ProbeConfig()
    args = mine.get_args_parser().parse_args(["--ckpt_path", "x", "--mode", "xt", "--dataset", "digits_a"])
    assert mine.fit_window(args) == MineConfig.window
    assert mine.mine_config(argparse.Namespace(**{**vars(args), "window": mine.fit_window(args),
                                                  "compile": False})) == MineConfig()
