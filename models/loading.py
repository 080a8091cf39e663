"""Build the model a checkpoint holds and load its weights strictly (the registry's side of checkpoints)."""
import torch

from helper.core.checkpoint import (CheckpointError, DamagedCheckpointError, check_model_checkpoint, load_checkpoint,
                                    model_weights)
from models.registry import create_model, model_dict


def _describe_mismatch(model, state):
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)):
        if keys:
            parts.append(f"{len(keys)} keys {label} (e.g. {', '.join(keys[:3])})")
    return "; ".join(parts)


def guess_arch(state):
    """The registered architectures whose keys and (non-head) shapes match `state`, built on 'meta'."""
    found = {k: tuple(v.shape) for k, v in state.items()}
    matches = []
    for name, fn in model_dict.items():
        with torch.device("meta"):
            net = fn(num_classes=1)
        head_keys = {f"{net.head_attr}.weight", f"{net.head_attr}.bias"}
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        if set(expected) == set(found) and all(expected[k] == found[k] for k in expected if k not in head_keys):
            matches.append(name)
    return matches


def load_model(path, arch=None, default_classes=None, device="cpu"):
    """Build the model a checkpoint holds and load its weights strictly.

    The architecture comes from the checkpoint's metadata, else from `arch`; when
    both exist and differ, or the weights do not fit, a `CheckpointError` names
    the file and both architectures. The class count is the checkpoint's metadata, else
    `default_classes` (e.g. the source data set's, for the original code's checkpoints),
    else the head's shape. A file that no flag makes usable (`check_model_checkpoint`: its structure, its
    metadata types, finite weights, a recorded class count that its head does not have) is a
    `DamagedCheckpointError`. Returns `(model, checkpoint_dict)`.
    """
    ckpt = check_model_checkpoint(load_checkpoint(path), path)
    state = model_weights(ckpt)
    stored_arch = ckpt.get("arch") if isinstance(ckpt, dict) else None
    if stored_arch and arch and stored_arch != arch:
        raise CheckpointError(f"checkpoint {path} holds a {stored_arch} but model {arch} was asked for; "
                              f"pass --model {stored_arch} or another checkpoint.")
    if stored_arch and stored_arch not in model_dict:
        raise DamagedCheckpointError(f"checkpoint {path} records the architecture {stored_arch!r}, which is not in "
                                     "the model registry, so no result is computed from it.", "unknown 'arch'")
    arch = stored_arch or arch
    if arch is None:
        raise CheckpointError(f"checkpoint {path} does not record its architecture; pass --model.")
    with torch.device("meta"):
        probe = create_model(arch, num_classes=1)
    head_key = f"{probe.head_attr}.weight"
    recorded = ckpt.get("num_classes")
    if recorded is not None and head_key in state and state[head_key].shape[0] != recorded:
        raise DamagedCheckpointError(f"checkpoint {path} records {recorded} classes but its head has "
                                     f"{state[head_key].shape[0]} outputs, so no result is computed from it.",
                                     "bad 'num_classes'")
    num_classes = (ckpt.get("num_classes") or default_classes
                   or (state[head_key].shape[0] if head_key in state else None))
    model = create_model(arch, num_classes=num_classes or 1)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        guesses = guess_arch(state)
        held = f"the weights of {' or '.join(guesses)}" if guesses else "weights of an unknown architecture"
        raise CheckpointError(f"checkpoint {path} holds {held}, which do not fit model {arch} "
                              f"({_describe_mismatch(model, state)}); pass the matching --model.") from None
    return model.to(device), ckpt
