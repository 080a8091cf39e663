"""Speed mechanisms shared by training and the sweeps: bf16 autocast, torch.compile, channels_last.

Which of them are on is decided once per command (`helper.cli.speed.resolve_speed_args`):
all off on CPU (no gain there, and the CPU run is the reference); on CUDA bf16 autocast and
channels_last on for training, the sweeps' --amp off by default (the paper's fp32 features).
"""
import contextlib
import functools
from dataclasses import dataclass, fields

import torch


def autocast(device, enabled, allow_cpu=False):
    """bf16 autocast on CUDA when `enabled`; a no-op context on CPU unless `allow_cpu` (tests)."""
    device = torch.device(device)
    if enabled and (device.type == "cuda" or allow_cpu):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Speed:
    """The speed mechanisms one command uses, resolved for its device by `helper.cli.speed.speed_config`."""
    amp: bool = False            # bf16 autocast (CUDA only)
    channels_last: bool = False  # NHWC weights and inputs
    compile: bool = False        # torch.compile


SPEED_FLAGS = tuple(f.name for f in fields(Speed))     # "amp", "channels_last", "compile": each a flag


def prepare_model(model, speed):
    """Apply `speed.channels_last` (in place) and `speed.compile`; returns the model to run.

    A compiled model is an OptimizedModule whose state_dict keys start with
    `_orig_mod.`; helper.core.checkpoint.unwrap / model_state / clean_state_dict strip it,
    so checkpoints stay loadable by the uncompiled model.
    """
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if speed.compile:
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

