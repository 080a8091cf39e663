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
import functools
import hashlib
import json
import math
import os
import re
import tempfile

import torch

from helper.core.errors import UserError
from helper.core.writes import TEMP_PREFIX, guarded_write

CKPT_RE = re.compile(r"^ckpt_epoch_([0-9]+)\.pth$")
CKPT_LIKE_RE = re.compile(r"^ckpt_epoch_(.*)\.pth$", re.DOTALL)    # what a checkpoint name looks like, epoch or not
MAX_EPOCH = 10 ** 6         # the largest epoch a file name or a results cell may hold (the paper trains 300)
DEFAULT_MODEL_ROOT = os.path.join(".", "save", "model")
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file that cannot be used whatever the flags: unreadable, of the wrong structure or metadata
    types, or holding non-finite weights. `reason` is the short why a sweep's last line gives."""

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


def parse_epoch(text):
    """The epoch `text` names (ASCII digits, at most `MAX_EPOCH`), else None: '²', '٣', '1e3', ' 7' are not
    epochs."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,7}", text):
        return None
    epoch = int(text)
    return epoch if epoch <= MAX_EPOCH else None


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
        raise DamagedCheckpointError(f"checkpoint {path} could not be read ({type(err).__name__}: {err}); "
                                     "the file is corrupt or was not written by torch.save.",
                                     "unreadable") from err


# The metadata entries of a checkpoint and the types each may hold (None: absent, as in the original's files;
# the original recorded its accuracy as a one-element tensor).
METADATA_TYPES = {"epoch": (int,), "accuracy": (int, float, torch.Tensor), "arch": (str,), "dataset": (str,),
                  "num_classes": (int,), "feat_dim": (int,), "args": (dict,), "format": (int,)}


def check_model_checkpoint(ckpt, path):
    """Refuse a loaded model checkpoint that a sweep cannot trust, with a `DamagedCheckpointError` naming
    `path`: not a dict, a state_dict that does not map names to tensors, metadata of the wrong type or
    out of range, or a NaN / infinite weight (a diverged run's weights give rows at chance level)."""
    def damaged(why, reason):
        return DamagedCheckpointError(f"checkpoint {path} {why}, so no result is computed from it.", reason)

    if not isinstance(ckpt, dict):
        raise damaged(f"holds a {type(ckpt).__name__}, not the dict of a checkpoint or a state_dict", "not a dict")
    if "model" in ckpt:
        for key, types in METADATA_TYPES.items():
            value = ckpt.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
                raise damaged(f"records {key!r} as {value!r} ({type(value).__name__}), not "
                              f"{' or '.join(t.__name__ for t in types)}", f"bad {key!r}")
        for key in ("num_classes", "feat_dim"):
            if ckpt.get(key) is not None and not 1 <= ckpt[key] <= 10 ** 7:
                raise damaged(f"records {key!r} as {ckpt[key]}, outside 1..{10 ** 7}", f"bad {key!r}")
    state = ckpt["model"] if "model" in ckpt else ckpt
    if not isinstance(state, dict) or not state:
        raise damaged("holds no state_dict under 'model'", "no weights")
    odd = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise damaged(f"has {len(odd)} 'model' entries that are not named tensors (e.g. {', '.join(odd[:3])})",
                      "weights are not tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise damaged(f"holds NaN or infinite weights in {len(bad)} tensors (e.g. {', '.join(bad[:3])}); the run "
                      "that wrote it had diverged", "NaN or infinite weights")
    accuracy = ckpt.get("accuracy") if "model" in ckpt else None
    if isinstance(accuracy, torch.Tensor) and (accuracy.numel() != 1 or accuracy.is_complex()):
        raise damaged(f"records 'accuracy' as a tensor of shape {tuple(accuracy.shape)}", "bad 'accuracy'")
    if accuracy is not None and not math.isfinite(float(accuracy)):
        raise damaged(f"records the accuracy {float(accuracy)}", "non-finite accuracy")
    return ckpt


@functools.lru_cache(maxsize=4096)
def _sha1_of(path, identity):
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha1").hexdigest()
    except OSError as err:
        raise DamagedCheckpointError(f"checkpoint {path} could not be read ({err.strerror or err}).",
                                     "unreadable") from None


def file_sha1(path):
    """The SHA-1 of a file's bytes, the fingerprint a result row records of its checkpoint.

    Computed once per file version per process: remembered by the file's inode, size and modification and
    change times (the change time moves on every write or rename, and cannot be set back by hand).
    """
    try:
        stat = os.stat(path)
    except OSError as err:
        raise DamagedCheckpointError(f"checkpoint {path} could not be read ({err.strerror or err}).",
                                     "unreadable") from None
    return _sha1_of(os.path.abspath(path),
                    (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


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


def checkpoint_files(run_dir):
    """({epoch: path} of every `ckpt_epoch_<E>.pth` in `run_dir`, sorted by epoch; sorted names of the files
    named like checkpoints whose epoch is no whole number up to `MAX_EPOCH`, such as `ckpt_epoch_1e3.pth`)."""
    if not os.path.isdir(run_dir):
        return {}, []
    found, odd = {}, []
    for name in os.listdir(run_dir):
        match = CKPT_LIKE_RE.match(name)
        if not match:
            continue
        epoch = parse_epoch(match.group(1))
        if epoch is None:
            odd.append(name)
        else:
            found[epoch] = os.path.join(run_dir, name)
    return dict(sorted(found.items())), sorted(odd)


def list_checkpoints(run_dir):
    """{epoch: path} of every `ckpt_epoch_<E>.pth` in `run_dir`, sorted by epoch."""
    return checkpoint_files(run_dir)[0]


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
