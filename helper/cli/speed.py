"""The command-line layer's shared option groups, and the settings they resolve to.

Scripts add these groups to their parsers; everything below the scripts takes plain values.
"""
import argparse

import torch

from dataset.device_loader import gpu_loader_works
from helper.core.errors import UserError
from helper.core.speed import SPEED_FLAGS, Speed

LOADERS = ("auto", "gpu", "cpu")


def add_speed_args(parser, loader=True):
    """Add --amp/--no_amp, --channels_last/--no_channels_last, --compile/--no_compile and (`loader`) --loader."""
    g = parser.add_argument_group("speed (defaults: all off on CPU; amp, channels_last and GPU loader on CUDA)")
    g.add_argument("--amp", dest="amp", action="store_true", default=None,
                   help="bf16 autocast for forward and loss, on CUDA only (default: on with CUDA). On a CPU "
                        "it does nothing: bf16 training there was slower than fp32 without native bf16 "
                        "instructions (python bench.py cpu measures your CPU; docs/speed.md)")
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
    """A copy of `args` with the None defaults of `add_speed_args` settled for `device`; `args` is left as parsed.

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
    settled = {name: cuda for name in ("amp", "channels_last") if getattr(args, name, None) is None}
    if getattr(args, "compile", None) is None:
        settled["compile"] = False
    if pick_loader and hasattr(args, "loader"):
        settled["loader"] = _loader(args, device, dataset)
    return argparse.Namespace(**{**vars(args), **settled})


def _loader(args, device, dataset):
    """--loader with auto decided for `device` and `dataset` (gpu when the set fits there)."""
    loader = args.loader
    if loader not in LOADERS:
        raise UserError(f"--loader must be one of {', '.join(LOADERS)}, got {loader!r}.")
    if loader == "auto":
        return "gpu" if device.type == "cuda" and dataset is not None and gpu_loader_works(dataset, device) else "cpu"
    if loader == "gpu" and getattr(args, "augment", None) == "auto":
        raise UserError("--loader gpu cannot run --augment auto: AutoAugment works on PIL images on the "
                        "host. Use --loader cpu (or auto) with --augment auto.")
    return loader


def speed_argv(args):
    """The command-line flags that reproduce args' (resolved) amp, channels_last and compile."""
    return [f"--{'' if getattr(args, name) else 'no_'}{name}" for name in SPEED_FLAGS]


def describe(args):
    """'amp=on channels_last=off compile=off loader=gpu': for logs and benchmark records."""
    on_off = {True: "on", False: "off", None: "auto"}
    flags = [f"{name}={on_off[getattr(args, name, None)]}" for name in SPEED_FLAGS]
    return " ".join(flags + ([f"loader={args.loader}"] if hasattr(args, "loader") else []))


def speed_config(args):
    """The speed flags of the settled flags (what `resolve_speed_args` returns) as a `Speed`."""
    return Speed(amp=bool(args.amp), channels_last=bool(args.channels_last), compile=bool(args.compile))
