"""The training scripts' command line (train_vanilla.py, train_ctc.py, distill_cat.py): the flags they share,
as a `parents=` parser, their checks, and the settings the flags resolve to, built once in each script's main.

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter,
                                     parents=[training_parser(epochs=300)])
"""
import argparse
import os
import sys
from dataclasses import fields

from dataset import dataset_names
from helper.cli import add_original_training_flags, dataset_name
from helper.cli.flags import (FRACTION, MOMENTUM, NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT,
                              SEED, int_list, number_in)
from helper.cli.speed import add_speed_args, resolve_speed_args, speed_config
from helper.core.checkpoint import DEFAULT_MODEL_ROOT
from helper.core.errors import UserError
from helper.train.ctc import CTCConfig
from helper.train.engine import LoopConfig, RunConfig
from helper.train.run_folder import DEFAULT_TB_PATH
from helper.train.schedule import ScheduleConfig
from helper.train.setup import LoaderConfig, SGDConfig, default_workers
from models import available_models


STEP_DECAY_FLAGS = ("--step_decay_epochs", "--lr_decay_epochs")
INTERRUPTED_TRAINING = "interrupted; the same command with --resume continues where this stopped"


def training_parser(epochs=200, warmup_epochs=0, min_lr_scale=ScheduleConfig.min_lr_scale,
                    step_decay_flags=STEP_DECAY_FLAGS):
    """A `parents=` parser with the flags every training script shares; defaults are the paper's.

    `epochs`, `warmup_epochs`, `min_lr_scale`: the script's defaults, its cosine schedule as in its
    original (train_vanilla.py: 5 and 0.1; train_ctc.py: 0 and 0); `settled_flags` and `schedule_config` must
    get the same `warmup_epochs` to resolve an absent --warmup_epochs. `step_decay_flags`: the spellings of
    the step-decay epochs (train_vanilla.py leaves out --lr_decay_epochs, which its original ignored).
    """
    parser = argparse.ArgumentParser(add_help=False)
    g = parser.add_argument_group("data and model")
    g.add_argument("--dataset", default="cifar100", type=dataset_name, choices=dataset_names(),
                   help="source data set")
    g.add_argument("--model", default="resnext32_16x4d", choices=available_models(), metavar="MODEL",
                   help="architecture; one of: " + ", ".join(available_models()))
    g.add_argument("--data_folder", default="./data", help="root of the data sets (default ./data)")
    g.add_argument("--augment", default="standard", choices=["standard", "none", "auto"],
                   help="training augmentation: standard = crop 32 pad 4 + flip (paper), auto = the original's "
                        "crop + flip + AutoAugment (CIFAR-10 policy) + a black 16x16 Cutout hole")
    g.add_argument("--num_workers", type=NON_NEGATIVE_INT, default=default_workers(), help="DataLoader worker processes")
    g.add_argument("--train_per_class", type=POSITIVE_INT, default=None,
                   help="train on the first N images of each class of the training split, the same for every "
                        "seed (default: all; the evaluation split stays whole)")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=POSITIVE_INT, default=epochs, help=f"training epochs (paper: {epochs})")
    g.add_argument("--batch_size", type=POSITIVE_INT, default=64,
                   help="batch size per process; under torchrun the global batch is this x processes (paper: 64)")
    g.add_argument("--learning_rate", type=POSITIVE_FLOAT, default=0.05, help="initial SGD learning rate (paper: 0.05)")
    g.add_argument(*step_decay_flags, dest="lr_decay_epochs", type=int_list, default=[],
                   help="comma-separated epochs for step decay over the whole run, e.g. 150,180,210 (CRD/ITRD); "
                        "empty = cosine annealing (paper). In train_ctc.py it replaces both cosine phases, "
                        "including stage 2's restart")
    g.add_argument("--lr_decay_rate", type=number_in(float, 0, 1, low_open=True), default=ScheduleConfig.lr_decay_rate,
                   help="step-decay factor")
    g.add_argument("--min_lr_scale", type=FRACTION, default=min_lr_scale,
                   help="cosine schedule floor, as a fraction of each cosine phase's initial learning rate "
                        f"(original: {min_lr_scale})")
    g.add_argument("--warmup_epochs", type=NON_NEGATIVE_INT, default=None,
                   help="linear warm-up lr x epoch / W over the first W epochs (default: "
                        f"{warmup_epochs} with the cosine schedule, as the original; 0 with step decay)")
    g.add_argument("--weight_decay", type=NON_NEGATIVE_FLOAT, default=5e-4, help="SGD weight decay (paper: 5e-4)")
    g.add_argument("--momentum", type=MOMENTUM, default=0.9, help="SGD momentum, in [0, 1) (paper: 0.9)")
    g.add_argument("--seed", type=SEED, default=0, help="seed for initialisation, data order and augmentation")

    g = parser.add_argument_group("run folder and logging")
    g.add_argument("--save_freq", type=POSITIVE_INT, default=2, help="write ckpt_epoch_<E>.pth every this many epochs")
    g.add_argument("--note", "--notes", default="", help="suffix of the run folder name, e.g. vanilla or ctc")
    g.add_argument("-t", "--trial", default="0", help="trial id, part of the run folder name")
    g.add_argument("--model_path", default=DEFAULT_MODEL_ROOT, help="where run folders are created")
    g.add_argument("--run_dir", default=RunConfig.run_dir,
                   help="the run folder itself, instead of <model_path>/<name from the flags>; e.g. to continue a "
                        "run with a new learning rate: --resume --allow_arg_changes --run_dir <its folder>")
    g.add_argument("--tb_path", default=DEFAULT_TB_PATH, help="where TensorBoard logs are written")
    g.add_argument("--resume", action="store_true", help="continue the run from its newest state (resume.pth)")
    g.add_argument("--overwrite", action="store_true",
                   help="start again in an existing run folder (its checkpoints, logs and resume state are removed)")
    g.add_argument("--allow_arg_changes", action="store_true",
                   help="with --resume: continue even though schedule/model/data flags differ from the run's "
                        "(refused by default; the change is recorded in log.txt)")
    g.add_argument("--device", default=None,
                   help="cuda, cuda:1, cpu; default: CUDA when present (under torchrun: cuda:LOCAL_RANK)")
    g.add_argument("--sync_bn", action="store_true",
                   help="under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)")
    g.add_argument("--no_progress", action="store_true", help="no tqdm progress bars")
    g.add_argument("--print_freq", type=int, default=0,
                   help="also print one line (loss, running loss and accuracy) every this many training steps, "
                        "as the original (500 in train_vanilla.py, 1000 in train_ctc.py); 0 = off, the progress bar "
                        "shows them")
    add_original_training_flags(parser.add_argument_group("original flags, accepted for the original command lines"))
    return add_speed_args(parser)


