"""A run folder opened for a sweep: its checkpoints, checked once, and the model each one holds.

Every sweep (transfer.py, discriminability.py, mine.py) starts the same way:

    source = open_run(run_dir, Selection(2, 2), SourceConfig(arch="resnet8"))
    model, ckpt = source.load(path, device)          # per checkpoint: frozen, eval mode

`open_run` reads the first readable selected checkpoint before the sweep starts, so a wrong
`--model` is one clear error (exit 2) instead of a failure of every checkpoint.
"""
from dataclasses import dataclass

import torch

from dataset import DATASETS
from helper.core.checkpoint import CheckpointError, DamagedCheckpointError, list_checkpoints
from helper.core.errors import UserError, warn
from models import load_model


@dataclass(frozen=True)
class SourceConfig:
    """How a sweep builds the model of each checkpoint."""
    arch: str | None = None         # --model: checked against the arch each checkpoint records (None: what it records)
    channels_last: bool = False     # load the weights NHWC


@dataclass(frozen=True)
class SourceRun:
    """The checkpoints of one run folder; `first` is the dict of its first readable selected checkpoint
    (None when none of them is readable: the sweep reports each)."""
    config: SourceConfig
    first: dict | None

    @property
    def arch(self):
        """--model, else the architecture the first readable checkpoint records (None when neither says)."""
        recorded = self.first.get("arch") if isinstance(self.first, dict) else None
        return self.config.arch or recorded

    def load(self, path, device, default_classes=None):
        """(frozen model in eval mode on `device`, checkpoint dict) of one checkpoint of the run.

        The source classes come from the checkpoint's metadata, else `default_classes`, else its
        head's shape: the head is discarded anyway, and only that number lets the weights load strictly.
        """
        return load_source(path, self.config, device, default_classes)


def load_source(path, config, device, default_classes=None, arch=None):
    """(frozen model in eval mode, checkpoint dict) of the checkpoint at `path`, NHWC with
    `config.channels_last`; `arch` (default `config.arch`) is the architecture it must hold."""
    model, ckpt = load_model(path, arch=arch or config.arch, default_classes=default_classes, device=device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), ckpt


def open_run(run_dir, selection, config, source_dataset=None):
    """The `SourceRun` of `run_dir` for the epochs `selection` (a `runner.Selection`) takes.

    A folder without checkpoints, a selection of none, or a readable checkpoint that is not
    `config.arch` is a user error. With `source_dataset`, a run recorded as trained on another
    data set (or class count) is warned about once.
    """
    available = list_checkpoints(run_dir)
    if not available:
        raise UserError(f"{run_dir} holds no ckpt_epoch_<E>.pth files: nothing to sweep. Check --ckpt_path "
                        f"(a run folder under --model_path, or any path to one).")
    selected = selection.epochs(available)
    if not selected:
        raise UserError(f"--start_epoch {selection.start_epoch} selects no checkpoint: the newest in {run_dir} is "
                        f"epoch {max(available)}.")
    first = first_readable(available, selected, config.arch)
    if source_dataset is not None:
        check_source(first, source_dataset)
    return SourceRun(config, first)


def first_readable(available, selected, arch):
    """The dict of the first selected checkpoint that loads as `arch`; None when none is usable.
    A usable one that is not `arch` is a `UserError`."""
    for epoch in selected:
        if epoch not in available:
            continue
        try:
            return load_model(available[epoch], arch=arch)[1]
        except DamagedCheckpointError:
            continue                        # unreadable or damaged: the sweep reports it
        except CheckpointError as err:
            raise UserError(str(err)) from None
    return None


def check_source(ckpt, source_dataset):
    """Warn once when the run's recorded source data set or class count disagrees with `source_dataset`."""
    if not isinstance(ckpt, dict):
        return
    recorded, classes = ckpt.get("dataset"), ckpt.get("num_classes")
    if recorded and recorded != source_dataset:
        warn(f"the checkpoints were trained on {recorded}, not on --source_dataset {source_dataset}.")
    elif classes and classes != DATASETS[source_dataset].num_classes:
        warn(f"the checkpoints have {classes} source classes, {source_dataset} has "
             f"{DATASETS[source_dataset].num_classes}.")


def source_acc(ckpt):
    """The source test accuracy a checkpoint records, or None."""
    value = ckpt.get("accuracy") if isinstance(ckpt, dict) else None
    return None if value is None else float(value)
