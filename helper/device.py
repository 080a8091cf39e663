"""The one place that chooses the compute device."""
import os

import torch


def get_device(name=None):
    """Return `torch.device(name)`, or CUDA when present and CPU otherwise.

    Under torchrun (LOCAL_RANK set) 'cuda' and the default mean cuda:LOCAL_RANK
    (modulo the GPU count), so each process of a launch, e.g. each shard of a
    sweep, works on its own GPU. Every `.to(device)` in the repository goes
    through the device returned here; nothing calls `.cuda()` directly, so each
    code path also runs on CPU.
    """
    if name not in (None, "", "cuda"):
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device(name or "cpu")
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None:
        return torch.device("cuda")
    return torch.device("cuda", int(local_rank) % torch.cuda.device_count())
