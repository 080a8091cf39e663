"""The one place that chooses the compute device."""
import torch


def get_device(name=None):
    """Return `torch.device(name)`, or CUDA when present and CPU otherwise.

    Every `.to(device)` in the repository goes through the device returned here;
    nothing calls `.cuda()` directly, so each code path also runs on CPU.
    """
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
