"""Arguments and set-up shared by train_vanilla.py and train_ctc.py (one process or under torchrun)."""
import argparse
import contextlib
import os

import torch
from tqdm import tqdm

from dataset import dataset_names, device_loader_for, eval_loader, get_dataset, get_loader
from helper.cli import add_original_training_flags
from helper.core.distributed import (describe, get_rank, get_world_size, is_main_process, main_process_first, process_group, rank_seed, shard_sampler, sync_buffers, wrap_model)
from dataset.variants import eval_shard
from helper.cli.flags import FRACTION, MOMENTUM, NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT, POSITIVE_FLOAT, number_in
from helper.train.loops import evaluate
from helper.train.schedule import resolve_warmup
from helper.core.seed import set_seed
from helper.core.speed import prepare_model
from helper.cli.speed import add_speed_args, resolve_speed_args, speed_config
from dataset.device_loader import gpu_loader_works
from models import available_models, create_model


def int_list(text):
    """'150,180,210' -> [150, 180, 210]; '' -> []."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 2,50,100, got {text!r}")


def default_workers():
    return min(8, os.cpu_count() or 1)


def add_training_args(parser, epochs=200, warmup_epochs=0, min_lr_scale=0.0):
    """The flags every training script shares; defaults are the paper's.

    `warmup_epochs`, `min_lr_scale`: the script's cosine schedule as in its original
    (train_vanilla.py: 5 and 0.1; train_ctc.py: 0 and 0); `start_training` must get the
    same `warmup_epochs` to resolve an absent --warmup_epochs.
    """
    g = parser.add_argument_group("data and model")
    g.add_argument("--dataset", default="cifar100", choices=dataset_names(), help="source data set")
    g.add_argument("--model", default="resnext32_16x4d", choices=available_models(), metavar="MODEL",
                   help="architecture; one of: " + ", ".join(available_models()))
    g.add_argument("--data_folder", default="./data", help="root of the data sets (default ./data)")
    g.add_argument("--augment", default="standard", choices=["standard", "none", "auto"],
                   help="training augmentation: standard = crop 32 pad 4 + flip (paper), auto = AutoAugment + Cutout")
    g.add_argument("--num_workers", type=NON_NEGATIVE_INT, default=default_workers(), help="DataLoader worker processes")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (paper: {epochs})")
    g.add_argument("--batch_size", type=int, default=64,
                   help="batch size per process; under torchrun the global batch is this x processes (paper: 64)")
    g.add_argument("--learning_rate", type=POSITIVE_FLOAT, default=0.05, help="initial SGD learning rate (paper: 0.05)")
    g.add_argument("--lr_decay_epochs", type=int_list, default=[],
                   help="comma-separated epochs for step decay over the whole run, e.g. 150,180,210 (CRD/ITRD); "
                        "empty = cosine annealing (paper). In train_ctc.py it replaces both cosine phases, "
                        "including stage 2's restart")
    g.add_argument("--lr_decay_rate", type=number_in(float, 0, 1, low_open=True), default=0.1, help="step-decay factor")
    g.add_argument("--min_lr_scale", type=FRACTION, default=min_lr_scale,
                   help="cosine schedule floor, as a fraction of each cosine phase's initial learning rate "
                        f"(original: {min_lr_scale})")
    g.add_argument("--warmup_epochs", type=NON_NEGATIVE_INT, default=None,
                   help="linear warm-up lr x epoch / W over the first W epochs (default: "
                        f"{warmup_epochs} with the cosine schedule, as the original; 0 with --lr_decay_epochs)")
    g.add_argument("--weight_decay", type=NON_NEGATIVE_FLOAT, default=5e-4, help="SGD weight decay (paper: 5e-4)")
    g.add_argument("--momentum", type=MOMENTUM, default=0.9, help="SGD momentum, in [0, 1) (paper: 0.9)")
    g.add_argument("--seed", type=int, default=0, help="seed for initialisation, data order and augmentation")

    g = parser.add_argument_group("run folder and logging")
    g.add_argument("--save_freq", type=int, default=2, help="write ckpt_epoch_<E>.pth every this many epochs")
    g.add_argument("--note", "--notes", default="", help="suffix of the run folder name, e.g. vanilla or ctc")
    g.add_argument("-t", "--trial", default="0", help="trial id, part of the run folder name")
    g.add_argument("--model_path", default="./save/model", help="where run folders are created")
    g.add_argument("--run_dir", default=None,
                   help="the run folder itself, instead of <model_path>/<name from the flags>; e.g. to continue a "
                        "run with a new learning rate: --resume --allow_arg_changes --run_dir <its folder>")
    g.add_argument("--tb_path", default="./save/tensorboard", help="where TensorBoard logs are written")
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
                        "as the original (which used 100); 0 = off, the progress bar shows them")
    add_original_training_flags(parser.add_argument_group("original flags, accepted for the original command lines"))
    return add_speed_args(parser)


def check_training_args(args):
    from helper.core.errors import UserError
    for name in ("epochs", "batch_size", "save_freq"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if not 0 < args.learning_rate < float("inf"):           # also refuses NaN
        raise UserError(f"--learning_rate must be a positive finite number, got {args.learning_rate}.")


@contextlib.contextmanager
def start_training(args, cosine_warmup=0):
    """Check the flags, join torchrun's process group if launched by it, seed; yields the DistEnv.

    `cosine_warmup`: the script's --warmup_epochs default under cosine annealing (resolved
    here, before args.json records it).

    Every rank seeds with --seed, so models, heads and memory banks start identical;
    TrainingRun gives ranks > 0 their own stream once everything is built.
    """
    check_training_args(args)
    resolve_warmup(args, cosine_warmup)
    with process_group(args.device) as env:
        set_seed(args.seed)
        if env.world_size > 1 and is_main_process():
            tqdm.write(describe(env, args.batch_size))
        yield env


def load_source_data(args, device, variant="plain", **variant_kw):
    """(train_set, val_set) of the source data set; val is its evaluation split, unaugmented.

    Also settles the speed flags left on "auto" (amp, channels_last, --loader) for
    `device` and this training set.
    """
    with main_process_first():      # under torchrun, rank 0 downloads / decodes before the others read
        train_set = get_dataset(args.dataset, split="train", variant=variant, augment=args.augment,
                                root=args.data_folder, **variant_kw)
        val_set = get_dataset(args.dataset, split=train_set.info.eval_split, root=args.data_folder, download=False)
    resolve_speed_args(args, device, train_set)
    return train_set, val_set


def build_model(args, num_classes, device):
    """The registered model on `device`, in channels_last / compiled as asked, DDP-wrapped under torchrun."""
    model = prepare_model(create_model(args.model, num_classes=num_classes).to(device), speed_config(args))
    return wrap_model(model, device, args.sync_bn)


def train_loader_for(args, train_set, device=None):
    """epoch -> the epoch's training batches; the order depends only on (seed, epoch), so resume is exact.

    --loader gpu: the uint8 set lives on `device` and is augmented there
    (dataset/device_loader.py). Otherwise a DataLoader; under torchrun each rank
    reads its DistributedSampler shard of the epoch's permutation, and its workers
    are seeded per rank (different augmentations).
    """
    if getattr(args, "loader", "cpu") == "gpu":
        return device_loader_for(args, train_set, device, rank=get_rank(), world_size=get_world_size())
    return lambda epoch: get_loader(train_set, args.batch_size, train=True, num_workers=args.num_workers,
                                    seed=rank_seed(args.seed), epoch=epoch,
                                    sampler=shard_sampler(train_set, shuffle=True, seed=args.seed, epoch=epoch))


def val_loader(args, val_set, device=None):
    """The validation loader; under torchrun this rank's shard (see `validation`).

    With --loader gpu the shard is uploaded once and normalised on the device, so no
    epoch starts DataLoader workers just to validate (200 epochs, 200 worker start-ups).
    """
    shard = eval_shard(val_set)
    on_device = getattr(args, "loader", "cpu") == "gpu" and gpu_loader_works(shard, device)
    return eval_loader(shard, max(args.batch_size, 256), device, on_device, num_workers=args.num_workers,
                       channels_last=bool(args.channels_last))


def validation(args, model, val_set, device):
    """() -> validation metrics of `model`, identical on every rank.

    Rank 0's BatchNorm statistics are copied to all ranks, each evaluates its
    shard, and the sums are all-reduced: the metrics of rank 0's (saved) model.
    """
    loader = val_loader(args, val_set, device)

    def run():
        sync_buffers(model)
        return evaluate(model, loader, device, sharded=True)
    return run


def build_sgd(params, args, weight_decay=None):
    return torch.optim.SGD(params, lr=args.learning_rate, momentum=args.momentum,
                           weight_decay=args.weight_decay if weight_decay is None else weight_decay)


def format_float(value):
    """0.05 -> '0.05', 1.0 -> '1.0': for run folder names, no ':' or spaces."""
    return repr(float(value))