def check_ctc_args(args):
    """Reject bad stage settings of train_ctc.py before any data is read (its weights are checked where parsed)."""
    s, epochs = args.stage_two_epoch, args.epochs
    if not 0 <= s < epochs:
        raise UserError(f"--stage_two_epoch must lie in [0, --epochs) so that stage 2 has at least one epoch "
                        f"(0 only with --teacher); got --stage_two_epoch {s} with --epochs {epochs}.")
    if s == 0 and not args.teacher:
        raise UserError("--stage_two_epoch 0 skips stage 1, so there is no earlier representation to copy; "
                        "pass --teacher PATH for plain distillation, or a stage-two epoch of at least 1 "
                        "(paper: 200 of 300).")
    if args.lr_decay_epochs and s > 0:
        print(f"note: --lr_decay_epochs gives one step schedule over all {epochs} epochs; stage 2 does not restart "
              "at --stage_two_decay_rate x the learning rate as in the paper's two-phase cosine.", file=sys.stderr)


# ------------------------------------------------------------------ settings: pure functions of the flags
def settled_flags(args, device, train_set, cosine_warmup):
    """The flags a run is built from and records (args.json, every checkpoint): as parsed, with --warmup_epochs
    (`warmup_epochs`) and the speed flags (amp, channels_last, compile, --loader auto) settled for `device` and
    `train_set`. `args` itself is left as parsed."""
    settled = resolve_speed_args(args, device, train_set)
    settled.warmup_epochs = warmup_epochs(args, cosine_warmup)
    return settled


def warmup_epochs(args, cosine_warmup):
    """--warmup_epochs, or when absent `cosine_warmup` (the script's default) under cosine annealing and 0 under
    step decay, whose CRD / ITRD protocol has no warm-up."""
    if args.warmup_epochs is not None:
        return args.warmup_epochs
    return 0 if args.lr_decay_epochs else cosine_warmup


def run_config(args, script):
    """Where the run of `script` goes and how it starts; the command line as typed names its continuation."""
    return RunConfig(arch=args.model, dataset=args.dataset, epochs=args.epochs, learning_rate=args.learning_rate,
                     seed=args.seed, note=args.note, save_freq=args.save_freq, model_path=args.model_path,
                     tb_path=args.tb_path, script=script, command_line=typed_command(script), run_dir=args.run_dir,
                     resume=args.resume, overwrite=args.overwrite, allow_arg_changes=args.allow_arg_changes)


def typed_command(script):
    """This process's argv when it runs `script` from the command line; None otherwise (a test calling main)."""
    return tuple(sys.argv) if os.path.basename(sys.argv[0]) == script else None


def schedule_config(args, cosine_warmup):
    """The learning-rate schedule of the flags; `cosine_warmup` as in `warmup_epochs`."""
    return ScheduleConfig(learning_rate=args.learning_rate, epochs=args.epochs,
                          warmup_epochs=warmup_epochs(args, cosine_warmup), lr_decay_epochs=tuple(args.lr_decay_epochs),
                          lr_decay_rate=args.lr_decay_rate, min_lr_scale=args.min_lr_scale)


def sgd_config(args):
    return _config_of(SGDConfig, args)


def loader_config(args):
    """The loaders of the settled flags (`settled_flags`: --loader and --channels_last decided)."""
    return LoaderConfig(batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed,
                        on_device=args.loader == "gpu", channels_last=bool(args.channels_last))


def loop_config(args, cosine_warmup):
    """How the epochs of the settled flags go: schedule, loaders, bf16 and printing."""
    return LoopConfig(schedule=schedule_config(args, cosine_warmup), loader=loader_config(args),
                      amp=speed_config(args).amp, progress=not args.no_progress, print_freq=args.print_freq)


def ctc_config(args):
    return _config_of(CTCConfig, args)


def _config_of(config_class, args):
    """`config_class` filled from the flags of the same names."""
    return config_class(**{field.name: getattr(args, field.name) for field in fields(config_class)})
