"""Speed flags shared by the training scripts and the sweeps: bf16 autocast, channels_last,
torch.compile, GPU loader.

Every flag defaults to None ("choose for me"); `resolve_speed_args` fills them from the
device: all off on CPU (no gain there, and the CPU run is the reference), and on CUDA
bf16 autocast + channels_last on (tensor cores; bf16 needs no loss scaling), the
data set on the GPU when it fits, and torch.compile off (see `resolve_speed_args`).
The sweeps (transfer.py, discriminability.py, mine.py) take channels_last and compile
from here and have their own --amp, off by default (the paper's fp32 features; for
mine.py's critic, docs/mine.md gives the measured bf16 - fp32 differences).
"""
import contextlib
import functools
import os
import platform

import numpy as np
import torch

from helper.errors import UserError

LOADERS = ("auto", "gpu", "cpu")


def add_speed_args(parser, loader=True):
    """Add --amp/--no_amp, --channels_last/--no_channels_last, --compile/--no_compile and (`loader`) --loader."""
    g = parser.add_argument_group("speed (defaults: all off on CPU; amp, channels_last and GPU loader on CUDA)")
    g.add_argument("--amp", dest="amp", action="store_true", default=None,
                   help="bf16 autocast for forward and loss (default: on with CUDA, off on CPU)")
    g.add_argument("--no_amp", dest="amp", action="store_false", help="full fp32 everywhere")
    add_layout_args(g, compile_help="torch.compile the model: minutes of compilation per process before the "
                                    "first step, worth it only for long runs (default: off)")
    if not loader:
        return parser
    g.add_argument("--loader", default="auto", choices=LOADERS,
                   help="gpu: whole uint8 set on the device, augmentation there (standard/none "
                        "augment only); cpu: DataLoader workers + PIL; auto: gpu on CUDA when the set "
                        "fits in half the free memory and --augment is not auto, else cpu")
    return parser


def add_layout_args(group, compile_help):
    """Add --channels_last/--no_channels_last and --compile/--no_compile (both None = device default)."""
    group.add_argument("--channels_last", dest="channels_last", action="store_true", default=None,
                       help="NHWC memory format for the model's weights (convolutions then run NHWC), "
                            "faster on tensor cores (default: on with CUDA, off on CPU)")
    group.add_argument("--no_channels_last", dest="channels_last", action="store_false", help="NCHW memory format")
    group.add_argument("--compile", dest="compile", action="store_true", default=None, help=compile_help)
    group.add_argument("--no_compile", dest="compile", action="store_false", help="eager (default)")
    return group


def resolve_speed_args(args, device, dataset=None, pick_loader=True):
    """Replace the None defaults of `add_speed_args` for `device`; returns `args`.

    compile stays off unless asked: the compile time of ResNeXt forward+backward is paid
    again by every process and every shape (the last, smaller batch), which a sweep over
    100 checkpoints or a short run does not win back. `dataset`, when given, decides
    --loader auto (GPU loader when it fits and its augmentation is reproducible there);
    `pick_loader=False` leaves --loader as given (the sweeps decide it per data set).
    On CUDA it also turns on cuDNN autotuning, as the original code did: the inputs are
    always 32x32, so each layer's fastest algorithm is found once.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    for name in ("amp", "channels_last"):
        if getattr(args, name, None) is None:
            setattr(args, name, cuda)
    if getattr(args, "compile", None) is None:
        args.compile = False
    if not pick_loader or not hasattr(args, "loader"):
        return args
    loader = args.loader
    if loader not in LOADERS:
        raise UserError(f"--loader must be one of {', '.join(LOADERS)}, got {loader!r}.")
    if loader == "auto":
        loader = "gpu" if cuda and dataset is not None and gpu_loader_works(dataset, device) else "cpu"
    elif loader == "gpu" and getattr(args, "augment", None) == "auto":
        raise UserError("--loader gpu cannot run --augment auto: AutoAugment works on PIL images on the "
                        "host. Use --loader cpu (or auto) with --augment auto.")
    args.loader = loader
    return args


def gpu_loader_works(dataset, device):
    """Whether DeviceLoader can serve `dataset` on `device` (array-backed, fits, augment not auto)."""
    from dataset.device_loader import augment_of, fits_on_device
    from dataset.variants import ArrayDataset

    if not isinstance(dataset, ArrayDataset) or np.asarray(dataset.data[:1]).shape[1:] != (32, 32, 3):
        return False
    try:
        if augment_of(dataset) == "auto":
            return False
    except UserError:
        return False
    return fits_on_device(dataset, device)


def autocast(device, enabled, allow_cpu=False):
    """bf16 autocast on CUDA when `enabled`; a no-op context on CPU unless `allow_cpu` (tests)."""
    device = torch.device(device)
    if enabled and (device.type == "cuda" or allow_cpu):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model, args):
    """Apply args.channels_last (in place) and args.compile; returns the model to train.

    A compiled model is an OptimizedModule whose state_dict keys start with
    `_orig_mod.`; helper.checkpoint.unwrap / model_state / clean_state_dict strip it,
    so checkpoints stay loadable by the uncompiled model.
    """
    if getattr(args, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    if getattr(args, "compile", False):
        model = torch.compile(model)
    return model


@functools.lru_cache(maxsize=None)
def compiled(fn):
    """`torch.compile(fn)`, built once per process and function.

    `fn` takes the model as an argument (e.g. `model_features(model, images)`), so every
    checkpoint of a sweep, a new instance of the same architecture, reuses the graphs
    compiled for the first instead of compiling again (and silently falling back to
    eager once dynamo's recompile limit is reached). Static shapes: the last, smaller
    batch of a split costs one more graph, not a dynamic-shape graph for all batches.
    """
    return torch.compile(fn, dynamic=False)


def speed_argv(args):
    """The command-line flags that reproduce args' (resolved) amp, channels_last and compile."""
    return [f"--{'' if getattr(args, name) else 'no_'}{name}" for name in ("amp", "channels_last", "compile")]


def describe(args):
    """'amp=on channels_last=off compile=off loader=gpu': for logs and benchmark records."""
    on_off = {True: "on", False: "off", None: "auto"}
    flags = [f"{name}={on_off[getattr(args, name, None)]}" for name in ("amp", "channels_last", "compile")]
    return " ".join(flags + ([f"loader={args.loader}"] if hasattr(args, "loader") else []))


def device_name(device):
    """'NVIDIA H100 80GB HBM3' or the CPU's name: benchmark records say where they were taken."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def write_bench_json(path, record):
    """Write a benchmark's numbers to `path` (if given) with the torch version and date beside them,
    so figures from different machines and versions are never mixed."""
    if not path:
        return
    import datetime
    import json
    record = {"torch": torch.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds"), **record}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(record, handle, indent=1, default=str)
