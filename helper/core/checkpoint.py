"""The one checkpoint module: atomic save, safe load, run folders and epoch listing.

File format (compatible with the original CRD / dt-tradeoff code, which wrote
`{'epoch', 'model', 'accuracy', ...}` with the same file names):

    ckpt_epoch_<E>.pth   {'epoch': E, 'model': state_dict, 'accuracy': top-1 on the
                          source test split, 'arch', 'dataset', 'num_classes',
                          'feat_dim', 'args': plain dict, 'format': 1}

Everything is plain Python types or tensors, so `torch.load(weights_only=True)`
reads it; original checkpoints without the metadata load as well.
"""
import errno
import json
import os
import re
import tempfile

import torch

from helper.core.errors import UserError
from helper.core.writes import TEMP_PREFIX, guarded_write

CKPT_RE = re.compile(r"^ckpt_epoch_(\d+)\.pth$")
DEFAULT_MODEL_ROOT = os.path.join(".", "save", "model")
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


def atomic_write(path, write):
    """Call `write(file)` on a temporary file in `path`'s folder, then rename it over `path`.

    A crash mid-write never leaves a truncated file under the final name; a full disk, a read-only folder or
    a path below a regular file is a `WriteFailed` naming `path` (helper/core/writes.py).
    """
    folder = os.path.dirname(os.path.abspath(path))
    with guarded_write(path):
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "it is a directory, where a file belongs", path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1], dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o666 & ~_umask())    # mkstemp makes 0600; give the usual open() mode
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomic(obj, path):
    """`torch.save(obj)` to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint with `weights_only=True`; a bad file is a `CheckpointError` naming it."""
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file: pass the path of a "
                              ".pth file that torch.save wrote.")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, corrupt, or not a torch file
        raise CheckpointError(f"checkpoint {path} could not be read ({type(err).__name__}: {err}); "
                              "the file is corrupt or was not written by torch.save.") from err


def clean_state_dict(state):
    """Strip the `module.` prefix that DataParallel / DDP add (and `_orig_mod.` of torch.compile)."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def model_state(model):
    """The state_dict of the bare model, whatever wraps it (DDP, torch.compile)."""
    return clean_state_dict(unwrap(model).state_dict())


def unwrap(model):
    """The bare module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def plain(value):
    """Convert argparse values to plain types that `weights_only=True` accepts."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


def write_flags(path, flags):
    """Record `flags` (a dict) at `path` as sorted, indented JSON, atomically: a training run's args.json and
    a sweep's protocol record."""
    text = json.dumps(plain(flags), indent=1, sort_keys=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def changed_flags(saved, current, free=()):
    """{flag: (saved, current)} for the flags outside `free` whose plain values differ."""
    return {key: (saved.get(key), current.get(key)) for key in sorted(set(saved) | set(current))
            if key not in free and saved.get(key) != current.get(key)}


def describe_changes(changes, flags):
    """'--lr was 0.1, now 0.2; processes was 2, now 1': `--` only for the names in `flags`."""
    return "; ".join(f"{'--' if key in flags else ''}{key} was {old!r}, now {new!r}"
                     for key, (old, new) in changes.items())


def model_checkpoint(model, epoch, accuracy, arch, dataset, flags=None):
    """The dict written to `ckpt_epoch_<E>.pth`, `<arch>_best.pth` and `<arch>_last.pth`; `flags`: the flags
    of the run that wrote it, a plain dict (vars(args))."""
    if flags is not None and not isinstance(flags, dict):
        raise TypeError(f"model_checkpoint records flags as a dict (vars(args)), got {type(flags).__name__}")
    bare = unwrap(model)
    return {
        "epoch": int(epoch),
        "model": model_state(model),
        "accuracy": None if accuracy is None else float(accuracy),
        "arch": arch,
        "dataset": dataset,
        "num_classes": int(bare.num_classes),
        "feat_dim": int(bare.feat_dim),
        "args": plain(flags or {}),
        "format": FORMAT_VERSION,
    }


def ckpt_name(epoch):
    return f"ckpt_epoch_{int(epoch)}.pth"


def list_checkpoints(run_dir):
    """{epoch: path} of every `ckpt_epoch_<E>.pth` in `run_dir`, sorted by epoch."""
    if not os.path.isdir(run_dir):
        return {}
    found = {}
    for name in os.listdir(run_dir):
        match = CKPT_RE.match(name)
        if match:
            found[int(match.group(1))] = os.path.join(run_dir, name)
    return dict(sorted(found.items()))


def resolve_run_dir(ckpt_path, model_root=DEFAULT_MODEL_ROOT):
    """A run folder given by name under `./save/model/` (as in the original) or by any path."""
    for candidate in (ckpt_path, os.path.join(model_root, ckpt_path)):
        if os.path.isdir(candidate):
            return candidate
    raise CheckpointError(f"run folder {ckpt_path!r} not found: looked for it as a path and under "
                          f"{model_root}/. Pass the folder train_vanilla.py or train_ctc.py wrote.")


def model_weights(ckpt):
    """The clean state_dict a loaded checkpoint holds: its 'model' entry, or the whole of a bare state_dict."""
    return clean_state_dict(ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt)
