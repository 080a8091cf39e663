"""The one place that chooses the compute device."""
import os

import torch

from helper.core.errors import UserError


def get_device(name=None):
    """Return `torch.device(name)`, or CUDA when present and CPU otherwise.

    Under torchrun (LOCAL_RANK set) 'cuda' and the default mean cuda:LOCAL_RANK
    (modulo the GPU count), so each process of a launch, e.g. each shard of a
    sweep, works on its own GPU. Every `.to(device)` in the repository goes
    through the device returned here; nothing calls `.cuda()` directly, so each
    code path also runs on CPU.
    """
    if name:
        device = _parse(name)
        if device.type == "cuda":
            _require_cuda(name, device.index)
        elif device.type != "cpu":
            _require_backend(name, device.type)
        if name != "cuda":          # plain 'cuda' still follows LOCAL_RANK below
            return device
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None:
        return torch.device("cuda")
    return torch.device("cuda", int(local_rank) % torch.cuda.device_count())


def _parse(name):
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N "
                        f"(default: CUDA when present, else CPU).") from None


def _require_cuda(name, index):
    """A clear message instead of a driver traceback when the asked-for GPU is not there."""
    if not torch.cuda.is_available():
        raise UserError(f"--device {name} asks for a GPU, but PyTorch sees no CUDA device on this machine. "
                        f"Leave --device unset (CUDA when present, else CPU) or pass --device cpu.")
    if index is not None and index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        f"numbered from 0.")


def _require_backend(name, kind):
    """A device type other than cpu and cuda (mps, xpu, ...): refused unless this torch build can use it here,
    so a script stops before it writes anything instead of failing at the first tensor moved there."""
    backend = getattr(torch.backends, kind, None) if kind == "mps" else getattr(torch, kind, None)
    available = getattr(backend, "is_available", None)
    if not (callable(available) and available()):
        raise UserError(f"--device {name}: this PyTorch build cannot use {kind} devices on this machine. "
                        f"Leave --device unset (CUDA when present, else CPU) or pass --device cpu.")
