"""The sweeps' command line: the flags transfer.py, discriminability.py and mine.py share, as `parents=`
parsers, and the settings they resolve to.

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter,
                                     parents=[sweep_args_parser(), feature_args_parser()])
    ...
    device = sweep_device(args)
    flags = settled_sweep_flags(args, device)       # --channels_last / --compile settled for the device
    sweep, features = sweep_config(flags), feature_config(flags)
"""
import argparse
import os

from helper.cli.flags import NON_NEGATIVE_INT, POSITIVE_INT, SEED
from helper.cli.speed import LOADERS, add_layout_args, resolve_speed_args
from helper.core.checkpoint import DEFAULT_MODEL_ROOT, plain
from helper.core.device import get_device
from helper.core.writes import check_output_folder
from helper.sweep import board
from helper.sweep.features import FeatureConfig
from helper.sweep.runner import Selection, SweepConfig, parse_shard
from helper.sweep.source_run import SourceConfig
from helper.train import run_folder

AMP_HELP = "bf16 autocast on CUDA for feature extraction; default off: fp32 features as in the paper"
NO_AMP_HELP = "fp32 (the default here)"
SEED_HELP = "seed of the probe head, its shuffle and k-means (default 0)"


def sweep_args_parser():
    """The "checkpoint sweep" flags: which run, which checkpoints, resuming, sharding, progress, TensorBoard."""
    parser = argparse.ArgumentParser(add_help=False)
    g = parser.add_argument_group("checkpoint sweep")
    g.add_argument("--ckpt_path", required=True,
                   help="run folder: a name under --model_path (as in the original) or any path")
    g.add_argument("--model_path", default=DEFAULT_MODEL_ROOT, help="where run folders live")
    g.add_argument("--start_epoch", type=int, default=Selection.start_epoch, help="first checkpoint epoch")
    g.add_argument("--skip", type=int, default=Selection.skip, help="epoch step between checkpoints (even, as saved)")
    g.add_argument("--end_epoch", type=int, default=Selection.end_epoch,
                   help="last checkpoint epoch (default: newest present)")
    g.add_argument("--force", action="store_true", help="recompute checkpoints already in the results file")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="take every N-th checkpoint starting at the I-th (0-based); default from RANK/WORLD_SIZE")
    g.add_argument("--wait", action="store_true",
                   help="when another sweep is writing the same results file, wait for it instead of stopping")
    g.add_argument("--no_progress", action="store_true", help="no tqdm progress bars")
    g.add_argument("--tb_path", default=run_folder.DEFAULT_TB_PATH,       # read here: the tests point it elsewhere
                   help=f"TensorBoard root, as in training (default {run_folder.DEFAULT_TB_PATH}): each row also goes to "
                        f"<tb_path>/<run folder name>/{board.SWEEP_SUBDIR}/ as scalars; '' for none")
    return parser


def feature_args_parser(model_default=None, extract_batch=FeatureConfig.extract_batch, amp_help=AMP_HELP,
                        no_amp_help=NO_AMP_HELP, seed_help=SEED_HELP):
    """The "model, data and features" flags: loading checkpoints and extracting frozen features.

    The keywords are a script's own default and help texts (mine.py: what its --amp and --seed also drive).
    """
    from models import available_models
    parser = argparse.ArgumentParser(add_help=False)
    g = parser.add_argument_group("model, data and features")
    g.add_argument("--model", default=model_default, choices=available_models(), metavar="MODEL",
                   help="architecture of the checkpoints, checked against the arch they record"
                        + (f" (default {model_default})" if model_default else " (default: what they record)"))
    g.add_argument("--data_folder", default=FeatureConfig.data_folder,
                   help=f"root of the data sets (default {FeatureConfig.data_folder})")
    g.add_argument("--num_workers", type=NON_NEGATIVE_INT, default=min(8, os.cpu_count() or 1),
                   help="DataLoader worker processes")
    g.add_argument("--device", default=None, help="cuda, cuda:1, cpu; default: CUDA when present")
    g.add_argument("--extract_batch", type=POSITIVE_INT, default=extract_batch,
                   help=f"batch size of feature extraction (default {extract_batch})")
    g.add_argument("--seed", type=SEED, default=0, help=seed_help)
    g.add_argument("--amp", action="store_true", help=amp_help)
    g.add_argument("--no_amp", dest="amp", action="store_false", help=no_amp_help)
    g.add_argument("--loader", default=FeatureConfig.loader, choices=LOADERS,
                   help="gpu: each evaluation split is uploaded once as uint8 and normalised on the device, so "
                        "no checkpoint pays DataLoader workers again; cpu: a DataLoader per checkpoint; auto "
                        "(default): gpu on CUDA for 32x32 array data sets that fit in half the free memory")
    add_layout_args(g, compile_help="torch.compile the frozen feature extraction (and mine.py's statistics "
                                    "network): compiled once per process and reused by every checkpoint; "
                                    "fine-tuning stays eager (default: off)")
    g.add_argument("--cache_dir", default=FeatureConfig.cache_dir,
                   help="keep extracted features here, keyed by the checkpoint file's SHA-1, data set and "
                        "split, so reruns skip extraction (default: no cache)")
    return parser


def sweep_device(args):
    """The device of `--device` (default: CUDA when present)."""
    return get_device(args.device)


def settled_sweep_flags(args, device, **resolved):
    """The flags a sweep is built from and records (its protocol record, saved checkpoints): as parsed, with
    --channels_last and --compile settled for `device` (CUDA: channels_last on) and the script's own `resolved`
    values (transfer.py's --lr for its --mode, say). `args` itself is left as parsed."""
    return argparse.Namespace(**{**vars(resolve_speed_args(args, device, pick_loader=False)), **resolved})


def check_output_folders(args):
    """Stop before any data is read or any record written when --cache_dir or --tb_path cannot take files."""
    for flag, folder in (("--cache_dir", args.cache_dir), ("--tb_path", args.tb_path)):
        if folder:
            check_output_folder(folder, flag)


def run_flags(args):
    """The script's flags as the plain dict a sweep records (`<results>.args.json`, saved checkpoints)."""
    return plain(vars(args))


def selection(args):
    """The checkpoint epochs --start_epoch, --skip and --end_epoch take."""
    return Selection(start_epoch=args.start_epoch, skip=args.skip, end_epoch=args.end_epoch)


def sweep_config(args):
    """The `SweepConfig` of the "checkpoint sweep" flags (--shard, else torchrun's RANK / WORLD_SIZE)."""
    return SweepConfig(selection=selection(args), force=args.force, shard=parse_shard(args.shard), wait=args.wait,
                       progress=not args.no_progress, tb_path=args.tb_path)


def source_config(args):
    """How each checkpoint's model is built: --model and --channels_last of the settled flags."""
    return SourceConfig(arch=args.model, channels_last=bool(args.channels_last))


def feature_config(args):
    """The `FeatureConfig` of the "model, data and features" flags (settled: `settled_sweep_flags`)."""
    return FeatureConfig(data_folder=args.data_folder, num_workers=args.num_workers, extract_batch=args.extract_batch,
                         loader=args.loader, amp=bool(args.amp), compile=bool(args.compile),
                         channels_last=bool(args.channels_last), cache_dir=args.cache_dir,
                         progress=not args.no_progress)
